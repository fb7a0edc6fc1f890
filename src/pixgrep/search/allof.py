"""All-of scoring (`--all`): rank images by how well they match *every* part of a detailed query.

Each part (search/parts.py) is scored against every image like a query of its own. Raw cosines of
different texts are not comparable (one phrase's typical score is 0.15, another's 0.25), so each
part's scores are first standardised against the catalog: z = (s - mean) / std over all images
scored. The parts are then combined by a generalised (power) mean with exponent p < 0 of exp(z):

    combined = log( mean_i exp(p * z_i) ) / p        (p -> 0: the plain mean of the z_i)

which is a soft minimum: an image that matches one part very strongly and the others not at all
scores lower than one that matches every part moderately. The whole query's own score (when the
text fits in the model's context length) is one more part. The combined score is in standard
deviations above the catalog's average, not a cosine; results also carry each part's cosine.
"""

from __future__ import annotations

import numpy as np

__all__ = ["POWER", "combine", "standardise"]

# Exponent of the power mean; chosen on the Flickr8k *dev* split with pixgrep-mini (docs/quality.md).
POWER = -1.0


def standardise(scores: np.ndarray) -> np.ndarray:
    """Each row's scores as z-scores over its own distribution (a row of equal scores gives zeros)."""
    scores = np.asarray(scores, np.float64)
    mean = scores.mean(axis=-1, keepdims=True)
    std = scores.std(axis=-1, keepdims=True)
    return (scores - mean) / np.where(std > 1e-12, std, 1.0)


def combine(part_scores: np.ndarray, power: float = POWER) -> np.ndarray:
    """Combined all-of score per column of `part_scores` (parts, images) of raw cosines, float32.

    A single part gives its z-scores. power < 0 rewards matching every part (module docstring).
    """
    z = standardise(np.atleast_2d(part_scores))
    if power == 0 or z.shape[0] == 1:
        return z.mean(axis=0).astype(np.float32)
    scaled = power * z
    top = scaled.max(axis=0)  # log-sum-exp, stable for large |z|
    mean = np.log(np.exp(scaled - top).mean(axis=0)) + top
    return (mean / power).astype(np.float32)
