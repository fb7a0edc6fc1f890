"""Metric code against hand-computed cases (docs/quality.md states the rules these pin down)."""

from __future__ import annotations

import numpy as np
import pytest

from pixgrep.lab import metrics
from pixgrep.lab.metrics import (
    class_retrieval_ranks,
    classification_ranks,
    first_relevant_ranks,
    rank_summary,
    recall_at_k,
    retrieval_metrics,
    topk_accuracy,
)


def unit(*rows):
    a = np.asarray(rows, dtype=np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


# -- ranks and the tie rule --------------------------------------------------------------------


def test_rank_is_position_of_best_relevant_item():
    scores = np.array([[0.9, 0.2, 0.5, 0.7]])
    assert first_relevant_ranks(scores, np.array([[False, False, True, False]])).tolist() == [3]
    # two relevant items: the better one (0.7, second overall) counts; 0.5 does not push it down
    assert first_relevant_ranks(scores, np.array([[False, False, True, True]])).tolist() == [2]


def test_ties_are_pessimistic():
    # the relevant item ties with two wrong ones: it is ranked after both
    scores = np.array([[0.5, 0.5, 0.5, 0.1]])
    assert first_relevant_ranks(scores, np.array([[False, True, False, False]])).tolist() == [3]
    # a model that scores everything equal gets the worst rank, whatever the item order
    flat = np.zeros((1, 5))
    for position in range(5):
        relevant = np.zeros((1, 5), bool)
        relevant[0, position] = True
        assert first_relevant_ranks(flat, relevant).tolist() == [5]
    # ties among relevant items do not hurt
    assert first_relevant_ranks(np.array([[0.5, 0.5, 0.1]]), np.array([[True, True, False]])).tolist() == [1]


def test_query_without_relevant_item_is_an_error():
    with pytest.raises(ValueError):
        first_relevant_ranks(np.array([[0.1, 0.2]]), np.array([[False, False]]))


def test_recall_median_mean():
    ranks = np.array([1, 2, 3, 10])
    assert recall_at_k(ranks, 1) == 25.0
    assert recall_at_k(ranks, 3) == 75.0
    assert recall_at_k(ranks, 10) == 100.0
    summary = rank_summary(ranks, (1, 5), "t2i_")
    assert summary == {"t2i_R@1": 25.0, "t2i_R@5": 75.0, "t2i_median_rank": 2.5, "t2i_mean_rank": 4.0}
    assert rank_summary(np.array([4, 1, 7]))["median_rank"] == 4.0


# -- the retrieval protocol --------------------------------------------------------------------


def test_retrieval_several_captions_per_image():
    images = unit([1, 0], [0, 1])
    # caption 0 and 1 describe image 0, caption 2 describes image 1
    captions = unit([1, 0], [0, 1], [0.6, 0.8])
    result = retrieval_metrics(images, captions, [0, 0, 1], ks=(1, 5, 10))
    # t2i: c0 -> [1, 0] rank 1; c1 -> [0, 1] image 0 second: rank 2; c2 -> [.6, .8] rank 1
    assert result["t2i_R@1"] == pytest.approx(200 / 3)
    assert result["t2i_R@5"] == 100.0
    assert result["t2i_median_rank"] == 1.0
    assert result["t2i_mean_rank"] == pytest.approx(4 / 3)
    # i2t: image 0 vs captions [1, 0, .6]: its c0 first -> 1.
    #      image 1 vs captions [0, 1, .8]: its c2 (.8) is behind c1 (1.0) -> 2
    assert result["i2t_R@1"] == 50.0
    assert result["i2t_R@5"] == 100.0
    assert result["i2t_median_rank"] == 1.5
    assert result["i2t_mean_rank"] == 1.5
    assert result["images"] == 2 and result["captions"] == 3


def test_retrieval_one_caption_per_image():
    images = unit([1, 0, 0], [0, 1, 0], [0, 0, 1])
    # caption 0 is closest to image 1 (wrong), the others are right
    captions = unit([0.2, 1, 0], [0, 1, 0.1], [0, 0, 1])
    result = retrieval_metrics(images, captions, [0, 1, 2])
    # t2i c0 scores images [.196, .981, 0]: its image 0 second -> rank 2
    assert result["t2i_R@1"] == pytest.approx(200 / 3)
    assert result["t2i_R@5"] == 100.0
    assert result["t2i_mean_rank"] == pytest.approx(4 / 3)
    # i2t: image 0 vs captions [.196, 0, 0] -> c0 first; image 1 vs [.981, .995, 0] -> c1 first;
    # image 2 vs [0, .0995, 1] -> c2 first
    assert result["i2t_R@1"] == 100.0
    assert result["i2t_median_rank"] == 1.0


def test_retrieval_ties_count_against_the_model():
    images = unit([1, 0], [1, 0])  # two identical images
    captions = unit([1, 0], [1, 0])
    result = retrieval_metrics(images, captions, [0, 1])
    assert result["t2i_R@1"] == 0.0 and result["t2i_median_rank"] == 2.0
    assert result["i2t_R@1"] == 0.0


def test_image_without_caption_is_an_error():
    with pytest.raises(ValueError, match="at least one caption"):
        retrieval_metrics(unit([1, 0], [0, 1]), unit([1, 0]), [0])


def test_blocked_computation_matches_argsort(monkeypatch):
    """Block boundaries must not change anything: compare with ranks read off a full argsort."""
    rng = np.random.default_rng(0)
    images = unit(*rng.standard_normal((23, 8)))
    captions = unit(*rng.standard_normal((70, 8)))
    owner = np.arange(70) % 23
    monkeypatch.setattr(metrics, "CHUNK", 4)
    result = retrieval_metrics(images, captions, owner, ks=(1, 5, 10))
    scores = captions @ images.T
    t2i = [1 + np.argsort(-scores[j]).tolist().index(owner[j]) for j in range(70)]
    i2t = [
        1 + min(np.argsort(-scores[:, i]).tolist().index(j) for j in np.flatnonzero(owner == i))
        for i in range(23)
    ]
    for k in (1, 5, 10):
        assert result[f"t2i_R@{k}"] == pytest.approx(100 * np.mean(np.array(t2i) <= k))
        assert result[f"i2t_R@{k}"] == pytest.approx(100 * np.mean(np.array(i2t) <= k))
    assert result["t2i_mean_rank"] == pytest.approx(np.mean(t2i))
    assert result["i2t_median_rank"] == pytest.approx(np.median(i2t))


# -- classes -----------------------------------------------------------------------------------


def test_classification_ranks_and_topk():
    scores = np.array(
        [
            [0.9, 0.1, 0.0],  # true 0: rank 1
            [0.5, 0.4, 0.3],  # true 2: rank 3
            [0.2, 0.2, 0.1],  # true 1: tied with class 0 -> rank 2 (pessimistic)
        ]
    )
    assert classification_ranks(scores, [0, 2, 1]).tolist() == [1, 3, 2]
    assert topk_accuracy(scores, [0, 2, 1], 1) == pytest.approx(100 / 3)
    assert topk_accuracy(scores, [0, 2, 1], 2) == pytest.approx(200 / 3)


def test_class_retrieval_metric():
    # 3 classes, 5 images; labels per image
    labels = [0, 0, 1, 2, 2]
    images = unit([1, 0, 0], [0.8, 0.6, 0], [0.7, 0.7, 0], [0, 0, 1], [0, 0.6, 0.8])
    classes = unit([0, 1, 0], [0, 1, 0], [0, 0, 1])  # classes 0 and 1 share a prompt vector
    ranks = class_retrieval_ranks(classes, images, labels)
    # class 0 query [0,1,0] scores images [0, .6, .707, 0, .6]: best class-0 image .6 ties
    # image 4 (class 2) and is behind image 2 (.707) -> 1 + 2 = 3
    # class 1: image 2 (.707) is first -> 1; class 2: image 3 (1.0) first -> 1
    assert ranks.tolist() == [3, 1, 1]
    assert recall_at_k(ranks, 1) == pytest.approx(200 / 3)
    assert recall_at_k(ranks, 5) == 100.0


def test_class_without_images_is_an_error():
    with pytest.raises(ValueError):
        class_retrieval_ranks(unit([1, 0], [0, 1]), unit([1, 0]), [0])
