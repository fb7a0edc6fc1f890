"""Probabilities as each model family was trained: CLIP's softmax over the candidates, SigLIP's
sigmoid per pair with its logit bias (no torch)."""

from __future__ import annotations

import numpy as np
import pytest

from pixgrep.tagging.zeroshot import label_probabilities, probability_kind


def test_softmax_without_bias_and_sigmoid_with_it():
    rng = np.random.default_rng(0)
    images, classes = rng.standard_normal((4, 16)), rng.standard_normal((5, 16))
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    classes /= np.linalg.norm(classes, axis=1, keepdims=True)
    cosines = images @ classes.T

    clip = label_probabilities(images, classes, 100.0)
    assert clip.sum(axis=1) == pytest.approx(np.ones(4))
    assert probability_kind(None) == "softmax"

    siglip = label_probabilities(images, classes, 112.0, -16.5)
    assert siglip == pytest.approx(1 / (1 + np.exp(-(112.0 * cosines - 16.5))), rel=1e-5)
    assert ((siglip >= 0) & (siglip <= 1)).all() and not np.allclose(siglip.sum(axis=1), 1.0)
    assert probability_kind(-16.5) == "sigmoid"
    # the order of the labels is the same either way (both are monotonic in the cosine)
    assert (np.argsort(-clip, axis=1) == np.argsort(-siglip, axis=1)).all()


def test_extreme_logits_stay_finite():
    vectors = np.eye(3)
    probabilities = label_probabilities(vectors, vectors, 1e4, -5e3)
    assert np.isfinite(probabilities).all() and probabilities.max() == pytest.approx(1.0)
