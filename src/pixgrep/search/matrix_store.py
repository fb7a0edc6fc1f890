"""The search matrix kept up to date with the catalog, and the process-wide cache of it.

The matrix (search/matrix.py, files in search/matrix_file.py) is built from the catalog's
searchable rows (catalog/searchable.py) and then costs what changed: the next query whose
generation check (one tiny SQLite read) sees the catalog moved on reads the rows written since
(`images.indexed_at`, which every write sets), tombstones their old rows and appends the new ones
to the journal. Removed images are found by count (live + absent rows vs the catalog's rows) and,
only when the count says so, by an id scan. When appended plus dead rows pass COMPACT_SHARE of the
base, the base is rebuilt from the catalog (the source of truth) and the journal starts again.
Whatever a crash loses from the matrix files is still in the catalog, and the generation check
finds it again.
"""

from __future__ import annotations

import math
import os
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from pixgrep.catalog import searchable
from pixgrep.catalog.db import CatalogDB
from pixgrep.catalog.paths import writable
from pixgrep.search import ann as ann_module
from pixgrep.search.filters import wallclock_seconds
from pixgrep.search.matrix import VectorMatrix, open_matrix
from pixgrep.search.matrix_file import (
    Base,
    Batch,
    Filled,
    Section,
    delta_path,
    in_memory,
    journal_head,
    journal_lock,
    read_header,
    serialise,
    sidecar_path,
    write_atomically,
)

__all__ = ["build_matrix", "cached_matrix", "catch_up", "describe_index", "load_matrix"]

COMPACT_SHARE = 0.10  # rebuild the base when appended + dead rows pass this share of it ...
COMPACT_MIN_ROWS = 1000  # ... and this many rows
FILL_BATCH = 65_536  # vectors read from the catalog per write into the file (64 MB)
CLOCK_SLACK_S = 120.0  # a write may commit this long after it stamped indexed_at (busy wait)

_lock = threading.Lock()
_cache: dict[str, VectorMatrix] = {}


class _Damaged(Exception):
    """Vectors of another length than the first one read (a damaged catalog): the build starts
    again without their rows, which stay out of the matrix as before."""

    def __init__(self, ids: list[int]):
        super().__init__(f"{len(ids)} vectors of the wrong length")
        self.ids = frozenset(ids)


