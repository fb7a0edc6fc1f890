"""How a query becomes the vectors to score: fusion, all-of parts, tone, and the notes to show.

- plain search: the terms' unit vectors combined into one query vector (the weighted sum, or for
  image + text the model's Combiner when it has one and `fusion` allows it: search/fusion.py),
  with tone removed or added when asked (search/tone.py).
- all-of (search/allof.py): every text term is split into parts; a part is scored as the query
  with that text term replaced by the part; the ranking (search/rank.py) standardises each part's
  scores and combines them, with the whole query as one more row when no text term is cut.
- notes: a text longer than the model reads is named here (search/truncation.py), as data the
  results carry to the CLI and the server.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pixgrep.models.base import Encoder
from pixgrep.search import allof
from pixgrep.search.fusion import combiner_for, fuse, is_composed
from pixgrep.search.query import Term

__all__ = ["QueryPlan", "plan_query"]


@dataclass(frozen=True)
class QueryPlan:
    """The vectors to score: one (plain) or parts plus maybe the whole query (all-of)."""

    vectors: np.ndarray  # (P, dim) unit rows
    labels: tuple[str, ...]  # one per row: the part's text ("" for the whole query)
    weights: np.ndarray  # one per row (all-of); unused for plain search
    all_of: bool
    notes: tuple[str, ...] = ()  # for the user: e.g. a text the model cuts


def plan_query(
    encoder: Encoder,
    terms: Sequence[Term],
    units: np.ndarray,
    *,
    fusion: str = "auto",
    all_parts: bool = False,
    ignore_tone: bool = False,
    tone: tuple[str, ...] = (),
) -> QueryPlan:
    """The plan for `terms` whose unit vectors are `units` (terms, dim)."""
    from pixgrep.search.truncation import cut_notes

    kinds, weights = [t.kind for t in terms], [t.weight for t in terms]
    combiner = combiner_for(encoder, fusion) if is_composed(kinds, weights) else None
    units = np.asarray(units, np.float32)

    def combined(rows: np.ndarray) -> np.ndarray:
        return fuse(kinds, weights, list(rows), combiner)[0]

    text_terms = [i for i, t in enumerate(terms) if t.kind == "text"]
    flags, notes = cut_notes(encoder, [str(terms[i].value) for i in text_terms], all_parts)
    cut = dict(zip(text_terms, flags, strict=True))
    whole = combined(units)
    plans = (
        {i: allof.plan_parts(str(terms[i].value), cut[i]) for i in text_terms if weights[i] > 0}
        if all_parts
        else {}
    )
    split = {i: plan for i, plan in plans.items() if len(plan.parts) > 1}
    if not split:
        vectors = _toned(encoder, whole[None], ignore_tone, tone)
        return QueryPlan(vectors, ("",), np.ones(1), all_of=False, notes=tuple(notes))
    part_texts = [part for plan in split.values() for part in plan.parts]
    part_vectors = np.asarray(encoder.encode_texts(part_texts), np.float32)
    rows, labels, row_weights = [], [], []
    position = 0
    for i, plan in split.items():
        for part in plan.parts:
            replaced = units.copy()
            replaced[i] = part_vectors[position]
            position += 1
            rows.append(combined(replaced))
            labels.append(part)
            row_weights.append(1.0)
    if all(plan.whole for plan in split.values()):
        rows.append(whole)
        labels.append("")
        row_weights.append(allof.WHOLE_WEIGHT)
    vectors = _toned(encoder, np.stack(rows), ignore_tone, tone)
    return QueryPlan(vectors, tuple(labels), np.asarray(row_weights), all_of=True, notes=tuple(notes))


def _toned(encoder: Encoder, vectors: np.ndarray, ignore_tone: bool, tone: tuple[str, ...]) -> np.ndarray:
    if not ignore_tone and not tone:
        return vectors
    from pixgrep.search.tone import apply_tone

    return apply_tone(encoder, vectors, ignore_tone=ignore_tone, tone=tone)
