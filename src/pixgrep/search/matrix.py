"""Exact vector search over a memory-mapped float16 matrix kept beside the catalog.

One file per (catalog, model): `<catalog>.vectors/<model-slug>.matrix`. It holds everything a query
needs, so a query reads no SQLite rows except the k results' metadata:

    magic (16 bytes) | header length (uint32 LE) | header (JSON) | sections, each 64-byte aligned:
      vectors       float16 (rows, dim)   one unit vector per image
      ids           int64 (rows,)         images.id
      taken         float64 (rows,)       capture time as wall-clock seconds, NaN when unknown
      path_offsets  int64 (rows + 1,)     where each path starts in path_bytes
      path_bytes    uint8                 UTF-8 paths (surrogateescape), concatenated

Rows are sorted by path bytes, so the images under a folder are one contiguous run of rows, found
by binary search: folder scoping costs O(log n), not a scan. The header stores the catalog
generation the file was built from; when `db.generation()` moves on, the next query rebuilds it.
The file is written to a temporary name and renamed over the old one (os.replace), so a
concurrent reader sees either the old file or the new one, never half of one; a reader that has
the old file memory-mapped keeps a valid view after the rename.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixgrep.catalog.db import CatalogDB
from pixgrep.search.filters import root_prefixes, wallclock_seconds

MAGIC = b"PIXGREP-MATRIX\x00\x01"
FORMAT_VERSION = 1
ALIGN = 64
CHUNK_ROWS = 1024  # rows converted per step: a 2 MB float32 scratch at 512-d stays in cache
MAX_F32_BYTES = 1 << 30  # a long-lived process keeps a float32 copy up to this size

_lock = threading.Lock()
_cache: dict[str, VectorMatrix] = {}


def sidecar_path(catalog_path: str | os.PathLike, model_id: str) -> Path:
    """Where the matrix for this catalog and model lives (a folder beside the catalog file)."""
    catalog_path = Path(catalog_path)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("._")[:80] or "model"
    digest = hashlib.sha256(model_id.encode()).hexdigest()[:8]  # two ids with one slug stay apart
    return catalog_path.with_name(catalog_path.name + ".vectors") / f"{slug}-{digest}.matrix"


@dataclass(frozen=True)
class Hit:
    row: int
    image_id: int
    path: str
    score: float


class VectorMatrix:
    """A read-only view of one matrix file (or of arrays held in memory when the file is unwritable)."""

    def __init__(self, header: dict, buffer: np.ndarray, source: Path | None):
        self.generation: int = int(header["generation"])
        self.model: str = header["model"]
        self.rows: int = int(header["rows"])
        self.dim: int = int(header["dim"])
        self.source = source
        sections = header["sections"]

        def section(name: str, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
            start, length = sections[name]
            return buffer[start : start + length].view(dtype).reshape(shape)

        self.vectors = section("vectors", "<f2", (self.rows, self.dim))
        self.ids = section("ids", "<i8", (self.rows,))
        self.taken = section("taken", "<f8", (self.rows,))
        self._offsets = section("path_offsets", "<i8", (self.rows + 1,))
        self._path_bytes = section("path_bytes", "u1", (int(sections["path_bytes"][1]),))
        self._f32: np.ndarray | None = None
        self._queries = 0

    # -- paths ------------------------------------------------------------------------------

    def path_bytes_at(self, row: int) -> bytes:
        return self._path_bytes[self._offsets[row] : self._offsets[row + 1]].tobytes()

    def path_at(self, row: int) -> str:
        return self.path_bytes_at(row).decode("utf-8", "surrogateescape")

    def _lower_bound(self, key: bytes) -> int:
        lo, hi = 0, self.rows
        while lo < hi:
            mid = (lo + hi) // 2
            if self.path_bytes_at(mid) < key:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def rows_under(self, roots: Sequence[str | os.PathLike]) -> list[tuple[int, int]]:
        """Row ranges [lo, hi) of the images below any of `roots` (merged, sorted)."""
        ranges = []
        for prefix in root_prefixes(roots):
            key = prefix.encode("utf-8", "surrogateescape")
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

    # -- search -----------------------------------------------------------------------------

    def scores(self, query: np.ndarray, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """Cosine scores of rows [lo, hi) against a unit query, float32, computed chunk by chunk."""
        hi = self.rows if hi is None else hi
        if self._f32 is not None:
            return np.einsum("ij,j->i", self._f32[lo:hi], query)
        out = np.empty(hi - lo, np.float32)
        scratch = np.empty((min(CHUNK_ROWS, hi - lo), self.dim), np.float32)
        for start in range(lo, hi, CHUNK_ROWS):
            end = min(start + CHUNK_ROWS, hi)
            # float16 -> float32 into a cache-sized scratch, then a float32 dot product per row.
            # einsum, not matmul: OpenBLAS threads on many small products spin-wait, which cost
            # 9x the CPU time on a busy 2-core machine (benchmarks/bench_search.py, docs/search.md).
            block = scratch[: end - start]
            np.copyto(block, self.vectors[start:end])
            np.einsum("ij,j->i", block, query, out=out[start - lo : end - lo])
        return out

    def _warm_up(self) -> None:
        """From the second query in one process (a server), keep a float32 copy: about 4x faster
        scoring than converting float16 each time, for twice the memory of the mapped file."""
        self._queries += 1
        if self._queries == 2 and self._f32 is None and self.rows * self.dim * 4 <= MAX_F32_BYTES:
            self._f32 = np.asarray(self.vectors, np.float32)

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
    ) -> list[Hit]:
        """The best `k` rows after skipping `offset`, best first (ties: path order).

        roots: only images below these folders. threshold: only scores >= it. after/before:
        capture time (wall-clock seconds) in [after, before); images without one are left out.
        accept(image_id, path): a last say on each candidate, asked in score order, only as far
        as needed (used for --exclude and for leaving the query's own images out).
        """
        if k <= 0 or self.rows == 0:
            return []
        self._warm_up()
        query = np.asarray(query, np.float32).reshape(-1)
        if query.shape[0] != self.dim:
            raise ValueError(f"query has {query.shape[0]} dimensions, the catalog's vectors {self.dim}")
        ranges = [(0, self.rows)] if roots is None else self.rows_under(roots)
        score_parts, row_parts = [], []
        for lo, hi in ranges:
            scores = self.scores(query, lo, hi)
            keep = np.ones(hi - lo, bool)
            if threshold is not None:
                keep &= scores >= threshold
            if after is not None:
                keep &= self.taken[lo:hi] >= after  # NaN (no capture time) compares False
            if before is not None:
                keep &= self.taken[lo:hi] < before
            rows = np.arange(lo, hi)
            if not keep.all():
                scores, rows = scores[keep], rows[keep]
            score_parts.append(scores)
            row_parts.append(rows)
        if not score_parts:
            return []
        scores = np.concatenate(score_parts)
        rows = np.concatenate(row_parts)
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
                image_id, path = int(self.ids[row]), self.path_at(row)
                if accept is None or accept(image_id, path):
                    hits.append(Hit(row, image_id, path, float(scores[position])))
                    if len(hits) >= need:
                        break
            if len(hits) >= need or window >= len(scores):
                return hits[offset:need]
            window = min(len(scores), window * 4)


# -- building and loading ---------------------------------------------------------------------


def _aligned(value: int) -> int:
    return (value + ALIGN - 1) // ALIGN * ALIGN


def _serialise(generation: int, model: str, dim: int, arrays: dict[str, np.ndarray]) -> tuple[bytes, list]:
    """Header bytes (magic included, padded) and the ordered section arrays to write after it."""
    names = ("vectors", "ids", "taken", "path_offsets", "path_bytes")
    sizes = [arrays[name].nbytes for name in names]
    header: dict = {
        "version": FORMAT_VERSION,
        "generation": generation,
        "model": model,
        "rows": int(arrays["ids"].shape[0]),
        "dim": dim,
        "built_at": time.time(),
        "sections": {},
    }
    # The header's own length moves the offsets, so lay out with a generous fixed header space.
    for _ in range(2):
        text = json.dumps(header).encode()
        position = _aligned(len(MAGIC) + 4 + len(text) + 256)
        for name, size in zip(names, sizes, strict=True):
            header["sections"][name] = [position, size]
            position = _aligned(position + size)
    text = json.dumps(header).encode()
    start = len(MAGIC) + 4 + len(text)
    first = header["sections"]["vectors"][0]
    if start > first:  # cannot happen with 256 bytes of slack; guard against silent overlap
        raise RuntimeError("matrix header outgrew its space")
    head = MAGIC + struct.pack("<I", len(text)) + text + b"\0" * (first - start)
    return head, [arrays[name] for name in names]


def _collect(db: CatalogDB, model: str) -> tuple[int, int, dict[str, np.ndarray]]:
    """Read the searchable rows of `model` from SQLite, sorted by path, as the sidecar's arrays."""
    generation = db.generation()  # read first: if a writer commits meanwhile, we rebuild next time
    ids: list[int] = []
    paths: list[bytes] = []
    blobs: list[bytes] = []
    width = None
    for image_id, path, blob in db.iter_searchable(model, ordered=False):
        if width is None:
            width = len(blob)
        if len(blob) != width:  # a malformed vector must not shift every row after it
            continue
        ids.append(image_id)
        paths.append(path.encode("utf-8", "surrogateescape"))
        blobs.append(blob)
    dim = (width or 0) // 2
    order = sorted(range(len(paths)), key=paths.__getitem__)
    # Joined in path order: one copy of the vectors besides the blobs (no second, sorted copy).
    vectors = np.frombuffer(b"".join([blobs[i] for i in order]), "<f2").reshape(len(blobs), dim)
    del blobs
    taken_by_id = {}
    for image_id, taken_at in db.capture_times():
        seconds = wallclock_seconds(taken_at)
        if seconds is not None:
            taken_by_id[image_id] = seconds
    sorted_ids = np.asarray([ids[i] for i in order], "<i8")
    taken = np.asarray([taken_by_id.get(ids[i], math.nan) for i in order], "<f8")
    lengths = np.asarray([len(paths[i]) for i in order], "<i8")
    offsets = np.zeros(len(order) + 1, "<i8")
    np.cumsum(lengths, out=offsets[1:])
    path_bytes = np.frombuffer(b"".join(paths[i] for i in order), "u1")
    arrays = {
        "vectors": vectors,
        "ids": sorted_ids,
        "taken": taken,
        "path_offsets": offsets,
        "path_bytes": path_bytes,
    }
    return generation, dim, arrays


def _write_atomically(target: Path, head: bytes, arrays: list[np.ndarray]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
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
    except (ValueError, KeyError, TypeError):
        return None
    if header.get("version") != FORMAT_VERSION or end > buffer.shape[0]:
        return None
    return header


def open_matrix(path: Path) -> VectorMatrix | None:
    """Map a matrix file; None when it is missing, truncated or not ours."""
    try:
        buffer = np.memmap(path, dtype="u1", mode="r")
    except (OSError, ValueError):
        return None
    header = _read_header(buffer)
    return VectorMatrix(header, buffer, path) if header else None


def build_matrix(db: CatalogDB, model: str, target: Path | None = None) -> VectorMatrix:
    """Build the matrix of `model` from the catalog and write it to `target` (default: the sidecar).

    If the folder is not writable (a catalog on read-only media), the matrix lives in memory only.
    """
    target = target or sidecar_path(db.path, model)
    generation, dim, arrays = _collect(db, model)
    head, parts = _serialise(generation, model, dim, arrays)
    try:
        _write_atomically(target, head, parts)
        matrix = open_matrix(target)
        if matrix is not None and matrix.generation == generation:
            return matrix
    except OSError:
        pass
    blob = bytearray(head)
    for array in parts:
        blob += b"\0" * (_aligned(len(blob)) - len(blob))
        blob += array.tobytes()
    buffer = np.frombuffer(bytes(blob), "u1")
    return VectorMatrix(_read_header(buffer), buffer, None)


def load_matrix(db: CatalogDB, model: str) -> VectorMatrix:
    """The up-to-date matrix of `model`: from this process's cache, from disk, or rebuilt."""
    target = sidecar_path(db.path, model)
    key = str(target)
    generation = db.generation()
    with _lock:
        cached = _cache.get(key)
        if cached is not None and cached.generation == generation and cached.model == model:
            return cached
        matrix = open_matrix(target)
        if matrix is None or matrix.generation != generation or matrix.model != model:
            matrix = build_matrix(db, model, target)
        _cache[key] = matrix
        return matrix
