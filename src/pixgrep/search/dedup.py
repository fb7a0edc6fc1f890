"""Near-duplicate images: collapsed in search results, listed by `pixgrep duplicates`.

Two images are duplicates when their files have the same content hash, or when the model and the
eye agree: the cosine of their image vectors is at least the model's threshold, and their
perceptual fingerprints look alike (images/fingerprint.py, stored per content hash; a picture
without one, such as an imported row, folds only with identical copies). Cosines mean different
things in different models (a random-weight test model puts distinct pictures at 0.9 and above),
so a threshold is used only where it was measured (`duplicate_threshold` in models/registry.json,
looked up by the model name before "@"): for pixgrep-mini 0.65, below every re-encoded, resized
and thumbnail copy of the calibration set (docs/quality.md, "Duplicates"), the fingerprint then
telling copies from other shots of a scene. Other models collapse only identical files unless a
threshold is given.

In search results groups are formed in score order: each candidate joins the most similar group
leader that it duplicates, else leads a group of its own. Comparing with the leader only (not with
every member) keeps a chain of look-alikes from merging distinct photos. A group is ranked by its
best score and shows its best copy (`best_copy`: largest, then newest).
The catalog-wide listing (`pixgrep duplicates`) joins every duplicate pair into connected groups:
with exact blockwise matrix products (`duplicate_groups`, quadratic in the rows), or, when the
catalog's matrix has an ANN index (search/ann.py, from ANN_MIN_ROWS rows), from the links of the
index's graph, every candidate pair confirmed by its exact cosine (`ann_duplicate_groups`: linear;
docs/benchmarks.md has its time and recall on 1M rows); each pair then by the fingerprints.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from pixgrep.catalog.db import CatalogDB
from pixgrep.images.fingerprint import FINGERPRINT_BYTES, look_alike
from pixgrep.models.registry import MODELS
from pixgrep.records import ImageRecord
from pixgrep.search.ann import AnnIndex

__all__ = [
    "Candidate",
    "ann_duplicate_groups",
    "best_copy",
    "catalog_duplicates",
    "duplicate_groups",
    "group_candidates",
    "threshold_for",
]

NEVER = 2.0  # a cosine no pair reaches: only identical files (same content hash) are duplicates


def threshold_for(model_id: str) -> float | None:
    """The measured duplicate threshold of a model (registry.json), or None (only identical
    files count)."""
    spec = MODELS.get(model_id.split("@", 1)[0])
    return spec.duplicate_threshold if spec else None


FOLD_BLOCK = 256  # search candidates compared with the leaders per matrix product
BLOCK_ROWS = 4096  # rows per block of the all-pairs product: a 4096 x 4096 float32 block is 64 MB
# The ANN path (catalogs with an index). Links of the graph: pairs sampled to calibrate the
# index's int8 distance, the least margin kept below the threshold, and pairs scored at a time
# (2 x 65,536 x 2 KB = 256 MB of float32). Searching instead (rows added since the build, or links
# unreadable): neighbours asked per row, the walk's expansion, rows per batch (4096 x 9 x 2 KB).
CALIBRATION_PAIRS = 20_000
MIN_MARGIN = 0.05
FEW_LINKS = 4  # rows with fewer links (of up to 2 x 16) also search the index: ~3 per 1,000 at 1M
PAIR_BLOCK = 65_536
NEIGHBOURS = 8
ANN_EXPANSION = 16
ANN_BLOCK = 4096


# Asked about pairs that reach the threshold: (rows a, rows b, their cosines) -> which are duplicates.
Confirm = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _by_position(confirm: Confirm, rows: np.ndarray) -> Confirm:
    """`confirm` for callers that number the rows 0.. in `rows` order."""
    return lambda a, b, cosines: confirm(rows[a], rows[b], cosines)


@dataclass(frozen=True)
class Candidate:
    key: int  # caller's handle (an image id or a row)
    score: float
    content_hash: str
    mtime_ns: int
    path: str
    vector: np.ndarray  # unit image vector
    fingerprint: bytes | None = None  # images/fingerprint.py; None: folds only with its own content
    pixels: int = 0  # width x height and
    size: int = 0  # file bytes: to show the best copy of a group


def _order(candidate: Candidate) -> tuple:
    return (-candidate.score, candidate.mtime_ns, candidate.path)


def group_candidates(
    candidates: Sequence[Candidate], threshold: float | None
) -> list[tuple[Candidate, list[Candidate]]]:
    """(leader, its duplicates) in leader order, best first (module docstring for the rules).

    threshold None: only the same content hash makes a duplicate. The leaders' vectors are kept
    in one array, added to as leaders appear, and each block of FOLD_BLOCK candidates is compared
    with all leaders so far in one matrix product (and with the leaders it makes itself in a
    second one): no leader is stacked twice, and a candidate costs one row of a product."""
    threshold = NEVER if threshold is None else threshold
    ordered = sorted(candidates, key=_order)
    if not ordered:
        return []
    with _one_blas_thread():
        return _fold(ordered, threshold)


def _fold(ordered: list[Candidate], threshold: float) -> list[tuple[Candidate, list[Candidate]]]:
    groups: list[tuple[Candidate, list[Candidate]]] = []
    by_hash: dict[str, int] = {}
    dim = len(ordered[0].vector)
    leaders = np.empty((len(ordered), dim), np.float32)  # rows [0, len(groups)) are in use
    prints = np.zeros((len(ordered), FINGERPRINT_BYTES), np.uint8)  # the leaders' fingerprints
    printed = np.zeros(len(ordered), bool)  # ... where they have one
    for start in range(0, len(ordered), FOLD_BLOCK):
        block = ordered[start : start + FOLD_BLOCK]
        vectors = np.asarray([c.vector for c in block], np.float32).reshape(len(block), dim)
        known = len(groups)  # leaders from earlier blocks
        to_known = vectors @ leaders[:known].T if threshold <= 1.0 else None
        within = vectors @ vectors.T if threshold <= 1.0 else None
        made: list[int] = []  # positions in this block that became leaders (groups known, known+1, ...)
        for position, candidate in enumerate(block):
            index = by_hash.get(candidate.content_hash)
            if index is None and to_known is not None and within is not None and candidate.fingerprint:
                cosines = np.concatenate([to_known[position], within[position, made]])
                index = _look_alike_leader(candidate.fingerprint, cosines, threshold, prints, printed)
            if index is None:
                by_hash.setdefault(candidate.content_hash, len(groups))
                leaders[len(groups)] = vectors[position]
                if candidate.fingerprint:
                    prints[len(groups)] = np.frombuffer(candidate.fingerprint, np.uint8)
                    printed[len(groups)] = True
                groups.append((candidate, []))
                made.append(position)
            else:
                groups[index][1].append(candidate)
    return groups


def _look_alike_leader(
    fingerprint: bytes, cosines: np.ndarray, threshold: float, prints: np.ndarray, printed: np.ndarray
) -> int | None:
    """The group to fold into: of the leaders at or above the threshold, the most similar by the
    model whose fingerprint looks alike (a tie goes to the older, better leader); None if none."""
    near = np.flatnonzero(cosines >= threshold)
    near = near[printed[near]]
    if not len(near):
        return None
    near = near[np.argsort(-cosines[near], kind="stable")]
    alike = look_alike(np.frombuffer(fingerprint, np.uint8), prints[near])
    return int(near[np.argmax(alike)]) if alike.any() else None


def best_copy(members: Sequence[Candidate]) -> Candidate:
    """The copy a group shows: the largest picture (in pixels, then in bytes: less compressed),
    then the newest file, then the best scored."""
    return max(members, key=lambda c: (c.pixels, c.size, c.mtime_ns, c.score))


_BLAS_LOCK = threading.Lock()
_BLAS: Any = None  # threadpoolctl's controller, made at the first fold


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """BLAS on one thread while candidates are folded: the products are small (256 rows by the
    leaders), and waking BLAS threads on a busy machine cost 6x the time of one thread (1.7 s
    against 0.14 s for 3,000 candidates on a loaded 2-core machine). The lock keeps the save and
    restore of the thread count consistent when several threads (a server) fold at once."""
    global _BLAS
    with _BLAS_LOCK:
        if _BLAS is None:
            from threadpoolctl import ThreadpoolController

            _BLAS = ThreadpoolController()
        with _BLAS.limit(limits=1, user_api="blas"):
            yield


class _Components:
    """Union-find over the rows that take part in a pair (a dict: most rows of a catalog are in none)."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, i: int) -> int:
        parent = self.parent
        root = i
        while parent.get(root, root) != root:
            root = parent[root]
        while i != root:  # path compression
            parent[i], i = root, parent[i]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)
            self.parent.setdefault(min(ra, rb), min(ra, rb))

    def groups(self) -> list[list[int]]:
        members: dict[int, list[int]] = {}
        for i in self.parent:
            members.setdefault(self.find(i), []).append(i)
        return [sorted(group) for group in members.values() if len(group) > 1]


