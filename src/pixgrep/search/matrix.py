"""The search matrix as one read-only view: the base file's rows plus the journal's appended rows
and tombstones (search/matrix_file.py), with the arithmetic every ranking needs: the rows in a
folder scope, a row's id, path and vector, and cosine scores of rows against a query.

Ranking (top-k, the ANN fallback) is search/topk.py; keeping the view up to date with the
catalog, and the process-wide cache, is search/matrix_store.py.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixgrep.search import ann as ann_module
from pixgrep.search.filters import root_prefixes
from pixgrep.search.matrix_file import Base, Batch, delta_path, open_base, read_journal

__all__ = ["Hit", "VectorMatrix", "open_matrix"]

CHUNK_ROWS = 1024  # rows converted per step: a 2 MB float32 scratch at 512-d stays in cache
MAX_F32_BYTES = 1 << 30  # a long-lived process keeps a float32 copy up to this size


@dataclass(frozen=True)
class Hit:
    row: int
    image_id: int
    path: str
    score: float


class VectorMatrix:
    """A read-only view: the base plus the journal's appended rows and tombstones.

    Rows 0..base.rows-1 are the base (sorted by path); rows after them are appended rows in journal
    order. A dead row (tombstoned: removed or changed) is never returned.
    """

    def __init__(self, base: Base):
        self.base = base
        self.generation = base.generation
        self.mark = base.mark
        self.model = base.model
        self.dim = base.dim
        self.source = base.source
        self.base_dead = np.zeros(base.rows, bool)
        self.tail_ids = np.zeros(0, "<i8")
        self.tail_taken = np.zeros(0, "<f8")
        self.tail_stamps = np.zeros(0, "<f8")
        self.tail_vectors = np.zeros((0, base.dim), "<f2")
        self.tail_paths: list[bytes] = []
        self.tail_dead = np.zeros(0, bool)
        self.tail_row_of: dict[int, int] = {}  # image id -> its live tail index
        self.absent: set[int] = set(base.absent.tolist())
        self.journal_end = 0  # byte offset after the last valid journal batch (0: none read)
        self.last_method = "exact"
        self._queries = 0
        self._tail_scopes: dict[tuple[bytes, ...], np.ndarray] = {}
        self._tail_vectors_f32: np.ndarray | None = None
        self._ids: np.ndarray | None = None  # base + tail ids, built once per view (see `ids`)
        self._id_range = (0, -1)  # their smallest and largest, set with _ids

    # -- state ------------------------------------------------------------------------------

    @property
    def rows(self) -> int:
        """All rows, dead ones included (row numbers run up to this)."""
        return self.base.rows + len(self.tail_ids)

    @property
    def live(self) -> int:
        return self.rows - int(self.base_dead.sum()) - int(self.tail_dead.sum())

    @property
    def dead(self) -> int:
        return self.rows - self.live

    @property
    def vectors(self) -> np.ndarray:
        if not len(self.tail_ids):
            return self.base.vectors
        return np.concatenate([self.base.vectors, self.tail_vectors])

    @property
    def ids(self) -> np.ndarray:
        """The image id of every row. A view never changes (journal batches apply to a copy), so
        the concatenation is made once per view, not once per call (dedup reads it per hit)."""
        if self._ids is None:
            tail = self.tail_ids
            self._ids = np.concatenate([self.base.ids, tail]) if len(tail) else self.base.ids
            self._id_range = (int(self._ids.min()), int(self._ids.max())) if len(self._ids) else (0, -1)
        return self._ids

    def mask_of_ids(self, allowed: set[int] | None) -> np.ndarray | None:
        """A boolean mask over all rows, True where the row's image id is in `allowed` (None: no
        mask). Catalog ids are SQLite row ids, nearly dense, so membership is a lookup table over
        the id range, gathered by row: no copy or sort of every id per query (np.isin sorts them).
        Sparse ids (a range far beyond the row count) fall back to np.isin."""
        if allowed is None:
            return None
        ids = self.ids
        if not allowed or not len(ids):
            return np.zeros(len(ids), bool)
        wanted = np.fromiter(allowed, np.int64, len(allowed))
        smallest, largest = self._id_range
        if smallest >= 0 and largest < 4 * len(ids) + 1024:
            member = np.zeros(largest + 1, bool)
            member[wanted[(wanted >= 0) & (wanted <= largest)]] = True
            return member[ids]
        return np.isin(ids, wanted)

    @property
    def _f32(self) -> np.ndarray | None:
        return self.base.f32

    def live_rows(self) -> list[int]:
        dead = np.concatenate([self.base_dead, self.tail_dead])
        return [int(r) for r in np.flatnonzero(~dead)]

    def _copy(self) -> VectorMatrix:
        other = VectorMatrix.__new__(VectorMatrix)
        other.__dict__.update(self.__dict__)
        other.base_dead = self.base_dead.copy()
        other.tail_dead = self.tail_dead.copy()
        other.tail_paths = list(self.tail_paths)
        other.tail_row_of = dict(self.tail_row_of)
        other.absent = set(self.absent)
        other._queries = 0
        other._tail_scopes = {}  # the copy is about to get new rows
        other._tail_vectors_f32 = None
        other._ids = None  # the copy is about to grow: its ids are derived afresh
        return other

    def _apply(self, batch: Batch) -> None:
        """Apply one journal batch in place (only on a fresh copy: views handed out stay unchanged)."""
        self._ids = None
        for image_id in batch.kills.tolist():
            tail = self.tail_row_of.pop(image_id, None)
            if tail is not None:
                self.tail_dead[tail] = True
                continue
            row = self.base.row_of_id(image_id)
            if row is not None:
                self.base_dead[row] = True
        if len(batch.add_ids):
            first = len(self.tail_ids)
            self.tail_ids = np.concatenate([self.tail_ids, batch.add_ids])
            self.tail_taken = np.concatenate([self.tail_taken, batch.add_taken])
            self.tail_stamps = np.concatenate([self.tail_stamps, batch.add_stamps])
            self.tail_vectors = np.concatenate([self.tail_vectors, batch.add_vectors])
            self.tail_paths.extend(batch.add_paths)
            self.tail_dead = np.concatenate([self.tail_dead, np.zeros(len(batch.add_ids), bool)])
            for offset, image_id in enumerate(batch.add_ids.tolist()):
                self.tail_row_of[image_id] = first + offset
        self.absent.update(batch.absent_add.tolist())
        self.absent.difference_update(batch.absent_del.tolist())
        self.generation = batch.generation
        self.mark = batch.mark

    def live_row_of_id(self, image_id: int) -> int | None:
        tail = self.tail_row_of.get(image_id)
        if tail is not None:
            return self.base.rows + tail
        row = self.base.row_of_id(image_id)
        if row is not None and not self.base_dead[row]:
            return row
        return None

    def stamp_of_row(self, row: int) -> float:
        if row < self.base.rows:
            return float(self.base.stamps[row])
        return float(self.tail_stamps[row - self.base.rows])

    def describe(self) -> dict:
        """What `stats` and `--verbose` show about the index."""
        index = self.base.ann_index()
        return {
            "rows": self.live,
            "appended": int(len(self.tail_ids) - self.tail_dead.sum()),
            "dead": self.dead,
            "ann": index.describe() if index else None,
            "ann_min_rows": ann_module.ANN_MIN_ROWS,
            "last_method": self.last_method,
        }

    # -- paths ------------------------------------------------------------------------------

    def path_bytes_at(self, row: int) -> bytes:
        if row < self.base.rows:
            return self.base.path_bytes_at(row)
        return self.tail_paths[row - self.base.rows]

    def path_at(self, row: int) -> str:
        return self.path_bytes_at(row).decode("utf-8", "surrogateescape")

    def id_at(self, row: int) -> int:
        if row < self.base.rows:
            return int(self.base.ids[row])
        return int(self.tail_ids[row - self.base.rows])

    def _lower_bound(self, key: bytes) -> int:
        lo, hi = 0, self.base.rows
        while lo < hi:
            mid = (lo + hi) // 2
            if self.base.path_bytes_at(mid) < key:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def rows_under(self, roots: Sequence[str | os.PathLike]) -> list[tuple[int, int]]:
        """Base row ranges [lo, hi) of the images below any of `roots` (merged, sorted)."""
        ranges = []
        for key in _root_keys(roots):
            # Every path starting with `key` sorts between key and key with its last byte + 1.
            upper = key[:-1] + bytes([key[-1] + 1])
            lo, hi = self._lower_bound(key), self._lower_bound(upper)
            if lo < hi:
                ranges.append((lo, hi))
        ranges.sort()
        merged: list[tuple[int, int]] = []
        for lo, hi in ranges:
            if merged and lo <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
            else:
                merged.append((lo, hi))
        return merged

    def tail_in_scope(self, roots, after, before) -> np.ndarray:
        """Tail indexes (not rows) that are live and pass the folder and date filters."""
        keep = ~self.tail_dead
        if roots is not None:
            keep &= self._tail_under(tuple(_root_keys(roots)))
        if after is not None:
            keep &= self.tail_taken >= after
        if before is not None:
            keep &= self.tail_taken < before
        return np.flatnonzero(keep)

    def _tail_under(self, keys: tuple[bytes, ...]) -> np.ndarray:
        """Which appended rows lie below these folders; remembered per matrix (its tail never
        changes: a catch-up makes a new matrix), so a server's repeated scopes cost nothing."""
        found = self._tail_scopes.get(keys)
        if found is None or len(found) != len(self.tail_paths):
            found = np.fromiter((p.startswith(keys) for p in self.tail_paths), bool, len(self.tail_paths))
            if len(self._tail_scopes) >= 64:
                self._tail_scopes.clear()
            self._tail_scopes[keys] = found
        return found

    def _tail_f32(self) -> np.ndarray:
        """The appended rows' vectors as float32, converted once per matrix, not per query."""
        if self._tail_vectors_f32 is None or len(self._tail_vectors_f32) != len(self.tail_vectors):
            self._tail_vectors_f32 = self.tail_vectors.astype(np.float32)
        return self._tail_vectors_f32

    # -- scoring ----------------------------------------------------------------------------

    def scores(self, query: np.ndarray, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """Cosine scores of base rows [lo, hi) against a unit query, float32, chunk by chunk."""
        hi = self.base.rows if hi is None else hi
        if self.base.f32 is not None:
            return np.einsum("ij,j->i", self.base.f32[lo:hi], query)
        out = np.empty(hi - lo, np.float32)
        scratch = np.empty((min(CHUNK_ROWS, hi - lo), self.dim), np.float32)
        for start in range(lo, hi, CHUNK_ROWS):
            end = min(start + CHUNK_ROWS, hi)
            # float16 -> float32 into a cache-sized scratch, then a float32 dot product per row.
            # einsum, not matmul: OpenBLAS threads on many small products spin-wait, which cost
            # 9x the CPU time on a busy 2-core machine (benchmarks/bench_search.py, docs/search.md).
            block = scratch[: end - start]
            np.copyto(block, self.base.vectors[start:end])
            np.einsum("ij,j->i", block, query, out=out[start - lo : end - lo])
        return out

    def all_scores(self, query: np.ndarray) -> np.ndarray:
        """Cosine scores of every row, base then appended (dead rows too: callers filter them)."""
        tail = np.arange(len(self.tail_ids)) + self.base.rows
        return np.concatenate([self.scores(query), self.scores_of_rows(query, tail)])

    def vector_at(self, row: int) -> np.ndarray:
        """The stored (float16) vector of one row, base or appended."""
        if row < self.base.rows:
            return np.asarray(self.base.vectors[row])
        return np.asarray(self.tail_vectors[row - self.base.rows])

    def scores_of_rows(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Exact scores of scattered rows (base or tail), gathered in sorted order for the mmap."""
        out = np.empty(len(rows), np.float32)
        base = rows < self.base.rows
        if base.any():
            picked = rows[base]
            source = self.base.f32 if self.base.f32 is not None else self.base.vectors
            out[base] = np.einsum("ij,j->i", np.asarray(source[picked], np.float32), query)
        if (~base).any():
            tail = rows[~base] - self.base.rows
            vectors = self._tail_f32()
            if 4 * len(tail) >= len(vectors):  # most of the journal: one product beats a gather copy
                out[~base] = np.einsum("ij,j->i", vectors, query)[tail]
            else:
                out[~base] = np.einsum("ij,j->i", vectors[tail], query)
        return out

    def warm_up(self) -> None:
        """From the second query in one process (a server), keep a float32 copy: about 4x faster
        scoring than converting float16 each time, for twice the memory of the mapped file."""
        self._queries += 1
        base = self.base
        if self._queries == 2 and base.f32 is None and base.rows * base.dim * 4 <= MAX_F32_BYTES:
            base.f32 = np.asarray(base.vectors, np.float32)


def _root_keys(roots: Sequence[str | os.PathLike]) -> list[bytes]:
    return [prefix.encode("utf-8", "surrogateescape") for prefix in root_prefixes(roots)]


def open_matrix(path: Path, reuse: Base | None = None) -> VectorMatrix | None:
    """Map a matrix file and replay its journal; None when it is missing, truncated or not ours.

    reuse: a base this process already holds; kept (with its float32 copy and ANN handle) when
    the file on disk is still that base.
    """
    base = open_base(path)
    if base is None:
        return None
    if reuse is not None and reuse.base_id == base.base_id and reuse.source == base.source:
        base = reuse
    matrix = VectorMatrix(base)
    batches, end = read_journal(delta_path(path), base.base_id, base.dim)
    if not end:
        return matrix  # missing, torn header or left from an older base: ignored
    result = matrix._copy()
    for batch in batches:
        result._apply(batch)
    result.journal_end = end
    return result
