"""The best rows of a matrix for a query within a Scope: exact top-k, or the ANN index when it pays.

Exact: every row in scope is scored (folder scope as base row ranges, dates and metadata as masks),
then the best `offset + k` are picked with the exclusions asked only of the best candidates. ANN
(search/ann.py, from ANN_MIN_ROWS rows): candidates from the index, filtered, re-scored exactly and
merged with the appended rows; when over-fetching cannot fill the page, the exact path answers.
"""

from __future__ import annotations

import numpy as np

from pixgrep.search.matrix import Hit, VectorMatrix
from pixgrep.search.scope import Scope

__all__ = ["ANN_MAX_FETCH", "ANN_MIN_FETCH", "ANN_MIN_SCOPE", "top"]

ANN_MIN_SCOPE = 20_000  # scoped/dated searches with fewer candidate rows are scored exactly
ANN_MAX_FETCH = 8192  # ANN candidates fetched at most before falling back to exact
ANN_MIN_FETCH = 64  # candidates re-scored exactly per query, at least (docs/ann.md)


def top(
    matrix: VectorMatrix,
    query: np.ndarray,
    k: int,
    scope: Scope,
    *,
    offset: int = 0,
    scores: np.ndarray | None = None,
) -> list[Hit]:
    """The best `k` rows after skipping `offset`, best first (ties: path order); how they were
    found ("exact" or "ann") is left in matrix.last_method for `--verbose`. scores: a score for
    every row (all-of search) instead of cosines with `query`; always exact."""
    if k <= 0 or matrix.rows == 0:
        return []
    query = np.asarray(query, np.float32).reshape(-1)
    if query.shape[0] != matrix.dim:
        raise ValueError(f"query has {query.shape[0]} dimensions, the catalog's vectors {matrix.dim}")
    base = matrix.base
    ranges = [(0, base.rows)] if scope.roots is None else matrix.rows_under(scope.roots)
    tail = matrix.tail_in_scope(scope.roots, scope.after, scope.before)
    allowed = None if scope.allowed is None else matrix.mask_of_ids(set(scope.allowed))
    if allowed is not None:
        tail = tail[allowed[tail + base.rows]]
    if not scope.exact and scores is None:
        index = base.ann_index()
        if index is not None:
            hits = _top_ann(matrix, index, query, k, offset, ranges, tail, scope, allowed)
            if hits is not None:
                matrix.last_method = "ann"
                return hits
    matrix.last_method = "exact"
    matrix.warm_up()
    score_parts, row_parts = [], []
    for lo, hi in ranges:
        part = matrix.scores(query, lo, hi) if scores is None else scores[lo:hi]
        keep = ~matrix.base_dead[lo:hi]
        if scope.after is not None:
            keep &= base.taken[lo:hi] >= scope.after  # NaN (no capture time) compares False
        if scope.before is not None:
            keep &= base.taken[lo:hi] < scope.before
        if allowed is not None:
            keep &= allowed[lo:hi]
        rows = np.arange(lo, hi)
        if not keep.all():
            part, rows = part[keep], rows[keep]
        score_parts.append(part)
        row_parts.append(rows)
    if len(tail):
        rows = tail + base.rows
        score_parts.append(matrix.scores_of_rows(query, rows) if scores is None else scores[rows])
        row_parts.append(rows)
    if not score_parts:
        return []
    return _pick(matrix, np.concatenate(score_parts), np.concatenate(row_parts), k, offset, scope)


def _pick(
    matrix: VectorMatrix, scores: np.ndarray, rows: np.ndarray, k: int, offset: int, scope: Scope
) -> list[Hit]:
    """The top `offset + k` candidates the exclusions keep, best first; ties in row (path) order."""
    if scope.threshold is not None:
        keep = scores >= scope.threshold
        scores, rows = scores[keep], rows[keep]
    exclusions = None if scope.exclusions.empty else scope.exclusions
    need = offset + k
    window = min(len(scores), need if exclusions is None else need + 16)
    while True:
        if window < len(scores):
            picked = np.argpartition(-scores, window - 1)[:window]
        else:
            picked = np.arange(len(scores))
        picked = picked[np.lexsort((rows[picked], -scores[picked]))]
        hits: list[Hit] = []
        for position in picked:
            row = int(rows[position])
            image_id, path = matrix.id_at(row), matrix.path_at(row)
            if exclusions is None or not exclusions.drops(image_id, path):
                hits.append(Hit(row, image_id, path, float(scores[position])))
                if len(hits) >= need:
                    break
        if len(hits) >= need or window >= len(scores):
            return hits[offset:need]
        window = min(len(scores), window * 4)


def _top_ann(matrix, index, query, k, offset, ranges, tail, scope: Scope, allowed) -> list[Hit] | None:
    """ANN candidates, filtered, re-scored exactly, merged with the appended rows; None means
    "score exactly": the scope is too small for the index to pay, or over-fetching did not
    find enough candidates that pass the filters."""
    base = matrix.base
    after, before, threshold = scope.after, scope.before, scope.threshold
    in_scope = sum(hi - lo for lo, hi in ranges)
    if after is not None or before is not None or allowed is not None:
        passing = np.ones(base.rows, bool) if allowed is None else allowed[: base.rows].copy()
        if after is not None:
            passing &= base.taken >= after
        if before is not None:
            passing &= base.taken < before
        in_scope = sum(int(np.count_nonzero(passing[lo:hi])) for lo, hi in ranges)
    if in_scope < ANN_MIN_SCOPE:
        return None
    starts = np.asarray([lo for lo, _ in ranges], np.int64)
    ends = np.asarray([hi for _, hi in ranges], np.int64)
    share = in_scope / max(base.rows, 1)
    need = offset + k
    fetch = int(min(ANN_MAX_FETCH, max(ANN_MIN_FETCH, 2 * need / share + 16)))
    tail_rows = tail + base.rows
    tail_scores = matrix.scores_of_rows(query, tail_rows) if len(tail_rows) else np.zeros(0, np.float32)
    while True:
        found = index.search(query, fetch)
        exhausted = len(found) < fetch
        found = found[(found >= 0) & (found < base.rows)]
        slot = np.searchsorted(starts, found, side="right") - 1
        keep = (slot >= 0) & (found < ends[np.maximum(slot, 0)]) & ~matrix.base_dead[found]
        if after is not None:
            keep &= base.taken[found] >= after
        if before is not None:
            keep &= base.taken[found] < before
        if allowed is not None:
            keep &= allowed[found]
        rows = found[keep]
        scores = matrix.scores_of_rows(query, rows)
        hits = _pick(
            matrix, np.concatenate([scores, tail_scores]), np.concatenate([rows, tail_rows]), k, offset, scope
        )
        if len(hits) >= k or exhausted:
            return hits
        # Fewer than k: complete only if the threshold cut the list (the rest score lower).
        if threshold is not None and len(scores) and float(scores.min()) < threshold:
            return hits
        if fetch >= ANN_MAX_FETCH:
            return None
        fetch = min(ANN_MAX_FETCH, fetch * 4)