def duplicate_groups(
    vectors: np.ndarray,
    hashes: Sequence[str] | Sequence[bytes] | None,
    threshold: float,
    progress: Callable[[int], None] | None = None,
    confirm: Confirm | None = None,
) -> list[list[int]]:
    """Groups (of 2 or more row indices, each sorted) of duplicate rows: same hash, or cosine >=
    threshold (and `confirm`ed, when given).

    Exact: every pair is compared, BLOCK_ROWS x BLOCK_ROWS at a time (upper triangle only).
    hashes may be None when equal contents have equal vectors (the catalog: vectors are keyed by
    content hash). progress(rows_done) is called after each block row.
    """
    n = len(vectors)
    components = _Components()
    first_with_hash: dict[object, int] = {}
    for i, content_hash in enumerate(list(hashes or ())):
        first = first_with_hash.setdefault(content_hash, i)
        if first != i:
            components.union(first, i)
    for start in range(0, n if threshold <= 1.0 else 0, BLOCK_ROWS):
        block = np.asarray(vectors[start : start + BLOCK_ROWS], np.float32)
        for other in range(start, n, BLOCK_ROWS):
            right = block if other == start else np.asarray(vectors[other : other + BLOCK_ROWS], np.float32)
            cosines = block @ right.T
            rows, cols = np.nonzero(cosines >= threshold)
            a, b = start + rows, other + cols
            keep = a < b
            if confirm is not None:
                keep &= confirm(a, b, cosines[rows, cols])
            for i, j in zip(a[keep].tolist(), b[keep].tolist(), strict=True):
                components.union(i, j)
        if progress is not None:
            progress(min(start + BLOCK_ROWS, n))
    return components.groups()


