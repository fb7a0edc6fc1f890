"""Ranking metrics for retrieval and classification: ranks, Recall@K, top-k accuracy.

One rule everywhere: the rank of a query is the position of its best-scoring relevant item in
the list sorted by score, best first, and ties are broken *pessimistically*: an irrelevant item
whose score equals the best relevant score is counted as ranked ahead of it. So

    rank = 1 + #{irrelevant items j : score_j >= best relevant score}

A model that gives every item the same score therefore gets the worst possible rank, never a lucky
one, and the result does not depend on the order of the items. Other relevant items never push a
relevant item down (for image-to-text with five captions per image, the rank is that of the best
of the five). A query with no relevant item is an error, not a silent miss.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CHUNK = 1024  # query rows per block, so a 8k x 40k score matrix is never built at once


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def first_relevant_ranks(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """1-based rank of the best relevant item of each row, ties pessimistic (see module doc).

    scores: (q, n) float; relevant: (q, n) bool, at least one True per row.
    """
    scores = np.asarray(scores)
    relevant = np.asarray(relevant, dtype=bool)
    if scores.shape != relevant.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and relevant {relevant.shape} must be equal (q, n)")
    if not relevant.any(axis=1).all():
        raise ValueError("every query needs at least one relevant item")
    best = np.where(relevant, scores, -np.inf).max(axis=1)
    ahead = (scores >= best[:, None]) & ~relevant
    return 1 + ahead.sum(axis=1)


def ranks_by_groups(
    queries: np.ndarray,
    items: np.ndarray,
    relevant_items: Sequence[Sequence[int]],
) -> np.ndarray:
    """Rank of each query's best relevant item among `items` by dot product (unit vectors: cosine).

    queries (q, d), items (n, d); relevant_items[i] lists the item indices relevant to query i.
    Scores are computed in blocks of CHUNK queries to bound memory.
    """
    queries, items = _f32(queries), _f32(items)
    if len(relevant_items) != len(queries):
        raise ValueError("one list of relevant items per query")
    out = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), CHUNK):
        block = queries[start : start + CHUNK]
        scores = block @ items.T
        mask = np.zeros(scores.shape, dtype=bool)
        for row, rel in enumerate(relevant_items[start : start + CHUNK]):
            mask[row, list(rel)] = True
        out[start : start + len(block)] = first_relevant_ranks(scores, mask)
    return out


def recall_at_k(ranks: np.ndarray, k: int) -> float:
    """Percentage of queries whose rank is at most k."""
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        raise ValueError("no queries")
    return float(100.0 * np.mean(ranks <= k))


def rank_summary(ranks: np.ndarray, ks: Sequence[int] = (1, 5, 10), prefix: str = "") -> dict[str, float]:
    """{prefix R@k: percent, ..., prefix median_rank, prefix mean_rank} for one direction."""
    ranks = np.asarray(ranks)
    row = {f"{prefix}R@{k}": recall_at_k(ranks, k) for k in ks}
    row[f"{prefix}median_rank"] = float(np.median(ranks))
    row[f"{prefix}mean_rank"] = float(np.mean(ranks))
    return row


def retrieval_metrics(
    image_vectors: np.ndarray,
    caption_vectors: np.ndarray,
    caption_image: Sequence[int] | np.ndarray,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float | int]:
    """The Flickr/COCO protocol, any number of captions per image (at least one each).

    Text-to-image: for each caption, the rank of its image among all images.
    Image-to-text: for each image, the rank of its best caption among all captions.
    caption_image[j] is the index (into image_vectors) of the image caption j describes.
    """
    image_of = np.asarray(caption_image, dtype=np.int64)
    n_images = len(image_vectors)
    if len(image_of) != len(caption_vectors):
        raise ValueError("one image index per caption")
    if n_images == 0 or len(image_of) == 0:
        raise ValueError("need at least one image and one caption")
    if image_of.min() < 0 or image_of.max() >= n_images:
        raise ValueError("caption image index out of range")
    captions_of: list[list[int]] = [[] for _ in range(n_images)]
    for j, i in enumerate(image_of.tolist()):
        captions_of[i].append(j)
    if any(not c for c in captions_of):
        raise ValueError("every image needs at least one caption")
    t2i = ranks_by_groups(caption_vectors, image_vectors, [[i] for i in image_of.tolist()])
    i2t = ranks_by_groups(image_vectors, caption_vectors, captions_of)
    result: dict[str, float | int] = {}
    result.update(rank_summary(t2i, ks, "t2i_"))
    result.update(rank_summary(i2t, ks, "i2t_"))
    result["images"] = n_images
    result["captions"] = len(image_of)
    return result


def retrieval_metrics_from_scores(
    scores: np.ndarray, caption_image: Sequence[int], ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float | int]:
    """As retrieval_metrics, from a ready (captions, images) score matrix (all-of search scores)."""
    scores = np.asarray(scores, np.float32)
    image_of = np.asarray(caption_image, dtype=np.int64)
    if scores.shape[0] != len(image_of) or scores.size == 0:
        raise ValueError("one row of scores per caption, at least one image")
    t2i_mask = np.zeros(scores.shape, dtype=bool)
    t2i_mask[np.arange(len(image_of)), image_of] = True
    t2i = first_relevant_ranks(scores, t2i_mask)
    i2t = first_relevant_ranks(scores.T, t2i_mask.T)
    result: dict[str, float | int] = {}
    result.update(rank_summary(t2i, ks, "t2i_"))
    result.update(rank_summary(i2t, ks, "i2t_"))
    result["images"] = scores.shape[1]
    result["captions"] = len(image_of)
    return result


def classification_ranks(scores: np.ndarray, labels: Sequence[int] | np.ndarray) -> np.ndarray:
    """Rank of the true class for each row of (n, classes) scores, ties pessimistic."""
    scores = np.asarray(scores)
    truth = np.asarray(labels, dtype=np.int64)
    mask = np.zeros(scores.shape, dtype=bool)
    mask[np.arange(len(truth)), truth] = True
    return first_relevant_ranks(scores, mask)


def topk_accuracy(scores: np.ndarray, labels: Sequence[int] | np.ndarray, k: int = 1) -> float:
    """Percentage of rows whose true class is within the top k (ties pessimistic)."""
    return recall_at_k(classification_ranks(scores, labels), k)


def class_retrieval_ranks(
    class_vectors: np.ndarray, image_vectors: np.ndarray, image_labels: Sequence[int] | np.ndarray
) -> np.ndarray:
    """The rclip paper's metric: each class's text queries all images; the rank of the first image
    of that class in the results. Top-1 accuracy = share of classes with rank 1, top-5 = rank <= 5.
    Classes without images are an error (drop them before calling)."""
    labels = np.asarray(image_labels, dtype=np.int64)
    groups = [np.flatnonzero(labels == c).tolist() for c in range(len(class_vectors))]
    if any(not g for g in groups):
        raise ValueError("every class needs at least one image")
    return ranks_by_groups(class_vectors, image_vectors, groups)