def _collect(db: CatalogDB, model: str, skip: frozenset[int]) -> tuple[dict, dict[str, Section]]:
    """The searchable rows of `model` sorted by path, read in the caller's snapshot: every column
    but the vectors now; the vectors as the file is written (`Filled`), so a build holds them once,
    in the file (10 GB at 10M rows), never in Python as well."""
    ids: list[int] = []
    paths: list[bytes] = []
    stamps: list[float] = []
    taken_at: list[str | None] = []
    generation = db.generation()
    mark = time.time() - CLOCK_SLACK_S
    for image_id, path, stamp, taken_text in searchable.searchable_rows(db, model):
        if image_id not in skip:
            ids.append(image_id)
            paths.append(path)
            stamps.append(stamp)
            taken_at.append(taken_text)
    every_id = searchable.image_ids(db)
    width = searchable.vector_width(db, model) or 0
    dim = width // 2
    order = sorted(range(len(paths)), key=paths.__getitem__)
    sorted_ids = np.asarray([ids[i] for i in order], "<i8")
    id_order = np.argsort(sorted_ids, kind="stable").astype("<i8")
    lengths = np.asarray([len(paths[i]) for i in order], "<i8")
    offsets = np.zeros(len(order) + 1, "<i8")
    np.cumsum(lengths, out=offsets[1:])

    def fill(vectors: np.ndarray) -> None:
        """Each vector into its path-sorted row, read in SQLite's (sequential) order."""
        wrong: list[int] = []
        batch: list[int] = []
        blobs: list[bytes] = []
        filled = 0

        def put() -> int:
            wanted = np.asarray(batch, "<i8")
            rows = id_order[np.searchsorted(sorted_ids, wanted, sorter=id_order).clip(0, len(ids) - 1)]
            if not np.array_equal(sorted_ids[rows], wanted):  # one snapshot: cannot happen
                raise RuntimeError("the catalog's vectors changed while the matrix was built")
            vectors[rows] = np.frombuffer(b"".join(blobs), "<f2").reshape(len(blobs), dim)
            batch.clear()
            blobs.clear()
            return len(rows)

        for image_id, blob in searchable.vector_rows(db, model):
            if image_id in skip:
                continue
            if len(blob) != width:
                wrong.append(image_id)
                continue
            batch.append(image_id)
            blobs.append(blob)
            if len(batch) == FILL_BATCH:
                filled += put()
        if batch:
            filled += put()
        if wrong:
            raise _Damaged(wrong)
        if filled != len(ids):
            raise RuntimeError("the catalog's vectors changed while the matrix was built")

    arrays: dict[str, Section] = {
        "vectors": Filled("<f2", (len(ids), dim), fill),
        "ids": sorted_ids,
        "taken": np.asarray([_seconds(taken_at[i]) for i in order], "<f8"),
        "stamps": np.asarray([stamps[i] for i in order], "<f8"),
        "path_offsets": offsets,
        "path_bytes": np.frombuffer(b"".join(paths[i] for i in order), "u1"),
        "id_order": id_order,
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


def build_matrix(db: CatalogDB, model: str, target: Path | None = None) -> VectorMatrix:
    """Build the base of `model` from the catalog and write it to `target` (default: the sidecar),
    with an empty journal and, for large catalogs, the ANN index.

    If the folder is not writable (a catalog on read-only media), the matrix lives in memory only.
    """
    target = target or sidecar_path(db.path, model)
    skip: frozenset[int] = frozenset()
    while True:
        try:
            with searchable.read_snapshot(db):
                matrix = _write_base(db, model, target, skip)
            break
        except _Damaged as damaged:
            skip |= damaged.ids
    base = matrix.base
    if matrix.source is not None and base.rows >= ann_module.ANN_MIN_ROWS and ann_module.available():
        _build_ann(target, base)
    return matrix


def _write_base(db: CatalogDB, model: str, target: Path, skip: frozenset[int]) -> VectorMatrix:
    header, arrays = _collect(db, model, skip)
    head, parts = serialise(header, arrays)
    try:
        mode = stat.S_IMODE(os.stat(db.path).st_mode) & 0o666
    except OSError:
        mode = None
    folder = target.parent if target.parent.exists() else target.parent.parent
    if writable(folder):  # else read-only media, or a folder made read-only: memory only
        try:
            write_atomically(target, head, parts, mode)
            # The old journal names the old base, so it is ignored even if this replace never happens.
            write_atomically(delta_path(target), journal_head(header["base_id"]), [], mode)
            matrix = open_matrix(target)
            if matrix is not None and matrix.base.base_id == header["base_id"]:
                return matrix
        except OSError:
            pass
    buffer = in_memory(head, parts)
    parsed = read_header(buffer)
    if parsed is None:  # we just laid it out: only a bug gets here
        raise RuntimeError("the in-memory matrix has an unreadable header")
    return VectorMatrix(Base(parsed, buffer, None))


def _build_ann(target: Path, base: Base) -> None:
    """Build the base's ANN index, unless another process is building it right now (an index run
    ending, a server): then this one searches exactly meanwhile and looks for the index file
    again at its next search, instead of waiting for that build or doing it twice."""
    with _index_build_lock(target) as mine:
        if mine:
            base.ann = ann_module.build_index(target, base.base_id, base.vectors)
            base.ann_checked = True
        else:
            base.ann, base.ann_checked = None, False


@contextmanager
def _index_build_lock(target: Path) -> Iterator[bool]:
    """True while this process holds the right to build `target`'s index; False when another holds it."""
    try:
        import fcntl
    except ImportError:  # Windows: builds are not coordinated
        yield True
        return
    try:
        handle = open(f"{target}.ann-lock", "ab")
    except OSError:  # a read-only folder: nothing can be written, so nothing to coordinate
        yield True
        return
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True


# -- catching up with the catalog -------------------------------------------------------------


def _changes(db: CatalogDB, model: str, matrix: VectorMatrix) -> Batch:
    """What the catalog changed since `matrix` was current, read in one snapshot."""
    kills: list[int] = []
    add_ids: list[int] = []
    add_taken: list[float] = []
    add_stamps: list[float] = []
    add_paths: list[bytes] = []
    add_hashes: list[str] = []
    absent_add: list[int] = []
    absent_del: list[int] = []
    with searchable.read_snapshot(db):
        generation = db.generation()
        mark = time.time() - CLOCK_SLACK_S
        fresh = []
        for row in searchable.changed_since(db, matrix.mark):
            live = matrix.live_row_of_id(row.image_id)
            if live is not None and matrix.stamp_of_row(live) == row.indexed_at:
                continue  # already seen (the window overlaps the last catch-up by CLOCK_SLACK_S)
            fresh.append((row, live))
        vectors = searchable.vectors_for(
            db, model, {row.content_hash for row, _ in fresh if row.error is None}
        )
        width = 2 * matrix.dim
        for row, live in fresh:
            image_id, content_hash = row.image_id, row.content_hash
            if live is not None:
                kills.append(image_id)
            blob = vectors.get(content_hash) if row.error is None else None
            if blob is None or len(blob) != width:
                if image_id not in matrix.absent:
                    absent_add.append(image_id)
                continue
            if image_id in matrix.absent:
                absent_del.append(image_id)
            add_ids.append(image_id)
            add_taken.append(_seconds(row.taken_at))
            add_stamps.append(row.indexed_at)
            add_paths.append(row.path)
            add_hashes.append(content_hash)
        add_vectors = np.frombuffer(b"".join(vectors[h] for h in add_hashes), "<f2")
        batch = Batch(
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
        if after.live + len(after.absent) != searchable.image_count(db):
            present = searchable.image_ids(db)
            live_ids = np.asarray([after.id_at(r) for r in after.live_rows()], "<i8")
            gone = np.setdiff1d(live_ids, present)
            batch.kills = np.concatenate([batch.kills, gone]).astype("<i8")
            stale = np.setdiff1d(np.fromiter(after.absent, "<i8", len(after.absent)), present)
            batch.absent_del = np.concatenate([batch.absent_del, stale]).astype("<i8")
    return batch


def _needs_compaction(matrix: VectorMatrix) -> bool:
    changed = len(matrix.tail_ids) + int(matrix.base_dead.sum())
    return changed >= COMPACT_MIN_ROWS and changed > COMPACT_SHARE * max(matrix.base.rows, 1)


def catch_up(db: CatalogDB, model: str, matrix: VectorMatrix) -> VectorMatrix | None:
    """`matrix` brought up to the catalog's generation by appending one journal batch; None when
    it cannot be (no file, journal not writable, or compaction is due): then rebuild."""
    if matrix.source is None or db.generation() == matrix.generation:
        return matrix if matrix.source is not None else None
    journal = delta_path(matrix.source)
    if not writable(journal.parent):  # a folder made read-only: the rebuild stays in memory
        return None
    try:
        with journal_lock(journal) as handle:
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
            if _needs_compaction(updated):
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


def load_matrix(db: CatalogDB, model: str, *, lazy_index: bool = False) -> VectorMatrix:
    """The up-to-date matrix of `model`: from this process's cache, from disk, caught up, or rebuilt.
    lazy_index: a large base's index is checked by its files only, not opened (ann.prepare)."""
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
        elif matrix.base.rows >= ann_module.ANN_MIN_ROWS and not _has_index(matrix.base, lazy_index):
            # A large base without its index (a crash mid-build, or usearch installed since).
            if ann_module.available() and matrix.source is not None:
                _build_ann(target, matrix.base)
        _cache[key] = matrix
        return matrix


def _has_index(base: Base, lazy: bool) -> bool:
    """The base's index opens (lazy: its files are there, the graph left to the first search
    that needs it: opening it reads the whole file, which the end of an index run must not pay)."""
    if lazy and not base.ann_checked:
        return base.source is not None and ann_module.on_disk(base.source, base.base_id, base.rows)
    return base.ann_index() is not None


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