def ann_duplicate_groups(
    index: AnnIndex,
    base_vectors: np.ndarray,
    rows: np.ndarray,
    threshold: float,
    tail: tuple[np.ndarray, np.ndarray] | None = None,
    progress: Callable[[int], None] | None = None,
    confirm: Confirm | None = None,
) -> list[list[int]]:
    """duplicate_groups for a catalog with an ANN index over `base_vectors` (keys are their rows);
    `confirm` is asked about pairs of rows (tail rows by their row numbers).

    rows: the sorted base rows in scope; tail: (row numbers, vectors) of rows outside the index
    (appended since it was built), or None. The candidate pairs are the links of the index's
    base layer (`AnnIndex.links`: the graph already joins every row to its nearest rows); their
    distances in the index (int8, calibrated against exact cosines on a sample) drop the pairs
    that are clearly apart, and every remaining pair is confirmed with its exact cosine from the
    stored vectors, so a pair is reported only if it is one; the same connected-groups rule as the
    exact search. The rows found in a group and the rows with fewer than FEW_LINKS links then
    search for their NEIGHBOURS nearest rows too (a member whose link was pruned). Where the links
    cannot be read, every row searches that way (a graph walk per row: about 7x slower). Tail rows
    search the index and are compared with each other exactly. Time and recall at 1M rows:
    docs/benchmarks.md.
    """
    rows = np.asarray(rows, np.int64)
    tail_rows, tail_vectors = tail if tail is not None else (np.zeros(0, np.int64), np.zeros((0, 0)))
    in_scope = np.zeros(len(base_vectors), bool)
    in_scope[rows] = True
    components = _Components()
    links = index.links()
    if links is None:
        _join_nearest(index, base_vectors, rows, base_vectors, rows, in_scope, threshold, components, confirm)
    else:
        low, high = links
        degree = np.bincount(np.concatenate([low, high]), minlength=len(base_vectors))
        both = in_scope[low] & in_scope[high]
        low, high = _likely_pairs(index, base_vectors, low[both], high[both], threshold)
        cosines = _cosines(base_vectors, low, high)
        hit = cosines >= threshold
        if confirm is not None:
            hit &= confirm(low, high, cosines)
        for a, b in zip(low[hit].tolist(), high[hit].tolist(), strict=True):
            components.union(a, b)
        # A link the graph pruned (another member was closer) or never made (a row the build left
        # with almost no links, as happens to one of two identical vectors) can leave a copy out:
        # the few rows already in a group, and the rows with few links, search the index as well.
        grouped = np.fromiter(components.parent, np.int64)
        sparse = rows[degree[rows] < FEW_LINKS]
        again = np.union1d(grouped, sparse)
        _join_nearest(
            index, base_vectors, again, base_vectors, again, in_scope, threshold, components, confirm
        )
    if progress is not None:
        progress(len(rows))
    if len(tail_rows):
        tail_rows = np.asarray(tail_rows, np.int64)
        at = np.arange(len(tail_rows))
        _join_nearest(
            index, base_vectors, tail_rows, tail_vectors, at, in_scope, threshold, components, confirm
        )
    if len(tail_rows) > 1:
        among_tail = None if confirm is None else _by_position(confirm, tail_rows)
        for group in duplicate_groups(tail_vectors, None, threshold, confirm=among_tail):
            for position in group[1:]:
                components.union(int(tail_rows[group[0]]), int(tail_rows[position]))
    if progress is not None:
        progress(len(rows) + len(tail_rows))
    return components.groups()


