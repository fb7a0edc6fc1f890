"""How a query's term vectors become one vector: the plain weighted sum, or the model's Combiner.

`fuse` is the one place this is decided. With fusion "auto" (the default) or "combiner", a query that
has both a positive image term and a positive text term (`REF.jpg + "at the beach"`, the web page's
refine step) and a model with a Combiner (pixgrep.models.combiner) is composed by it:

- the positive image terms are summed (by weight) into one reference vector I, weight a = their
  weights' sum; the positive text terms likewise into T, weight b;
- the Combiner fuses I and T into C, which takes the place of min(a, b) of each: C counts with the
  length that min(a, b) * (I + T) would have;
- what is left of the larger side, (a - min) * I or (b - min) * T, and every raw vector term are
  added around it as in the sum;
- each `-` term (the web page's "not this") then pushes on the fused query's own score scale and
  only with what it does not share with I (`_push_away`): it never outweighs the chosen picture
  plus the change. The total is normalised.

With equal weights (the usual case) the positive part is exactly the Combiner's query. Anything
else (text only, images only, fusion "sum", no Combiner) is today's weighted sum of unit vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from pixgrep.errors import PixgrepError
from pixgrep.search.options import check_fusion

if TYPE_CHECKING:
    from pixgrep.models.combiner import Combiner

IMAGE_KINDS = frozenset({"path", "url", "bytes", "image_id"})


def is_composed(kinds: Sequence[str], weights: Sequence[float]) -> bool:
    """Has a positive image term and a positive text term: a query a Combiner can fuse."""
    pairs = list(zip(kinds, weights, strict=True))
    return any(k in IMAGE_KINDS and w > 0 for k, w in pairs) and any(k == "text" and w > 0 for k, w in pairs)


def combiner_for(encoder: object, fusion: str) -> Combiner | None:
    """The Combiner a query with this fusion would use (None for "sum", or "auto" without one)."""
    from pixgrep.models.combiner import find_combiner

    if check_fusion(fusion) == "sum":
        return None
    combiner = find_combiner(encoder)
    if combiner is None and fusion == "combiner":
        raise PixgrepError(
            f"model {getattr(encoder, 'model_id', '?')} has no Combiner (--fusion combiner): train one with "
            "`pixgrep train combiner` and add it with `pixgrep models add-combiner`, or use --fusion sum"
        )
    return combiner


def fusion_used(kinds: Sequence[str], weights: Sequence[float], combiner: Combiner | None) -> str:
    """ "combiner" or "sum": what `fuse` does for these terms."""
    return "combiner" if combiner is not None and is_composed(kinds, weights) else "sum"


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def _push_away(
    query: np.ndarray, reference: np.ndarray, negatives: list[tuple[float, np.ndarray]]
) -> np.ndarray:
    """The composed query moved away from its `-` terms, on the query's own score scale.

    A Combiner's query scores its best matches at about 0.12, where an image vector scores
    similar pictures at 0.5-0.9: subtracted as raw vectors, two "not this" pictures at -0.25 each
    outweighed the chosen picture and the change (0 dogs in the top 10 instead of 7). So each
    negative term counts in units of the query's score of the reference picture, and only with
    what it does not share with that picture (its direction made orthogonal to the reference):
    "not this" rejects how those pictures differ, never the subject they have in common. A term
    of weight -w then lowers any picture's score by at most w times the reference's score."""
    scale = max(float(query @ reference), 0.0)
    total = query.copy()
    for weight, unit in negatives:
        apart = _unit(unit - float(unit @ reference) * reference)
        total += weight * scale * apart
    return total


def fuse(
    kinds: Sequence[str],
    weights: Sequence[float],
    vectors: Sequence[np.ndarray],
    combiner: Combiner | None = None,
) -> tuple[np.ndarray, str]:
    """(unit float32 query vector, "combiner" or "sum") from the terms' kinds, weights and vectors.

    Raises PixgrepError when the vectors differ in size or the terms cancel out."""
    if not vectors:
        raise PixgrepError("empty query: give some text, an image path or an image URL")
    dim = len(vectors[0])
    units = []
    for vector in vectors:
        vector = np.asarray(vector, np.float64).reshape(-1)
        if vector.shape[0] != dim:
            raise PixgrepError(f"query terms have different sizes ({vector.shape[0]} vs {dim})")
        units.append(_unit(vector))  # stored float16 vectors are only nearly unit
    used = fusion_used(kinds, weights, combiner)
    total = np.zeros(dim, np.float64)
    if used == "sum" or combiner is None:
        for weight, unit in zip(weights, units, strict=True):
            total += weight * unit
    else:
        image_sum, text_sum = np.zeros(dim), np.zeros(dim)
        a = b = 0.0
        negatives: list[tuple[float, np.ndarray]] = []
        for kind, weight, unit in zip(kinds, weights, units, strict=True):
            if kind in IMAGE_KINDS and weight > 0:
                image_sum += weight * unit
                a += weight
            elif kind == "text" and weight > 0:
                text_sum += weight * unit
                b += weight
            elif weight < 0 and kind != "vector":
                negatives.append((weight, unit))
            else:
                total += weight * unit  # raw vectors: around the Combiner, as in the sum
        image, text = _unit(image_sum), _unit(text_sum)
        paired = min(a, b)
        composed = combiner.combine(image[None].astype(np.float32), text[None].astype(np.float32))[0]
        total += float(np.linalg.norm(paired * (image + text))) * composed.astype(np.float64)
        total += (a - paired) * image + (b - paired) * text
        total = _push_away(_unit(total), image, negatives) if negatives else total
    norm = float(np.linalg.norm(total))
    if not np.isfinite(norm) or norm < 1e-6:
        raise PixgrepError("the query's terms cancel out (weights add up to nothing): change a weight")
    return (total / norm).astype(np.float32), used
