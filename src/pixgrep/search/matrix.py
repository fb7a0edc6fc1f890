"""Vector search over a memory-mapped float16 matrix kept beside the catalog, updated incrementally.

Per (catalog, model), in `<catalog>.vectors/`:

    <slug>.matrix           the base: immutable once written, rows sorted by path
      magic (16 bytes) | header length (uint32 LE) | header (JSON) | sections, each 64-byte aligned:
        vectors       float16 (rows, dim)   one unit vector per image
        ids           int64 (rows,)         images.id
        taken         float64 (rows,)       capture time as wall-clock seconds, NaN when unknown
        stamps        float64 (rows,)       images.indexed_at of the row the vector was read from
        path_offsets  int64 (rows + 1,)     where each path starts in path_bytes
        path_bytes    uint8                 UTF-8 paths (surrogateescape), concatenated
        id_order      int64 (rows,)         base rows in id order (id -> row by binary search)
        absent        int64                 catalog ids that are not searchable (errors, other models)
    <slug>.matrix.delta     an append-only journal of changes since the base (search/delta format
                            below): appended rows and tombstoned ids, in checksummed batches
    <slug>.matrix.usearch   the ANN index over the base rows (search/ann.py), when it pays

A change costs what changed: the next query whose generation check (one tiny SQLite read) sees the
catalog moved on reads the rows written since (`images.indexed_at`, which every write sets),
tombstones their old rows and appends the new ones to the journal. Removed images are found by
count (live + absent rows vs the catalog's rows) and, only when the count says so, by an id scan.
When appended plus dead rows pass COMPACT_SHARE of the base, the base is rebuilt from the catalog
(the source of truth) and the journal starts again.

Crash safety: the base is written to a temporary name and renamed (a reader sees the old file or
the new one); journal batches carry their length and a CRC, and a reader stops at the first torn
or foreign batch (the next writer truncates it away); the journal names its base, so a journal
left from an older base is ignored; whatever is lost this way is still in the catalog, and the
generation check finds it again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixgrep.catalog.db import CatalogDB
from pixgrep.search import ann as ann_module
from pixgrep.search.filters import root_prefixes, wallclock_seconds

MAGIC = b"PIXGREP-MATRIX\x00\x02"
FORMAT_VERSION = 2
DELTA_MAGIC = b"PIXGREP-DELTA\x00\x01"
BATCH_TAG = b"BAT1"
BATCH_HEAD = struct.Struct("<4sqdIIIIQI")  # tag, generation, mark, kills, adds, absent +/-, bytes, crc
ALIGN = 64
CHUNK_ROWS = 1024  # rows converted per step: a 2 MB float32 scratch at 512-d stays in cache
MAX_F32_BYTES = 1 << 30  # a long-lived process keeps a float32 copy up to this size
COMPACT_SHARE = 0.10  # rebuild the base when appended + dead rows pass this share of it ...
COMPACT_MIN_ROWS = 1000  # ... and this many rows
CLOCK_SLACK_S = 120.0  # a write may commit this long after it stamped indexed_at (busy wait)
ANN_MIN_SCOPE = 20_000  # scoped/dated searches with fewer candidate rows are scored exactly
ANN_MAX_FETCH = 8192  # ANN candidates fetched at most before falling back to exact
ANN_MIN_FETCH = 64  # candidates re-scored exactly per query, at least (docs/ann.md)

SECTIONS = ("vectors", "ids", "taken", "stamps", "path_offsets", "path_bytes", "id_order", "absent")

_lock = threading.Lock()
_cache: dict[str, VectorMatrix] = {}


def sidecar_path(catalog_path: str | os.PathLike, model_id: str) -> Path:
    """Where the matrix for this catalog and model lives (a folder beside the catalog file)."""
    catalog_path = Path(catalog_path)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("._")[:80] or "model"
    digest = hashlib.sha256(model_id.encode()).hexdigest()[:8]  # two ids with one slug stay apart
    return catalog_path.with_name(catalog_path.name + ".vectors") / f"{slug}-{digest}.matrix"


def delta_path(matrix_path: Path) -> Path:
    return matrix_path.with_name(matrix_path.name + ".delta")


@dataclass(frozen=True)
class Hit:
    row: int
    image_id: int
    path: str
    score: float


class _Base:
    """The immutable base file's arrays (memory-mapped), plus per-process caches of it."""

    def __init__(self, header: dict, buffer: np.ndarray, source: Path | None):
        self.header = header
        self.base_id: str = header["base_id"]
        self.generation = int(header["generation"])
        self.mark = float(header["mark"])
        self.model: str = header["model"]
        self.rows = int(header["rows"])
        self.dim = int(header["dim"])
        self.source = source
        sections = header["sections"]

        def section(name: str, dtype: str) -> np.ndarray:
            start, length = sections[name]
            return buffer[start : start + length].view(dtype)

        self.vectors = section("vectors", "<f2").reshape(self.rows, self.dim)
        self.ids = section("ids", "<i8")
        self.taken = section("taken", "<f8")
        self.stamps = section("stamps", "<f8")
        self.offsets = section("path_offsets", "<i8")
        self.path_bytes = section("path_bytes", "u1")
        self.id_order = section("id_order", "<i8")
        self.absent = section("absent", "<i8")
        self.f32: np.ndarray | None = None
        self.ann: ann_module.AnnIndex | None = None
        self.ann_checked = False

    def path_bytes_at(self, row: int) -> bytes:
        return self.path_bytes[self.offsets[row] : self.offsets[row + 1]].tobytes()

    def row_of_id(self, image_id: int) -> int | None:
        position = int(np.searchsorted(self.ids, image_id, sorter=self.id_order))
        if position < self.rows:
            row = int(self.id_order[position])
            if int(self.ids[row]) == image_id:
                return row
        return None

    def ann_index(self) -> ann_module.AnnIndex | None:
        if not self.ann_checked:
            self.ann_checked = True
            if self.source is not None and self.rows >= ann_module.ANN_MIN_ROWS:
                self.ann = ann_module.open_index(self.source, self.base_id, self.rows, self.vectors)
        return self.ann


