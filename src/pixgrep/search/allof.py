"""All-of scoring (`--all`): rank images by how well they match *every* part of a detailed query.

Each part (search/parts.py) is scored against every image like a query of its own. Raw cosines of
different texts are not comparable (one phrase's typical score is 0.15, another's 0.25), so each
part's scores are first standardised against the catalog: z = (s - mean) / std over all images
scored. The parts are then combined by a generalised (power) mean with exponent p <= 0 of exp(z):

    combined = log( mean_i exp(p * z_i) ) / p        (p -> 0: the plain mean of the z_i)

which for p < 0 is a soft minimum. Each z is first capped at CAP: a part matched CAP standard
deviations above the catalog's average counts as fully matched, so an image that matches one part
very strongly and the others not at all scores lower than one that matches every part moderately,
even at the shipped p = 0 (the plain mean, which scored best on Flickr8k dev; docs/quality.md).
The whole query's own score (when the text fits in the model's context length) is one more part,
with weight WHOLE_WEIGHT. The combined score is in standard deviations above the catalog's
average, not a cosine; results also carry each part's cosine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pixgrep.search.parts import split_parts

__all__ = ["POWER", "WHOLE_WEIGHT", "PartPlan", "combine", "plan_parts", "standardise"]

# The power mean's exponent and the whole query's weight among the parts; chosen on the Flickr8k
# *dev* split with pixgrep-mini (docs/quality.md), then measured once on the test split.
POWER = 0.0
WHOLE_WEIGHT = 4.0
CAP = 4.0  # the largest z-score a part contributes: the soft minimum for p = 0 (module docstring)
MIN_PARTS = 2  # a text that splits into fewer parts is searched as one (plain search)


@dataclass(frozen=True)
class PartPlan:
    """What all-of search scores for one query text: its parts, and whether the whole text is used."""

    text: str
    parts: tuple[str, ...]
    whole: bool  # False when the text is longer than the model's context length (it would be cut)

    def texts(self) -> list[str]:
        return [*self.parts, self.text] if self.whole else list(self.parts)

    def weights(self) -> np.ndarray:
        return np.array([1.0] * len(self.parts) + ([WHOLE_WEIGHT] if self.whole else []))


def plan_parts(text: str, cut: bool) -> PartPlan:
    """The plan for `text`; `cut`: the model would cut the whole text (Encoder.cut_texts)."""
    parts = tuple(split_parts(text)) or (text,)
    if len(parts) < MIN_PARTS:  # nothing (or too little) to split: the whole text alone, as plain search
        return PartPlan(text, (text,), whole=False)
    return PartPlan(text, parts, whole=not cut)


def standardise(scores: np.ndarray) -> np.ndarray:
    """Each row's scores as z-scores over its own distribution (a row of equal scores gives zeros)."""
    scores = np.asarray(scores, np.float64)
    mean = scores.mean(axis=-1, keepdims=True)
    std = scores.std(axis=-1, keepdims=True)
    return (scores - mean) / np.where(std > 1e-12, std, 1.0)


def combine(
    part_scores: np.ndarray,
    power: float = POWER,
    weights: np.ndarray | None = None,
    cap: float | None = None,
) -> np.ndarray:
    """Combined all-of score per column of `part_scores` (parts, images) of raw cosines, float32.

    A single part gives its z-scores. power < 0 rewards matching every part (module docstring);
    weights: one per part (default: equal), a weighted power mean. cap (default CAP): each z is
    limited to it first, so a part matched far beyond it cannot make up for parts not matched.
    """
    z = standardise(np.atleast_2d(part_scores))
    limit = CAP if cap is None else cap
    if z.shape[0] > 1 and np.isfinite(limit):
        z = np.minimum(z, limit)
    w = np.ones(z.shape[0]) if weights is None else np.asarray(weights, np.float64)
    w = (w / w.sum())[:, None]
    if power == 0 or z.shape[0] == 1:
        return (w * z).sum(axis=0).astype(np.float32)
    scaled = power * z
    top = scaled.max(axis=0)  # log-sum-exp, stable for large |z|
    mean = np.log((w * np.exp(scaled - top)).sum(axis=0)) + top
    return (mean / power).astype(np.float32)