def _join_nearest(
    index: AnnIndex,
    base_vectors: np.ndarray,
    query_rows: np.ndarray,
    vectors: np.ndarray,
    positions: np.ndarray,
    in_scope: np.ndarray,
    threshold: float,
    components: _Components,
    confirm: Confirm | None = None,
) -> None:
    """Union each query row with those of its NEIGHBOURS nearest in-scope base rows (searched in
    the index) whose exact cosine reaches the threshold; vectors[positions[i]] is query_rows[i]'s."""
    for start in range(0, len(query_rows), ANN_BLOCK):
        block = query_rows[start : start + ANN_BLOCK]
        queries = np.asarray(vectors[positions[start : start + ANN_BLOCK]], np.float32)
        keys = index.neighbours(queries, NEIGHBOURS + 1, ANN_EXPANSION)
        usable = (keys >= 0) & (keys != block[:, None])
        usable &= in_scope[np.where(keys >= 0, keys, 0)]
        q, j = np.nonzero(usable)
        others = keys[q, j]
        unique, inverse = np.unique(others, return_inverse=True)
        cosines = np.einsum(
            "ij,ij->i", queries[q], np.asarray(base_vectors[unique], np.float32)[inverse.reshape(-1)]
        )
        hit = cosines >= threshold
        if confirm is not None:
            hit &= confirm(block[q], others, cosines)
        for a, b in zip(block[q[hit]].tolist(), others[hit].tolist(), strict=True):
            components.union(a, b)