@dataclass
class _Batch:
    """One journal batch: the changes of one catch-up."""

    generation: int
    mark: float
    kills: np.ndarray  # ids whose current row dies
    add_ids: np.ndarray
    add_taken: np.ndarray
    add_stamps: np.ndarray
    add_vectors: np.ndarray  # float16 (n, dim)
    add_paths: list[bytes]
    absent_add: np.ndarray
    absent_del: np.ndarray

    def encode(self) -> bytes:
        lengths = np.asarray([len(p) for p in self.add_paths], "<i8")
        parts = [
            np.asarray(self.kills, "<i8").tobytes(),
            np.asarray(self.add_ids, "<i8").tobytes(),
            np.asarray(self.add_taken, "<f8").tobytes(),
            np.asarray(self.add_stamps, "<f8").tobytes(),
            lengths.tobytes(),
            np.asarray(self.add_vectors, "<f2").tobytes(),
            b"".join(self.add_paths),
            np.asarray(self.absent_add, "<i8").tobytes(),
            np.asarray(self.absent_del, "<i8").tobytes(),
        ]
        payload = b"".join(parts)
        head = BATCH_HEAD.pack(
            BATCH_TAG,
            self.generation,
            self.mark,
            len(self.kills),
            len(self.add_ids),
            len(self.absent_add),
            len(self.absent_del),
            len(payload),
            zlib.crc32(payload),
        )
        return head + payload

    @staticmethod
    def decode(data: memoryview, at: int, dim: int) -> tuple[_Batch, int] | None:
        """The batch at `at` and where the next one starts; None when torn, foreign or damaged."""
        if at + BATCH_HEAD.size > len(data):
            return None
        tag, generation, mark, kills, adds, plus, minus, size, crc = BATCH_HEAD.unpack_from(data, at)
        start = at + BATCH_HEAD.size
        if tag != BATCH_TAG or start + size > len(data):
            return None
        payload = data[start : start + size]
        if zlib.crc32(payload) != crc:
            return None
        position = 0

        def take(dtype: str, count: int) -> np.ndarray:
            nonlocal position
            width = np.dtype(dtype).itemsize * count
            array = np.frombuffer(payload[position : position + width], dtype).copy()
            position += width
            return array

        kill_ids = take("<i8", kills)
        add_ids = take("<i8", adds)
        taken = take("<f8", adds)
        stamps = take("<f8", adds)
        lengths = take("<i8", adds)
        vectors = take("<f2", adds * dim).reshape(adds, dim)
        blob = bytes(payload[position : position + int(lengths.sum())])
        position += len(blob)
        cuts = np.concatenate([[0], np.cumsum(lengths)]).astype(int)
        paths = [blob[cuts[i] : cuts[i + 1]] for i in range(adds)]
        batch = _Batch(
            generation,
            mark,
            kill_ids,
            add_ids,
            taken,
            stamps,
            vectors,
            paths,
            take("<i8", plus),
            take("<i8", minus),
        )
        return batch, start + size


