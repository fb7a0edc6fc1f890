"""What the engine does for SearchOptions.all_parts, .ignore_tone, .tone and .dedup (issue 13).

The engine hands over the query's terms with their vectors and a matrix to rank; this module
returns the ranked hits, their per-part scores and the near-identical images folded into each.

- plain search: the weighted sum of the term vectors (tone removed/added when asked), one score.
- all-of (search/allof.py): every text term is split into parts; a part is scored as the query
  with that text term replaced by the part; each part's scores over the whole catalog are
  standardised and combined, with the whole query as one more part when no text term is cut. The
  combined score is put back on the whole query's cosine scale (its catalog mean and spread), so
  a score still reads like a cosine and --threshold keeps its meaning roughly.
- dedup (search/dedup.py): more candidates than asked are ranked, grouped by leader, and pages
  are cut from the groups, so `k` results are k different pictures.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pixgrep.models.base import Encoder
from pixgrep.search import allof
from pixgrep.search.matrix import Hit, VectorMatrix

__all__ = ["Group", "QueryPlan", "query_plan", "rank"]


@dataclass(frozen=True)
class QueryPlan:
    """The vectors to score: one (plain) or parts plus maybe the whole query (all-of)."""

    vectors: np.ndarray  # (P, dim) unit rows
    labels: tuple[str, ...]  # one per row: the part's text ("" for the whole query)
    weights: np.ndarray  # one per row (all-of); unused for plain search
    all_of: bool


def query_plan(
    encoder: Encoder,
    texts: Sequence[str | None],
    weights: Sequence[float],
    term_vectors: np.ndarray,
    *,
    all_parts: bool = False,
    ignore_tone: bool = False,
    tone: tuple[str, ...] = (),
    combine: Callable[[np.ndarray], np.ndarray],
) -> QueryPlan:
    """texts[i]: the text of term i (None for an image or vector term); term_vectors: (terms, dim) unit.
    combine(term_vectors) -> the unit query vector (the engine's weighted sum or Combiner fusion).

    Warns (QueryCutWarning) once per text term longer than the model's context length.
    """
    from pixgrep.search.truncation import warn_if_cut

    text_terms = [i for i, t in enumerate(texts) if t is not None]
    cut = dict(
        zip(text_terms, warn_if_cut(encoder, [str(texts[i]) for i in text_terms], all_parts), strict=True)
    )
    term_vectors = np.asarray(term_vectors, np.float32)
    whole = combine(term_vectors)
    plans = (
        {i: allof.plan_parts(str(texts[i]), cut[i]) for i in text_terms if weights[i] > 0}
        if all_parts
        else {}
    )
    split = {i: plan for i, plan in plans.items() if len(plan.parts) > 1}
    if not split:
        vectors = _toned(encoder, whole[None], ignore_tone, tone)
        return QueryPlan(vectors, ("",), np.ones(1), all_of=False)
    part_texts = [part for plan in split.values() for part in plan.parts]
    part_vectors = np.asarray(encoder.encode_texts(part_texts), np.float32)
    rows, labels, row_weights = [], [], []
    position = 0
    for i, plan in split.items():
        for part in plan.parts:
            replaced = term_vectors.copy()
            replaced[i] = part_vectors[position]
            position += 1
            rows.append(combine(replaced))
            labels.append(part)
            row_weights.append(1.0)
    if all(plan.whole for plan in split.values()):
        rows.append(whole)
        labels.append("")
        row_weights.append(allof.WHOLE_WEIGHT)
    vectors = _toned(encoder, np.stack(rows), ignore_tone, tone)
    return QueryPlan(vectors, tuple(labels), np.asarray(row_weights), all_of=True)


def _toned(encoder: Encoder, vectors: np.ndarray, ignore_tone: bool, tone: tuple[str, ...]) -> np.ndarray:
    if not ignore_tone and not tone:
        return vectors
    from pixgrep.search.tone import apply_tone

    return apply_tone(encoder, vectors, ignore_tone=ignore_tone, tone=tone)


@dataclass(frozen=True)
class Group:
    hit: Hit
    duplicates: tuple[Hit, ...]
    parts: dict[str, float] | None


def rank(
    matrix: VectorMatrix,
    plan: QueryPlan,
    k: int,
    offset: int,
    top_kwargs: dict,
    dedup: bool,
    facts: Callable[[list[int]], dict[int, tuple[str, int]]],
    threshold: float | None = None,
) -> list[Group]:
    """The page [offset, offset + k) of results (groups when dedup), best first.

    top_kwargs: VectorMatrix.top's filters (roots, threshold, after, before, accept).
    facts(image_ids) -> {image_id: (content_hash, mtime_ns)} for the duplicate rules.
    threshold: the near-duplicate cosine (None: only identical files are folded).
    """
    scorer = None
    part_scores: np.ndarray | None = None
    if plan.all_of:
        part_scores = np.stack([matrix.all_scores(v) for v in plan.vectors])
        combined = allof.combine(part_scores, allof.POWER, plan.weights)
        # Back on the whole query's cosine scale (or the parts' average scale without it).
        reference = part_scores[-1] if plan.labels[-1] == "" else part_scores.mean(axis=0)
        combined = (reference.mean() + combined * reference.std()).astype(np.float32)
        scorer = lambda rows: combined[rows]  # noqa: E731
    query = plan.vectors[0]
    need = offset + k
    if not dedup:
        hits = matrix.top(query, k, offset=offset, scorer=scorer, **top_kwargs)
        return [Group(hit, (), _parts(plan, part_scores, hit)) for hit in hits]
    from pixgrep.search.dedup import Candidate, group_candidates

    window = 2 * need + 16
    while True:
        hits = matrix.top(query, window, scorer=scorer, **top_kwargs)
        # Same content means the same stored vector (vectors are keyed by content hash), so only
        # candidates whose vectors are equal can share a file hash: their hash and modification
        # time (the tie-break) are read; a query without such copies reads only its result rows.
        rows = [matrix.vector_at(hit.row) for hit in hits]
        digests = [hashlib.sha1(row.tobytes()).hexdigest() for row in rows]
        count: dict[str, int] = {}
        for digest in digests:
            count[digest] = count.get(digest, 0) + 1
        equal = [hit.image_id for hit, digest in zip(hits, digests, strict=True) if count[digest] > 1]
        known = facts(equal) if equal else {}
        candidates = []
        for i, (hit, row, digest) in enumerate(zip(hits, rows, digests, strict=True)):
            content, mtime = known.get(hit.image_id, (f"vector:{digest}", 0))
            candidates.append(Candidate(i, hit.score, content, mtime, hit.path, row.astype(np.float32)))
        grouped = group_candidates(candidates, threshold)
        if len(grouped) >= need or len(hits) < window:
            break
        window *= 4
    page = grouped[offset:need]
    return [
        Group(hits[leader.key], tuple(hits[d.key] for d in dups), _parts(plan, part_scores, hits[leader.key]))
        for leader, dups in page
    ]


def _parts(plan: QueryPlan, part_scores: np.ndarray | None, hit: Hit) -> dict[str, float] | None:
    if part_scores is None:
        return None
    return {label: float(part_scores[i, hit.row]) for i, label in enumerate(plan.labels) if label}
