"""A query plan ranked over the matrix within a Scope: the candidates, and pages cut from them.

- plain: the top-k of the plan's one vector (search/topk.py).
- all-of: each row of the plan is scored over the whole matrix, the scores standardised and
  combined (search/allof.py), then put back on the whole query's cosine scale (its catalog mean
  and spread), so a score still reads like a cosine and --threshold keeps its meaning roughly.
- duplicate folding (search/dedup.py): `candidates` ranks a window of more hits than the page
  needs; `fold` groups them by leader; the engine widens the window when the groups do not fill
  the page. Between the two the engine reads what the rules need of each candidate from the
  catalog (content hash, modification time, size in pixels, perceptual fingerprint: `Fact`).
Nothing here reads the catalog: the server runs it outside its catalog lock.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np

from pixgrep.search import allof
from pixgrep.search.dedup import Candidate, best_copy, group_candidates
from pixgrep.search.matrix import Hit, VectorMatrix
from pixgrep.search.plan import QueryPlan
from pixgrep.search.scope import Scope
from pixgrep.search.topk import top

__all__ = ["Candidates", "Fact", "Group", "candidates", "fold", "rank", "window_for"]


@dataclass(frozen=True)
class Fact:
    """What the catalog says of a candidate for the duplicate rules."""

    content_hash: str
    mtime_ns: int
    pixels: int  # width x height (0: unknown)
    size: int  # file bytes
    fingerprint: bytes | None


Facts = dict[int, Fact]  # by image id


@dataclass(frozen=True)
class Group:
    hit: Hit
    duplicates: tuple[Hit, ...]
    parts: dict[str, float] | None


@dataclass(frozen=True)
class Candidates:
    """A window of ranked hits with their stored vectors, before folding."""

    hits: list[Hit]
    vectors: np.ndarray  # (hits, dim) float32, the stored image vectors
    digests: list[str]  # a digest of each stored vector: equal digests, equal vectors
    part_scores: np.ndarray | None
    complete: bool  # the window held every row in scope


def window_for(k: int, offset: int) -> int:
    """How many candidates to rank first for a folded page: twice the page and a margin."""
    return 2 * (offset + k) + 16


def _scores(matrix: VectorMatrix, plan: QueryPlan) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(score of every row, per-part scores) for an all-of plan; (None, None) for a plain one."""
    if not plan.all_of:
        return None, None
    part_scores = np.stack([matrix.all_scores(v) for v in plan.vectors])
    combined = allof.combine(part_scores, allof.POWER, plan.weights)
    # Back on the whole query's cosine scale (or the parts' average scale without it).
    reference = part_scores[-1] if plan.labels[-1] == "" else part_scores.mean(axis=0)
    return (reference.mean() + combined * reference.std()).astype(np.float32), part_scores


def rank(matrix: VectorMatrix, plan: QueryPlan, k: int, offset: int, scope: Scope) -> list[Group]:
    """The page [offset, offset + k) of results without folding, best first."""
    scores, part_scores = _scores(matrix, plan)
    hits = top(matrix, plan.vectors[0], k, scope, offset=offset, scores=scores)
    return [Group(hit, (), _parts(plan, part_scores, hit)) for hit in hits]


def candidates(matrix: VectorMatrix, plan: QueryPlan, window: int, scope: Scope) -> Candidates:
    """The best `window` hits in scope, with what folding needs of them."""
    scores, part_scores = _scores(matrix, plan)
    hits = top(matrix, plan.vectors[0], window, scope, scores=scores)
    if hits:
        vectors = np.stack([matrix.vector_at(hit.row) for hit in hits])
    else:
        vectors = np.zeros((0, matrix.dim), np.float16)
    digests = [hashlib.sha1(row.tobytes()).hexdigest() for row in vectors]
    return Candidates(hits, vectors.astype(np.float32), digests, part_scores, len(hits) < window)


def fold(found: Candidates, facts: Facts, threshold: float | None, plan: QueryPlan) -> list[Group]:
    """Every group of the window, best first. facts: what the catalog says of each candidate (one
    left out stands for its own vector, without a fingerprint). threshold: the model's
    near-duplicate cosine (None: identical files only). A group is ranked by its best-scored
    member and shows its best copy (dedup.best_copy) with that score."""
    hits = found.hits
    pool = []
    for i, (hit, digest) in enumerate(zip(hits, found.digests, strict=True)):
        fact = facts.get(hit.image_id) or Fact(f"vector:{digest}", 0, 0, 0, None)
        pool.append(
            Candidate(
                i,
                hit.score,
                fact.content_hash,
                fact.mtime_ns,
                hit.path,
                found.vectors[i],
                fact.fingerprint,
                fact.pixels,
                fact.size,
            )
        )
    groups = []
    for leader, dups in group_candidates(pool, threshold):
        shown = best_copy([leader, *dups])
        others = [c for c in (leader, *dups) if c is not shown]
        hit = replace(hits[shown.key], score=leader.score)
        groups.append(Group(hit, tuple(hits[c.key] for c in others), _parts(plan, found.part_scores, hit)))
    return groups


def _parts(plan: QueryPlan, part_scores: np.ndarray | None, hit: Hit) -> dict[str, float] | None:
    if part_scores is None:
        return None
    return {label: float(part_scores[i, hit.row]) for i, label in enumerate(plan.labels) if label}
