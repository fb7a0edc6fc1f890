"""Bring the catalog up to date for a set of folders: new, changed, moved, duplicated and gone files.

The pipeline, for the files whose (size, mtime_ns) differ from the catalog or that have no vector
for this model yet:

    pool threads:  content hash -> known hash? header only : decode (JPEG draft) -> preprocess
    main thread:   results in order -> batch -> encode_pixels -> one SQLite transaction per batch

At most `2 * batch_size + workers` files are in flight, so memory stays flat on any folder size,
and the pool decodes the next batch while the main thread runs the model on this one. Each batch
commits its image rows, vectors and generation bump together: an interrupt loses at most the batch
in progress, and the next run starts where this one stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixgrep.catalog.db import CatalogDB, ImageRow, shown_path
from pixgrep.catalog.scan import FileEntry, scan
from pixgrep.errors import PixgrepError
from pixgrep.images.decode import ImageDecodeError, ImageInfo, decode_file, raw_supported, read_image_info
from pixgrep.models.base import Encoder
from pixgrep.records import ImageRecord, IndexSummary

HEAD_BYTES = 1 << 20  # the content hash reads the first MiB ...
TAIL_BYTES = 1 << 10  # ... and the last KiB, plus the size
DRAFT_FACTOR = 2  # JPEG draft decodes at >= 2x the model's input side (docs/catalog.md: why 2)
MAX_ROWS_PER_BATCH = 512  # reuse-only runs (renames) still commit regularly
# Decode threads run this much "nicer" than the model's threads: when both want a core, the model
# gets it, so decoding fills the gaps instead of stretching every batch (docs/catalog.md).
DECODE_NICENESS = 5

Warn = Callable[[str, str], None]
log = logging.getLogger(__name__)


def content_hash(path: str, size: int) -> str:
    """blake2b-128 of the size, the first MiB and the last KiB: cheap on any file size.

    Two files that differ only in the middle of a file above 1 MiB with the same size would share
    a hash (and a vector); edits in practice rewrite the header (EXIF) or the whole compressed
    stream, so the trade is worth the I/O it saves on big photos.
    """
    digest = hashlib.blake2b(size.to_bytes(8, "little"), digest_size=16)
    with open(path, "rb") as f:
        if size <= HEAD_BYTES + TAIL_BYTES:
            digest.update(f.read())
        else:
            digest.update(f.read(HEAD_BYTES))
            f.seek(size - TAIL_BYTES)
            digest.update(f.read(TAIL_BYTES))
    return digest.hexdigest()


@dataclass
class _Job:
    entry: FileEntry
    content_hash: str | None  # known when only the vector is missing (another model)


@dataclass
class _Result:
    entry: FileEntry
    content_hash: str | None
    info: ImageInfo | None = None
    pixels: np.ndarray | None = None  # set when the file must go through the model
    error: str | None = None  # why the file was skipped
    record: bool = True  # store the error so the file is not retried until it changes

    def row(self) -> ImageRow:
        e, i = self.entry, self.info
        return (
            e.path,
            e.size,
            e.mtime_ns,
            self.content_hash or "",
            i.width if i else None,
            i.height if i else None,
            i.format if i else None,
            i.taken_at if i else None,
            self.error,
        )


def _lower_thread_priority() -> None:
    """Lower the calling pool thread's priority (Linux schedules threads, so this is per thread)."""
    if not DECODE_NICENESS or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + DECODE_NICENESS)
    except OSError:  # not allowed (some containers): run at normal priority
        pass


class _Worker:
    """What a pool thread does for one file. Never raises: every failure becomes a skipped result."""

    def __init__(self, encoder: Encoder, known: set[str], draft_size: int):
        self.encoder = encoder
        self.known = known  # hashes that have (or are about to have) a vector: read-only here
        self.draft_size = draft_size

    def __call__(self, job: _Job) -> _Result:
        entry = job.entry
        try:
            digest = job.content_hash or content_hash(entry.path, entry.size)
        except FileNotFoundError:
            return _Result(entry, None, error="vanished while indexing", record=False)
        except OSError as exc:
            return _Result(entry, None, error=f"cannot read: {exc.strerror or exc}", record=False)
        try:
            if digest in self.known:  # moved, renamed or duplicated: no decode, no model
                try:
                    return _Result(entry, digest, info=read_image_info(entry.path))
                except ImageDecodeError:
                    return _Result(entry, digest)  # decodable before (it has a vector): keep it
            image, info = decode_file(entry.path, draft_size=self.draft_size)
            pixels = np.asarray(self.encoder.preprocess_for_index(image), dtype=np.float32)
            return _Result(entry, digest, info=info, pixels=pixels)
        except ImageDecodeError as exc:
            return _Result(entry, digest, error=str(exc))
        except Exception as exc:  # a preprocess that chokes on an odd mode must not stop the run
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return _Result(entry, digest, error=f"cannot prepare for the model: {reason}")


