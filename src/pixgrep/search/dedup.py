"""Near-duplicate images: collapsed in search results, listed by `pixgrep duplicates`.

Two images are duplicates when their files have the same content hash, or when the cosine of their
image vectors is at least the model's threshold. Cosines mean different things in different
models (a random-weight test model puts distinct pictures at 0.9 and above), so a threshold is
used only where it was measured (MEASURED, keyed by the model name before "@"): for pixgrep-mini
it was chosen on Flickr8k test images (docs/quality.md), where re-encoded (JPEG quality 60-95),
resized (50-150 %) and cropped (90 %) copies score above it and each image's nearest distinct
photo below it. Other models collapse only identical files unless a threshold is given.

In search results a group is led by its best-scored image (equal scores: the file with the oldest
modification time, then the smaller path); every later candidate that duplicates a leader is
folded into that leader's group instead of being shown. Comparing with the leader only (not with
every member) keeps a chain of look-alikes from merging distinct photos.
`duplicate_groups` (the catalog-wide listing) joins every duplicate pair into connected groups,
computed with exact blockwise matrix products.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pixgrep.catalog.db import CatalogDB
from pixgrep.records import ImageRecord

__all__ = [
    "MEASURED",
    "THRESHOLD",
    "Candidate",
    "catalog_duplicates",
    "duplicate_groups",
    "group_candidates",
    "threshold_for",
]

NEVER = 2.0  # a cosine no pair reaches: only identical files (same content hash) are duplicates


def threshold_for(model_id: str) -> float | None:
    """The measured duplicate threshold of a model, or None (only identical files count)."""
    return MEASURED.get(model_id.split("@", 1)[0])


THRESHOLD = 0.85  # image-image cosine for pixgrep-mini (module docstring, docs/quality.md)
MEASURED = {"pixgrep-mini": THRESHOLD}
BLOCK_ROWS = 4096  # rows per block of the all-pairs product: a 4096 x 4096 float32 block is 64 MB


@dataclass(frozen=True)
class Candidate:
    key: int  # caller's handle (an image id or a row)
    score: float
    content_hash: str
    mtime_ns: int
    path: str
    vector: np.ndarray  # unit image vector


def _order(candidate: Candidate) -> tuple:
    return (-candidate.score, candidate.mtime_ns, candidate.path)


def group_candidates(
    candidates: Sequence[Candidate], threshold: float | None = THRESHOLD
) -> list[tuple[Candidate, list[Candidate]]]:
    """(leader, its duplicates) in leader order, best first (module docstring for the rules).

    threshold None: only the same content hash makes a duplicate."""
    threshold = NEVER if threshold is None else threshold
    groups: list[tuple[Candidate, list[Candidate]]] = []
    leaders: list[np.ndarray] = []
    by_hash: dict[str, int] = {}
    for candidate in sorted(candidates, key=_order):
        index = by_hash.get(candidate.content_hash)
        if index is None and leaders:
            cosines = np.stack(leaders) @ np.asarray(candidate.vector, np.float32)
            best = int(np.argmax(cosines))
            if cosines[best] >= threshold:
                index = best
        if index is None:
            by_hash.setdefault(candidate.content_hash, len(groups))
            groups.append((candidate, []))
            leaders.append(np.asarray(candidate.vector, np.float32))
        else:
            groups[index][1].append(candidate)
    return groups


def duplicate_groups(
    vectors: np.ndarray,
    hashes: Sequence[str] | Sequence[bytes] | None = None,
    threshold: float = THRESHOLD,
    progress: Callable[[int], None] | None = None,
) -> list[list[int]]:
    """Groups (of 2 or more row indices, each sorted) of duplicate rows: same hash or cosine >= threshold.

    Exact: every pair is compared, BLOCK_ROWS x BLOCK_ROWS at a time (upper triangle only).
    hashes may be None when equal contents have equal vectors (the catalog: vectors are keyed by
    content hash). progress(rows_done) is called after each block row.
    """
    n = len(vectors)
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    first_with_hash: dict[object, int] = {}
    for i, content_hash in enumerate(list(hashes or ())):
        union(first_with_hash.setdefault(content_hash, i), i)
    for start in range(0, n if threshold <= 1.0 else 0, BLOCK_ROWS):
        block = np.asarray(vectors[start : start + BLOCK_ROWS], np.float32)
        for other in range(start, n, BLOCK_ROWS):
            right = block if other == start else np.asarray(vectors[other : other + BLOCK_ROWS], np.float32)
            cosines = block @ right.T
            rows, cols = np.nonzero(cosines >= threshold)
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
                a, b = start + r, other + c
                if a < b:
                    union(a, b)
        if progress is not None:
            progress(min(start + BLOCK_ROWS, n))
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(find(i), []).append(i)
    return [group for group in members.values() if len(group) > 1]


def catalog_duplicates(
    db: CatalogDB,
    model: str,
    roots: Sequence[str] | None = None,
    threshold: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[list[ImageRecord]]:
    """The duplicate groups among the catalog's images of `model` (below `roots`, if given).

    threshold None: the model's measured one (threshold_for), else identical vectors only (the
    catalog keys vectors by content, so identical files have identical vectors).
    Each group: oldest modification time first (then path); groups in path order of their first.
    """
    if threshold is None:
        threshold = threshold_for(model)
    from pixgrep.search.matrix import load_matrix

    matrix = load_matrix(db, model)
    ranges = [(0, matrix.rows)] if roots is None else matrix.rows_under(roots)
    rows = np.concatenate([np.arange(lo, hi) for lo, hi in ranges]) if ranges else np.zeros(0, int)
    if len(rows) < 2:
        return []
    contiguous = len(ranges) == 1
    vectors = matrix.vectors[ranges[0][0] : ranges[0][1]] if contiguous else matrix.vectors[rows]
    # Identical files share one stored vector, so equal rows stand in for equal content hashes.
    same = None if threshold is not None else [bytes(row.tobytes()) for row in np.asarray(vectors)]
    groups = duplicate_groups(vectors, same, NEVER if threshold is None else threshold, progress)
    ids = [int(matrix.ids[rows[i]]) for group in groups for i in group]
    records = db.images_by_id(ids)
    out = []
    for group in groups:
        members = [records[k] for k in (int(matrix.ids[rows[i]]) for i in group) if k in records]
        if len(members) > 1:
            out.append(sorted(members, key=lambda r: (r.mtime_ns, r.path)))
    return sorted(out, key=lambda g: min(r.path for r in g))
