"""A query plan ranked over the matrix within a Scope: the candidates, and pages cut from them.

- plain: the top-k of the plan's one vector (search/topk.py).
- all-of: each row of the plan is scored over the whole matrix, the scores standardised and
  combined (search/allof.py), then put back on the whole query's cosine scale (its catalog mean
  and spread), so a score still reads like a cosine and --threshold keeps its meaning roughly.
- duplicate folding (search/dedup.py): `candidates` ranks a window of more hits than the page
  needs; `fold` groups them by leader; the engine widens the window when the groups do not fill
  the page. Same content means the same stored vector (vectors are keyed by content hash), so
  only candidates whose vectors are equal can share a file hash: only their content hash and
  modification time (the tie-break) are read from the catalog, by the engine, between the two.
Nothing here reads the catalog: the server runs it outside its catalog lock.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from pixgrep.search import allof
from pixgrep.search.dedup import Candidate, group_candidates
from pixgrep.search.matrix import Hit, VectorMatrix
from pixgrep.search.plan import QueryPlan
from pixgrep.search.scope import Scope
from pixgrep.search.topk import top

__all__ = ["Candidates", "Group", "candidates", "fold", "rank", "window_for"]

# What the catalog says of an image for the duplicate rules: (content hash, mtime_ns).
Facts = dict[int, tuple[str, int]]


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

    def equal_vector_ids(self) -> list[int]:
        """The image ids whose vector another candidate shares (their files may be one content)."""
        count: dict[str, int] = {}
        for digest in self.digests:
            count[digest] = count.get(digest, 0) + 1
        return [
            hit.image_id for hit, digest in zip(self.hits, self.digests, strict=True) if count[digest] > 1
        ]


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
    """Every group of the window, best first. facts: (content hash, mtime_ns) of the candidates
    in found.equal_vector_ids(); the others stand for their own vector. threshold: the
    near-duplicate cosine (None: identical files only)."""
    hits = found.hits
    pool = []
    for i, (hit, digest) in enumerate(zip(hits, found.digests, strict=True)):
        content, mtime = facts.get(hit.image_id, (f"vector:{digest}", 0))
        pool.append(Candidate(i, hit.score, content, mtime, hit.path, found.vectors[i]))
    return [
        Group(
            hits[leader.key],
            tuple(hits[d.key] for d in dups),
            _parts(plan, found.part_scores, hits[leader.key]),
        )
        for leader, dups in group_candidates(pool, threshold)
    ]


def _parts(plan: QueryPlan, part_scores: np.ndarray | None, hit: Hit) -> dict[str, float] | None:
    if part_scores is None:
        return None
    return {label: float(part_scores[i, hit.row]) for i, label in enumerate(plan.labels) if label}
