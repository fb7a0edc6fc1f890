"""CLIP4Cir stage 1 for pixgrep-mini (an experiment, docs/composed.md): fine-tuning a copy of the
text head with the sum combiner finds the targets better, and leaves the given head untouched."""

from __future__ import annotations

import numpy as np
import pytest

from pixgrep.eval.composed import composed_recalls, query_vectors

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from pixgrep.models.combiner_stage1 import SplitData, Stage1Config, train_text_head  # noqa: E402

DIM, FEATURES = 16, 12
TRUE_HEAD = np.random.default_rng(42).normal(size=(DIM, FEATURES)).astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def triplets(n: int, seed: int) -> SplitData:
    """target = normalise(reference + normalise(TRUE_HEAD x)): the sum is right with the true head."""
    rng = np.random.default_rng(seed)
    reference = _unit(rng.normal(size=(n, DIM)))
    minilm = _unit(rng.normal(size=(n, FEATURES)))
    target = _unit(reference + _unit(minilm @ TRUE_HEAD.T))
    return SplitData(np.concatenate([reference, target]), minilm, np.arange(n), np.arange(n, 2 * n))


def test_stage1_fits_the_text_head_to_the_sum_and_keeps_the_given_one():
    torch.set_num_threads(1)
    noise = np.random.default_rng(3).normal(size=TRUE_HEAD.shape).astype(np.float32)
    start_w, start_b = TRUE_HEAD + 1.5 * noise, np.zeros(DIM, np.float32)
    given = start_w.copy()
    cfg = Stage1Config(lr=3e-2, dropout=0.0, batch_size=128, epochs=30, patience=30, logit_scale=20.0)
    head = train_text_head(triplets(600, 0), triplets(200, 1), start_w, start_b, cfg, log=lambda _: None)
    np.testing.assert_array_equal(start_w, given)  # plain text search's head is never changed
    held_out = triplets(200, 2)

    def sum_r1(weight: np.ndarray, bias: np.ndarray) -> float:
        feats = held_out.features(weight, bias)
        return composed_recalls(feats, query_vectors(feats, "sum"))["R@1"]

    assert head["epoch"] > 0
    assert sum_r1(head["weight"], head["bias"]) >= sum_r1(start_w, start_b) + 20