class VectorMatrix:
    """A read-only view: the base plus the journal's appended rows and tombstones.

    Rows 0..base.rows-1 are the base (sorted by path); rows after them are appended rows in journal
    order. A dead row (tombstoned: removed or changed) is never returned.
    """

    def __init__(self, base: _Base):
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

    def _apply(self, batch: _Batch) -> None:
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

    def needs_compaction(self) -> bool:
        changed = len(self.tail_ids) + int(self.base_dead.sum())
        return changed >= COMPACT_MIN_ROWS and changed > COMPACT_SHARE * max(self.base.rows, 1)

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

    def _tail_in_scope(self, roots, after, before) -> np.ndarray:
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
        return np.concatenate([self.scores(query), self._scores_of_rows(query, tail)])

    def vector_at(self, row: int) -> np.ndarray:
        """The stored (float16) vector of one row, base or appended."""
        if row < self.base.rows:
            return np.asarray(self.base.vectors[row])
        return np.asarray(self.tail_vectors[row - self.base.rows])

    def _scores_of_rows(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
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

    def _warm_up(self) -> None:
        """From the second query in one process (a server), keep a float32 copy: about 4x faster
        scoring than converting float16 each time, for twice the memory of the mapped file."""
        self._queries += 1
        base = self.base
        if self._queries == 2 and base.f32 is None and base.rows * base.dim * 4 <= MAX_F32_BYTES:
            base.f32 = np.asarray(base.vectors, np.float32)

    def top(
        self,
        query: np.ndarray,
        k: int,
        *,
        offset: int = 0,
        roots: Sequence[str | os.PathLike] | None = None,
        threshold: float | None = None,
        after: float | None = None,
        before: float | None = None,
        accept: Callable[[int, str], bool] | None = None,
        allowed: np.ndarray | None = None,
        exact: bool = False,
        scorer: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> list[Hit]:
        """The best `k` rows after skipping `offset`, best first (ties: path order).

        roots: only images below these folders. threshold: only scores >= it. after/before:
        capture time (wall-clock seconds) in [after, before); images without one are left out.
        accept(image_id, path): a last say on each candidate, asked in score order, only as far
        as needed (used for --exclude and for leaving the query's own images out).
        allowed: a boolean mask over all rows (metadata filters); False rows are never ranked.
        exact: score every row in scope even where the ANN index would be used.
        scorer(rows): the scores of these rows (all-of search) instead of cosines with `query`;
        it always scores exactly.
        """
        if k <= 0 or self.rows == 0:
            return []
        query = np.asarray(query, np.float32).reshape(-1)
        if query.shape[0] != self.dim:
            raise ValueError(f"query has {query.shape[0]} dimensions, the catalog's vectors {self.dim}")
        ranges = [(0, self.base.rows)] if roots is None else self.rows_under(roots)
        tail = self._tail_in_scope(roots, after, before)
        if allowed is not None:
            allowed = np.asarray(allowed, bool)
            tail = tail[allowed[tail + self.base.rows]]
        if not exact and scorer is None:
            index = self.base.ann_index()
            if index is not None:
                hits = self._top_ann(
                    index, query, k, offset, ranges, tail, threshold, after, before, accept, allowed
                )
                if hits is not None:
                    self.last_method = "ann"
                    return hits
        self.last_method = "exact"
        self._warm_up()
        score_parts, row_parts = [], []
        for lo, hi in ranges:
            scores = self.scores(query, lo, hi) if scorer is None else scorer(np.arange(lo, hi))
            keep = ~self.base_dead[lo:hi]
            if after is not None:
                keep &= self.base.taken[lo:hi] >= after  # NaN (no capture time) compares False
            if before is not None:
                keep &= self.base.taken[lo:hi] < before
            if allowed is not None:
                keep &= allowed[lo:hi]
            rows = np.arange(lo, hi)
            if not keep.all():
                scores, rows = scores[keep], rows[keep]
            score_parts.append(scores)
            row_parts.append(rows)
        if len(tail):
            rows = tail + self.base.rows
            score_parts.append(self._scores_of_rows(query, rows) if scorer is None else scorer(rows))
            row_parts.append(rows)
        if not score_parts:
            return []
        return self._pick(
            np.concatenate(score_parts), np.concatenate(row_parts), k, offset, threshold, accept
        )

    def _pick(self, scores, rows, k, offset, threshold, accept) -> list[Hit]:
        """The top `offset + k` accepted candidates, best first; ties in row (path) order."""
        if threshold is not None:
            keep = scores >= threshold
            scores, rows = scores[keep], rows[keep]
        need = offset + k
        window = min(len(scores), need if accept is None else need + 16)
        while True:
            if window < len(scores):
                picked = np.argpartition(-scores, window - 1)[:window]
            else:
                picked = np.arange(len(scores))
            picked = picked[np.lexsort((rows[picked], -scores[picked]))]
            hits: list[Hit] = []
            for position in picked:
                row = int(rows[position])
                image_id, path = self.id_at(row), self.path_at(row)
                if accept is None or accept(image_id, path):
                    hits.append(Hit(row, image_id, path, float(scores[position])))
                    if len(hits) >= need:
                        break
            if len(hits) >= need or window >= len(scores):
                return hits[offset:need]
            window = min(len(scores), window * 4)

    def _top_ann(self, index, query, k, offset, ranges, tail, threshold, after, before, accept, allowed):
        """ANN candidates, filtered, re-scored exactly, merged with the appended rows; None means
        "score exactly": the scope is too small for the index to pay, or over-fetching did not
        find enough candidates that pass the filters."""
        base = self.base
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
        tail_scores = self._scores_of_rows(query, tail_rows) if len(tail_rows) else np.zeros(0, np.float32)
        while True:
            found = index.search(query, fetch)
            exhausted = len(found) < fetch
            found = found[(found >= 0) & (found < base.rows)]
            slot = np.searchsorted(starts, found, side="right") - 1
            keep = (slot >= 0) & (found < ends[np.maximum(slot, 0)]) & ~self.base_dead[found]
            if after is not None:
                keep &= base.taken[found] >= after
            if before is not None:
                keep &= base.taken[found] < before
            if allowed is not None:
                keep &= allowed[found]
            rows = found[keep]
            scores = self._scores_of_rows(query, rows)
            hits = self._pick(
                np.concatenate([scores, tail_scores]),
                np.concatenate([rows, tail_rows]),
                k,
                offset,
                threshold,
                accept,
            )
            if len(hits) >= k or exhausted:
                return hits
            # Fewer than k: complete only if the threshold cut the list (the rest score lower).
            if threshold is not None and len(scores) and float(scores.min()) < threshold:
                return hits
            if fetch >= ANN_MAX_FETCH:
                return None
            fetch = min(ANN_MAX_FETCH, fetch * 4)


def _path_bytes(stored: str | bytes) -> bytes:
    """A path as the catalog stores it (TEXT, or a BLOB of the raw bytes of a name that is not
    UTF-8: catalog/db.py) as the bytes the matrix sorts and compares."""
    if isinstance(stored, bytes | memoryview):
        return bytes(stored)
    return stored.encode("utf-8", "surrogateescape")


def _root_keys(roots: Sequence[str | os.PathLike]) -> list[bytes]:
    return [prefix.encode("utf-8", "surrogateescape") for prefix in root_prefixes(roots)]


# -- the base file ----------------------------------------------------------------------------


def _aligned(value: int) -> int:
    return (value + ALIGN - 1) // ALIGN * ALIGN


def _serialise(header: dict, arrays: dict[str, np.ndarray]) -> tuple[bytes, list]:
    """Header bytes (magic included, padded) and the ordered section arrays to write after it."""
    sizes = [arrays[name].nbytes for name in SECTIONS]
    header = dict(header, version=FORMAT_VERSION, rows=int(arrays["ids"].shape[0]), sections={})
    # The header's own length moves the offsets, so lay out with a generous fixed header space.
    for _ in range(2):
        text = json.dumps(header).encode()
        position = _aligned(len(MAGIC) + 4 + len(text) + 256)
        for name, size in zip(SECTIONS, sizes, strict=True):
            header["sections"][name] = [position, size]
            position = _aligned(position + size)
    text = json.dumps(header).encode()
    start = len(MAGIC) + 4 + len(text)
    first = header["sections"][SECTIONS[0]][0]
    if start > first:  # cannot happen with 256 bytes of slack; guard against silent overlap
        raise RuntimeError("matrix header outgrew its space")
    head = MAGIC + struct.pack("<I", len(text)) + text + b"\0" * (first - start)
    return head, [arrays[name] for name in SECTIONS]


def _collect(db: CatalogDB, model: str) -> tuple[dict, dict[str, np.ndarray]]:
    """Read the searchable rows of `model` from one SQLite snapshot, sorted by path."""
    ids: list[int] = []
    paths: list[bytes] = []
    blobs: list[bytes] = []
    stamps: list[float] = []
    taken_at: list[str | None] = []
    width = None
    with _snapshot(db):
        generation = db.generation()
        mark = time.time() - CLOCK_SLACK_S
        # Unordered: SQLite then reads the vectors sequentially (5x faster than by id at 100k).
        for image_id, path, stamp, taken, blob in db.conn.execute(
            "SELECT images.id, images.path, images.indexed_at, images.taken_at, embeddings.vector "
            "FROM images JOIN embeddings ON embeddings.content_hash = images.content_hash "
            "WHERE embeddings.model = ? AND images.error IS NULL",
            (model,),
        ):
            if width is None:
                width = len(blob)
            if len(blob) != width:  # a malformed vector must not shift every row after it
                continue
            ids.append(image_id)
            paths.append(_path_bytes(path))
            blobs.append(blob)
            stamps.append(stamp)
            taken_at.append(taken)
        every_id = np.fromiter((row[0] for row in db.conn.execute("SELECT id FROM images")), "<i8")
    dim = (width or 0) // 2
    order = sorted(range(len(paths)), key=paths.__getitem__)
    # Joined in path order: one copy of the vectors besides the blobs (no second, sorted copy).
    vectors = np.frombuffer(b"".join([blobs[i] for i in order]), "<f2").reshape(len(blobs), dim)
    del blobs
    sorted_ids = np.asarray([ids[i] for i in order], "<i8")
    taken = np.asarray([_seconds(taken_at[i]) for i in order], "<f8")
    lengths = np.asarray([len(paths[i]) for i in order], "<i8")
    offsets = np.zeros(len(order) + 1, "<i8")
    np.cumsum(lengths, out=offsets[1:])
    arrays = {
        "vectors": vectors,
        "ids": sorted_ids,
        "taken": taken,
        "stamps": np.asarray([stamps[i] for i in order], "<f8"),
        "path_offsets": offsets,
        "path_bytes": np.frombuffer(b"".join(paths[i] for i in order), "u1"),
        "id_order": np.argsort(sorted_ids, kind="stable").astype("<i8"),
        "absent": np.setdiff1d(every_id, sorted_ids).astype("<i8"),
    }
    header = {
        "generation": generation,
        "mark": mark,
        "model": model,
        "dim": dim,
        "base_id": os.urandom(8).hex(),
        "built_at": time.time(),
    }
    return header, arrays


def _seconds(taken_at: str | None) -> float:
    if taken_at is None:
        return math.nan
    seconds = wallclock_seconds(taken_at)
    return math.nan if seconds is None else seconds


class _snapshot:
    """A read transaction: every SELECT inside sees one committed state of the catalog (WAL)."""

    def __init__(self, db: CatalogDB):
        self.conn = db.conn

    def __enter__(self) -> None:
        self.owned = not self.conn.in_transaction
        if self.owned:
            self.conn.execute("BEGIN")

    def __exit__(self, *exc: object) -> None:
        if self.owned and self.conn.in_transaction:
            self.conn.execute("COMMIT")  # nothing was written: ends the read snapshot


def _write_atomically(target: Path, head: bytes, arrays: list[np.ndarray], mode: int | None = None) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        if mode is not None:  # mkstemp makes 0600; whoever may read the catalog may read this
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(head)
            for array in arrays:
                out.write(b"\0" * (_aligned(out.tell()) - out.tell()))
                out.write(array.tobytes())
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


def _read_header(buffer: np.ndarray) -> dict | None:
    if buffer.shape[0] < len(MAGIC) + 4 or buffer[: len(MAGIC)].tobytes() != MAGIC:
        return None
    (length,) = struct.unpack("<I", buffer[len(MAGIC) : len(MAGIC) + 4].tobytes())
    try:
        header = json.loads(buffer[len(MAGIC) + 4 : len(MAGIC) + 4 + length].tobytes())
        end = max(start + size for start, size in header["sections"].values())
        if set(header["sections"]) != set(SECTIONS) or not header.get("base_id"):
            return None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if header.get("version") != FORMAT_VERSION or end > buffer.shape[0]:
        return None
    return header


def _open_base(path: Path) -> _Base | None:
    try:
        buffer = np.memmap(path, dtype="u1", mode="r")
    except (OSError, ValueError):
        return None
    header = _read_header(buffer)
    return _Base(header, buffer, path) if header else None


# -- the journal ------------------------------------------------------------------------------


def _journal_head(base_id: str) -> bytes:
    return DELTA_MAGIC + bytes.fromhex(base_id)


def _replay(matrix: VectorMatrix, path: Path) -> VectorMatrix:
    """`matrix` with the journal's batches applied (a copy when there are any)."""
    try:
        data = path.read_bytes()
    except OSError:
        return matrix
    head = _journal_head(matrix.base.base_id)
    if not data.startswith(head):
        return matrix  # missing, torn header or left from an older base: ignored
    view = memoryview(data)
    at = len(head)
    result = matrix._copy()
    while True:
        decoded = _Batch.decode(view, at, matrix.dim)
        if decoded is None:
            break
        batch, at = decoded
        result._apply(batch)
    result.journal_end = at
    return result


def open_matrix(path: Path, reuse: _Base | None = None) -> VectorMatrix | None:
    """Map a matrix file and replay its journal; None when it is missing, truncated or not ours.

    reuse: a base this process already holds; kept (with its float32 copy and ANN handle) when
    the file on disk is still that base.
    """
    base = _open_base(path)
    if base is None:
        return None
    if reuse is not None and reuse.base_id == base.base_id and reuse.source == base.source:
        base = reuse
    return _replay(VectorMatrix(base), delta_path(path))


def build_matrix(db: CatalogDB, model: str, target: Path | None = None) -> VectorMatrix:
    """Build the base of `model` from the catalog and write it to `target` (default: the sidecar),
    with an empty journal and, for large catalogs, the ANN index.

    If the folder is not writable (a catalog on read-only media), the matrix lives in memory only.
    """
    target = target or sidecar_path(db.path, model)
    header, arrays = _collect(db, model)
    head, parts = _serialise(header, arrays)
    try:
        mode = stat.S_IMODE(os.stat(db.path).st_mode) & 0o666
    except OSError:
        mode = None
    try:
        _write_atomically(target, head, parts, mode)
        # The old journal names the old base, so it is ignored even if this replace never happens.
        _write_atomically(delta_path(target), _journal_head(header["base_id"]), [], mode)
        matrix = open_matrix(target)
        if matrix is not None and matrix.base.base_id == header["base_id"]:
            base = matrix.base
            if base.rows >= ann_module.ANN_MIN_ROWS and ann_module.available():
                base.ann = ann_module.build_index(target, base.base_id, base.vectors)
                base.ann_checked = True
            return matrix
    except OSError:
        pass
    blob = bytearray(head)
    for array in parts:
        blob += b"\0" * (_aligned(len(blob)) - len(blob))
        blob += array.tobytes()
    buffer = np.frombuffer(bytes(blob), "u1")
    parsed = _read_header(buffer)
    if parsed is None:  # we just laid it out: only a bug gets here
        raise RuntimeError("the in-memory matrix has an unreadable header")
    return VectorMatrix(_Base(parsed, buffer, None))


# -- catching up with the catalog -------------------------------------------------------------


def _changes(db: CatalogDB, model: str, matrix: VectorMatrix) -> _Batch:
    """What the catalog changed since `matrix` was current, read in one snapshot."""
    kills: list[int] = []
    add_ids: list[int] = []
    add_taken: list[float] = []
    add_stamps: list[float] = []
    add_paths: list[bytes] = []
    add_hashes: list[str] = []
    absent_add: list[int] = []
    absent_del: list[int] = []
    with _snapshot(db):
        generation = db.generation()
        mark = time.time() - CLOCK_SLACK_S
        changed = db.conn.execute(
            "SELECT id, path, content_hash, taken_at, error, indexed_at FROM images WHERE indexed_at >= ?",
            (matrix.mark,),
        ).fetchall()
        fresh = []
        for row in changed:
            image_id, stamp = row[0], row[5]
            live = matrix.live_row_of_id(image_id)
            if live is not None and matrix.stamp_of_row(live) == stamp:
                continue  # already seen (the window overlaps the last catch-up by CLOCK_SLACK_S)
            fresh.append((row, live))
        vectors = _vectors_for(db, model, {row[2] for row, _ in fresh if row[4] is None})
        width = 2 * matrix.dim
        for (image_id, path, content_hash, taken_at, error, stamp), live in fresh:
            if live is not None:
                kills.append(image_id)
            blob = vectors.get(content_hash) if error is None else None
            if blob is None or len(blob) != width:
                if image_id not in matrix.absent:
                    absent_add.append(image_id)
                continue
            if image_id in matrix.absent:
                absent_del.append(image_id)
            add_ids.append(image_id)
            add_taken.append(_seconds(taken_at))
            add_stamps.append(stamp)
            add_paths.append(_path_bytes(path))
            add_hashes.append(content_hash)
        add_vectors = np.frombuffer(b"".join(vectors[h] for h in add_hashes), "<f2")
        batch = _Batch(
            generation,
            mark,
            np.asarray(kills, "<i8"),
            np.asarray(add_ids, "<i8"),
            np.asarray(add_taken, "<f8"),
            np.asarray(add_stamps, "<f8"),
            add_vectors.reshape(len(add_hashes), matrix.dim),
            add_paths,
            np.asarray(absent_add, "<i8"),
            np.asarray(absent_del, "<i8"),
        )
        # Removed rows: after this batch every catalog row is live or absent, unless some went;
        # the row count tells, and only then are the catalog's ids listed.
        after = matrix._copy()
        after._apply(batch)
        total = db.conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
        if after.live + len(after.absent) != total:
            present = np.fromiter((row[0] for row in db.conn.execute("SELECT id FROM images")), "<i8")
            live_ids = np.asarray([after.id_at(r) for r in after.live_rows()], "<i8")
            gone = np.setdiff1d(live_ids, present)
            batch.kills = np.concatenate([batch.kills, gone]).astype("<i8")
            stale = np.setdiff1d(np.fromiter(after.absent, "<i8", len(after.absent)), present)
            batch.absent_del = np.concatenate([batch.absent_del, stale]).astype("<i8")
    return batch


def _vectors_for(db: CatalogDB, model: str, hashes: set[str]) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    listed = sorted(hashes)
    for start in range(0, len(listed), 500):
        chunk = listed[start : start + 500]
        marks = ",".join("?" * len(chunk))
        rows = db.conn.execute(
            f"SELECT content_hash, vector FROM embeddings WHERE model = ? AND content_hash IN ({marks})",
            [model, *chunk],
        )
        found.update(rows)
    return found


class _journal_lock:
    """An exclusive lock on the journal while one process appends (others wait, then re-read)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.handle = open(self.path, "ab")
        try:
            import fcntl

            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX)
        except ImportError:  # Windows: one writer at a time is the user's to keep
            pass
        return self.handle

    def __exit__(self, *exc: object) -> None:
        self.handle.close()  # closing releases the lock


def catch_up(db: CatalogDB, model: str, matrix: VectorMatrix) -> VectorMatrix | None:
    """`matrix` brought up to the catalog's generation by appending one journal batch; None when
    it cannot be (no file, journal not writable, or compaction is due): then rebuild."""
    if matrix.source is None or db.generation() == matrix.generation:
        return matrix if matrix.source is not None else None
    journal = delta_path(matrix.source)
    try:
        with _journal_lock(journal) as handle:
            current = open_matrix(matrix.source, reuse=matrix.base)  # another process may have appended
            if current is None or current.base.base_id != matrix.base.base_id or current.journal_end == 0:
                return None
            if current.dim == 0:  # built from an empty catalog: no width to append to yet
                return None
            if current.generation == db.generation():
                return current
            batch = _changes(db, model, current)
            updated = current._copy()
            updated._apply(batch)
            if updated.needs_compaction():
                return None
            handle.truncate(current.journal_end)  # drop a torn batch left by a crashed writer
            handle.seek(current.journal_end)
            encoded = batch.encode()
            handle.write(encoded)
            handle.flush()
            os.fsync(handle.fileno())
            updated.journal_end = current.journal_end + len(encoded)
            return updated
    except OSError:
        return None


def load_matrix(db: CatalogDB, model: str) -> VectorMatrix:
    """The up-to-date matrix of `model`: from this process's cache, from disk, caught up, or rebuilt."""
    target = sidecar_path(db.path, model)
    key = str(target)
    generation = db.generation()
    with _lock:
        cached = _cache.get(key)
        if cached is not None and cached.generation == generation and cached.model == model:
            return cached
        matrix = open_matrix(target, reuse=cached.base if cached is not None else None)
        if matrix is not None and matrix.model != model:
            matrix = None
        if matrix is not None and matrix.generation != generation:
            matrix = catch_up(db, model, matrix)
        if matrix is None:
            matrix = build_matrix(db, model, target)
        elif matrix.base.rows >= ann_module.ANN_MIN_ROWS and matrix.base.ann_index() is None:
            # A large base without its index (a crash mid-build, or usearch installed since).
            if ann_module.available() and matrix.source is not None:
                matrix.base.ann = ann_module.build_index(target, matrix.base.base_id, matrix.base.vectors)
        _cache[key] = matrix
        return matrix


def cached_matrix(catalog_path: str | os.PathLike, model: str) -> VectorMatrix | None:
    """The matrix this process last loaded for (catalog, model), if any; nothing is read."""
    with _lock:
        return _cache.get(str(sidecar_path(catalog_path, model)))


def describe_index(catalog_path: str | os.PathLike, model: str) -> dict | None:
    """What the sidecar on disk holds for `model` (for `stats`), without catching up or building."""
    matrix = open_matrix(sidecar_path(catalog_path, model))
    if matrix is None or matrix.model != model:
        return None
    info = matrix.describe()
    info.pop("last_method")
    info["generation"] = matrix.generation
    return info