def validate_roots(roots: Sequence[Path]) -> list[str]:
    """Absolute, resolved, de-duplicated folder or file paths; PixgrepError for a missing path.

    A file is resolved through its folder and keeps its own name, as the walk stores files found
    in a folder, so the same picture gets one row whichever way it was named.
    """
    if not roots:
        raise PixgrepError("no folder to index")
    resolved: list[str] = []
    for root in roots:
        path = Path(os.path.expanduser(root))
        if not path.exists():
            raise PixgrepError(f"no such folder or file: {root}")
        if path.is_dir():
            text = str(path.resolve())
        elif path.is_file():
            text = str(path.absolute().parent.resolve() / path.name)
        else:
            raise PixgrepError(f"not a folder or a file: {root}")
        if text not in resolved:
            resolved.append(text)
    return resolved


def _default_warn(path: str, reason: str) -> None:
    log.warning("%s: %s", shown_path(path), reason)


class _Progress:
    """tqdm on stderr when it is a terminal (and progress=True), a callable, or nothing."""

    def __init__(self, progress: bool | Callable[[IndexSummary], None], summary: IndexSummary):
        self.summary = summary
        self.callback = progress if callable(progress) else None
        self.bar = None
        self.terminal = progress is True and sys.stderr.isatty()

    def start(self, total: int) -> None:
        if self.terminal and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="img", file=sys.stderr, dynamic_ncols=True, leave=False)
            self.refresh()

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def refresh(self) -> None:
        if self.bar is not None:
            s = self.summary
            self.bar.set_postfix_str(
                f"found {s.found}, encoded {s.encoded}, reused {s.reused}, skipped {s.skipped}", refresh=True
            )
        if self.callback is not None:
            self.callback(self.summary)

    def warn(self, warn: Warn) -> Warn:
        def write(path: str, reason: str) -> None:
            if self.bar is not None:  # print above the bar instead of through it
                self.bar.clear()
                warn(path, reason)
                self.bar.refresh()
            else:
                warn(path, reason)

        return write

    def abort(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.terminal = False

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.terminal:
            s = self.summary
            rate = s.encoded / s.seconds if s.seconds > 0 else 0.0
            log.info(
                f"{s.found} images under the folders: {s.encoded} encoded ({rate:.1f}/s), "
                f"{s.reused} reused, {s.skipped} skipped, {s.removed} removed in {s.seconds:.1f} s"
            )


def index_roots(
    db: CatalogDB,
    encoder: Encoder,
    roots: list[Path],
    *,
    exclude: Sequence[str] = (),
    include_hidden: bool = False,
    progress: bool | Callable[[IndexSummary], None] = False,
    batch_size: int = 32,
    workers: int | None = None,
    on_warning: Warn | None = None,
) -> IndexSummary:
    """Index every image under `roots` that is new or changed; drop rows of files that are gone.

    progress: True shows a bar on stderr when it is a terminal; a callable gets the running summary
    after every committed batch. on_warning(path, reason) reports each skipped file once (default:
    one `pixgrep: warning: PATH: reason` line on stderr).
    """
    started = time.monotonic()
    summary = IndexSummary()
    folders = validate_roots(roots)
    ticker = _Progress(progress, summary)
    warn = ticker.warn(on_warning or _default_warn)
    with writing(db, warn):
        return _index_locked(
            db, encoder, folders, started, summary, ticker, warn, exclude, include_hidden, batch_size, workers
        )


@contextlib.contextmanager
def writing(db: CatalogDB, warn: Warn) -> Iterator[None]:
    """What every index run (local or Ray) holds while it writes: a writable, sound catalog that
    no other index run is writing."""
    if db.read_only:
        raise PixgrepError(
            f"catalog {shown_path(db.path)}: it is read-only: it can be searched (-n) but not indexed into"
        )
    with index_lock(db, warn):
        # Writing into a damaged file would bury the damage under new pages: refuse (one read of the file).
        db.check_integrity()
        yield


@contextlib.contextmanager
def index_lock(db: CatalogDB, warn: Warn) -> Iterator[None]:
    """One index run at a time per catalog, across processes (an flock on `<catalog>.lock`).

    A second run waits, saying so, and then finds the first one's work in the catalog: it encodes
    only what is left instead of everything again. The kernel drops the lock with the process,
    so a killed run never leaves a stale lock. Without fcntl (Windows) runs are not serialised.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    lock_path = f"{db.path}.lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # cannot create it beside the catalog: index unserialised rather than not at all
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            warn(
                shown_path(db.path),
                f"another index run (pid {holder}) is writing this catalog; waiting for it to finish, "
                "then indexing only what it left",
            )
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _index_locked(
    db: CatalogDB,
    encoder: Encoder,
    folders: list[str],
    started: float,
    summary: IndexSummary,
    ticker: _Progress,
    warn: Warn,
    exclude: Sequence[str],
    include_hidden: bool,
    batch_size: int,
    workers: int | None,
) -> IndexSummary:
    model = encoder.model_id

    # 1. Walk, and compare with what the catalog holds under the same folders.
    plan = plan_index(
        db, model, [Path(f) for f in folders], summary, warn, exclude=exclude, include_hidden=include_hidden
    )
    known, jobs = plan.known, plan.jobs
    writer = BatchWriter(db, model, summary, ticker, started)

    # 2. Hash, decode and preprocess in the pool; encode and commit in batches here.
    side = max(encoder.image_size)
    worker = _Worker(encoder, known, draft_size=DRAFT_FACTOR * side)
    threads = workers or max(1, min(8, os.cpu_count() or 1))
    in_flight_cap = 2 * batch_size + threads
    batch: list[_Result] = []
    pending: set[str] = set()  # hashes whose vector this batch will write

    def flush() -> None:
        to_encode = [r for r in batch if r.pixels is not None]
        vectors: dict[str, np.ndarray] = {}
        if to_encode:
            stack = np.stack([r.pixels for r in to_encode if r.pixels is not None])
            out = np.asarray(encoder.encode_pixels(stack), np.float32)
            if out.shape != (len(to_encode), encoder.dim):
                raise PixgrepError(f"the model returned {out.shape} vectors for {len(to_encode)} images")
            vectors = {r.content_hash or "": v for r, v in zip(to_encode, out, strict=True)}
        writer.commit(batch, vectors)
        batch.clear()
        pending.clear()

    ticker.start(len(jobs))
    pool = ThreadPoolExecutor(
        max_workers=threads, thread_name_prefix="pixgrep-decode", initializer=_lower_thread_priority
    )
    window: deque[Future[_Result]] = deque()
    todo = iter(jobs)
    with warnings.catch_warnings():
        # Pillow's UserWarnings (corrupt EXIF, truncated chunks, palette transparency) would add
        # stray lines; a file that really fails gets its own warning. Only this thread enters the
        # context, and the pool is shut down inside it, so the pool threads see one stable filter list.
        warnings.simplefilter("ignore", UserWarning)
        try:
            while True:
                while len(window) < in_flight_cap:
                    job = next(todo, None)
                    if job is None:
                        break
                    window.append(pool.submit(worker, job))
                if not window:
                    break
                result = window.popleft().result()
                ticker.step()
                digest = result.content_hash
                if result.error is not None:
                    warn(result.entry.path, result.error)
                elif result.pixels is not None and (digest in pending or digest in known):
                    result.pixels = None  # a duplicate decoded before its twin's vector was known
                elif result.pixels is not None and digest is not None:
                    pending.add(digest)
                    known.add(digest)  # duplicates submitted from now on skip the decode
                batch.append(result)
                encodes = sum(1 for r in batch if r.pixels is not None)
                if encodes >= batch_size or len(batch) >= MAX_ROWS_PER_BATCH:
                    flush()
            flush()
        except BaseException:
            ticker.abort()  # leave the terminal clean on Ctrl-C
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    # 3. Rows of files that are gone, including those deleted while this run went.
    finish_index(db, plan, summary, writer.committed)
    # 4. Photo metadata (GPS, camera, keywords, XMP sidecars): from headers, nothing decoded or encoded.
    from pixgrep.catalog.metadata import refresh_under

    refresh_under(db, plan.folders, on_warning=warn)
    summary.seconds = time.monotonic() - started
    if summary.removed:
        ticker.refresh()
    ticker.close()
    return summary


class BatchWriter:
    """Commits batches: image rows, new vectors and a generation bump in one transaction each.

    Shared by the local pipeline below and the Ray runner (catalog/ray_ingest.py), so both store
    the same rows and count the same way. Counts only what was committed: an interrupt never makes
    the summary claim work that was lost.
    """

    def __init__(self, db: CatalogDB, model: str, summary: IndexSummary, ticker: _Progress, started: float):
        self.db, self.model, self.summary, self.ticker, self.started = db, model, summary, ticker, started
        self.committed: list[str] = []  # paths this run stored: checked again at the end (finish_index)

    def commit(self, results: Sequence[_Result], vectors: dict[str, np.ndarray]) -> None:
        """`vectors`: the new vectors, by content hash; every other result without an error reused one."""
        rows = [r.row() for r in results if r.record]
        if rows or vectors:
            self.db.write_batch(rows, vectors, self.model)
            self.committed.extend(row[0] for row in rows)
        s = self.summary
        errors = sum(1 for r in results if r.error is not None)
        s.encoded += len(vectors)
        s.reused += len(results) - errors - len(vectors)
        s.skipped += errors
        s.seconds = time.monotonic() - self.started
        self.ticker.refresh()


@dataclass
class IndexPlan:
    """What the walk and the diff against the catalog found: the files that need work."""

    folders: list[str]
    entries: list[FileEntry]
    stored: dict[str, ImageRecord]
    known: set[str]  # content hashes with a vector for the model
    jobs: list[_Job]


def plan_index(
    db: CatalogDB,
    model: str,
    roots: list[Path],
    summary: IndexSummary,
    warn: Warn,
    *,
    exclude: Sequence[str] = (),
    include_hidden: bool = False,
) -> IndexPlan:
    """Walk `roots` and compare with the catalog: unchanged files drop out, the rest become jobs."""
    folders = validate_roots(roots)
    entries = list(scan(folders, exclude=exclude, include_hidden=include_hidden, on_warning=warn))
    summary.found = len(entries)
    stored: dict[str, ImageRecord] = {}
    for folder in folders:
        stored.update(db.images_under(folder) if os.path.isdir(folder) else db.images_by_path([folder]))
    known = db.hashes_with_vectors(model)
    raw_ok = raw_supported()
    jobs: list[_Job] = []
    raw_skipped = 0
    for entry in entries:
        row = stored.get(entry.path)
        if row is not None and row.size == entry.size and row.mtime_ns == entry.mtime_ns:
            if row.error is not None:  # known unreadable, unchanged: reported when it was found
                summary.skipped += 1
                continue
            if row.content_hash in known:  # unchanged and encoded for this model
                continue
            jobs.append(_Job(entry, row.content_hash))
        elif entry.raw and not raw_ok:
            raw_skipped += 1
        else:
            jobs.append(_Job(entry, None))
    if raw_skipped:
        summary.skipped += raw_skipped
        warn(
            folders[0] if len(folders) == 1 else "RAW files",
            f"{raw_skipped} camera RAW file(s) skipped: install the raw extra to index them "
            "(pip install 'pixgrep[raw]')",
        )
    return IndexPlan(folders, entries, stored, known, jobs)


def finish_index(
    db: CatalogDB, plan: IndexPlan, summary: IndexSummary, committed: Sequence[str] = ()
) -> None:
    """Drop the rows under the walked folders whose files are gone (a file still on disk but
    excluded or hidden this time keeps its row). Last, so a rename found above reused the vector
    first. Files deleted while the run went (stored before, or `committed` by this run) are
    checked too, so they do not linger until the next run. Then the vectors of imported rows that
    this run replaced (catalog/parquet.py)."""
    seen = {e.path for e in plan.entries}
    candidates = dict.fromkeys([*plan.stored, *committed])
    # An object-store URI (s3://...) that the walk listed is there; a local path is checked on disk.
    gone = [p for p in candidates if not os.path.lexists(p) and (os.path.isabs(p) or p not in seen)]
    summary.removed = db.remove_images(gone)
    db.drop_replaced_imports()