def _likely_pairs(
    index: AnnIndex, base_vectors: np.ndarray, low: np.ndarray, high: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """The pairs whose int8 distance in the index puts them near or above the threshold.

    The distance is mapped to a cosine by a straight line fitted on CALIBRATION_PAIRS sampled
    pairs (exact cosines), and pairs within a margin below the threshold are kept: 3 times the
    worst error of the fit on the sample, at least MIN_MARGIN. A poor fit only widens the margin
    (more exact cosines), never drops a pair that the fit places above it."""
    if len(low) <= CALIBRATION_PAIRS:
        return low, high
    distances = index.int8_distances(low, high)
    sample = np.random.default_rng(0).choice(len(low), CALIBRATION_PAIRS, replace=False)
    exact = _cosines(base_vectors, low[sample], high[sample])
    slope, intercept = np.polyfit(distances[sample].astype(np.float64), exact, 1)
    error = float(np.abs(slope * distances[sample] + intercept - exact).max())
    keep = slope * distances + intercept >= threshold - max(MIN_MARGIN, 3 * error)
    return low[keep], high[keep]


def _cosines(vectors: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Exact cosine of each (left[i], right[i]) pair of unit rows, PAIR_BLOCK pairs at a time."""
    out = np.empty(len(left), np.float32)
    for start in range(0, len(left), PAIR_BLOCK):
        end = start + PAIR_BLOCK
        a = np.asarray(vectors[left[start:end]], np.float32)
        out[start:end] = np.einsum("ij,ij->i", a, np.asarray(vectors[right[start:end]], np.float32))
    return out


def catalog_duplicates(
    db: CatalogDB,
    model: str,
    roots: Sequence[str] | None = None,
    threshold: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[list[ImageRecord]]:
    """The duplicate groups among the catalog's images of `model` (below `roots`, if given).

    threshold None: the model's measured one (threshold_for), else identical vectors only (the
    catalog keys vectors by content, so identical files have identical vectors). Every pair at or
    above the threshold is confirmed by the pictures' fingerprints (`_fingerprint_check`), as in
    search folding. The ANN path (ann_duplicate_groups) is taken when the matrix has an index
    and the scope has at least ANN_MIN_ROWS live rows; otherwise every pair is compared exactly.
    Each group: its best copy first (as best_copy: largest, then newest); groups in path order.
    """
    if threshold is None:
        threshold = threshold_for(model)
    from pixgrep.search.ann import ANN_MIN_ROWS
    from pixgrep.search.matrix_store import load_matrix

    matrix = load_matrix(db, model)
    base = matrix.base
    ranges = [(0, base.rows)] if roots is None else matrix.rows_under(roots)
    rows = np.concatenate([np.arange(lo, hi) for lo, hi in ranges]) if ranges else np.zeros(0, np.int64)
    rows = rows[~matrix.base_dead[rows]]
    tail_rows = matrix.tail_in_scope(roots, None, None) + base.rows
    ids = matrix.ids
    confirm = None if threshold is None else _fingerprint_check(db, ids, np.concatenate([rows, tail_rows]))
    index = base.ann_index() if threshold is not None and len(rows) >= ANN_MIN_ROWS else None
    if index is not None and threshold is not None and index.graph_ready():
        tail = (tail_rows, matrix.tail_vectors[tail_rows - base.rows])
        groups = ann_duplicate_groups(index, base.vectors, rows, threshold, tail, progress, confirm)
    else:
        rows = np.concatenate([rows, tail_rows])
        if len(rows) < 2:
            return []
        contiguous = len(rows) == rows[-1] - rows[0] + 1 and not len(tail_rows)
        vectors = base.vectors[rows[0] : rows[-1] + 1] if contiguous else matrix.vectors[rows]
        # Identical files share one stored vector, so equal rows stand in for equal content hashes.
        same = None if threshold is not None else [bytes(row.tobytes()) for row in np.asarray(vectors)]
        limit = NEVER if threshold is None else threshold
        by_position = None if confirm is None else _by_position(confirm, rows)
        positions = duplicate_groups(vectors, same, limit, progress, by_position)
        groups = [[int(rows[i]) for i in group] for group in positions]
    records = db.images_by_id([int(ids[row]) for group in groups for row in group])
    out = []
    for group in groups:
        members = [records[k] for k in dict.fromkeys(int(ids[row]) for row in group) if k in records]
        if len(members) > 1:
            out.append(sorted(members, key=_best_first))
    return sorted(out, key=lambda g: min(r.path for r in g))


def _best_first(record: ImageRecord) -> tuple:
    return (-(record.width or 0) * (record.height or 0), -record.size, -record.mtime_ns, record.path)


IDENTICAL = 1.0 - 1e-3  # a cosine only one stored vector has with itself (float16 rounding aside)


def _fingerprint_check(db: CatalogDB, ids: np.ndarray, rows: np.ndarray) -> Confirm:
    """Confirm pairs of matrix rows by their pictures' fingerprints; a pair without both (imported
    rows, pictures stored before the catalog kept them) is a duplicate only with an identical vector."""
    from pixgrep.catalog.fingerprints import fingerprints_of

    records = db.images_by_id([int(i) for i in ids[rows]])
    found = fingerprints_of(db, [r.content_hash for r in records.values()])
    size = int(rows.max()) + 1 if len(rows) else 0
    prints = np.zeros((size, FINGERPRINT_BYTES), np.uint8)
    printed = np.zeros(size, bool)
    for row in rows.tolist():
        record = records.get(int(ids[row]))
        bits = found.get(record.content_hash) if record is not None else None
        if bits is not None:
            prints[row] = np.frombuffer(bits, np.uint8)
            printed[row] = True

    def confirm(a: np.ndarray, b: np.ndarray, cosines: np.ndarray) -> np.ndarray:
        both = printed[a] & printed[b]
        return (cosines >= IDENTICAL) | (both & look_alike(prints[a], prints[b]))

    return confirm
