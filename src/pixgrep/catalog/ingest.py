"""Bring the catalog up to date for a set of folders: new, changed, moved, duplicated and gone files.

The pipeline (the Ray runner, catalog/ray_ingest.py, shares every step but the middle one):

    plan_index:    walk (catalog/scan.py; object-store prefixes: catalog/uri_scan.py) and diff
                   against the catalog's rows -> FileJob for each new, changed or vector-less file
    pool threads:  prepare_file (catalog/prepare.py): content hash -> vector stored? header only
                   : decode (JPEG draft) -> preprocess
    main thread:   results in order -> batch -> encode_pixels -> BatchWriter: one SQLite
                   transaction per batch
    finish_index:  drop the rows of files that are gone

Which hashes already have a vector is asked of SQLite for the hashes the run meets
(`KnownVectors`), never loaded whole. At most `2 * batch_size + workers` files are in flight, so
memory stays flat on any folder size, and the pool decodes the next batch while the main thread
runs the model on this one. Each batch commits its image rows, vectors and generation bump
together: an interrupt loses at most the batch in progress, and the next run starts where this
one stopped.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixgrep.catalog import words
from pixgrep.catalog.db import CatalogDB, shown_path
from pixgrep.catalog.paths import short_path
from pixgrep.catalog.prepare import DRAFT_FACTOR, FileJob, Prepared, content_hash, prepare_file
from pixgrep.catalog.scan import FileEntry, scan
from pixgrep.errors import PixgrepError
from pixgrep.images.decode import raw_supported
from pixgrep.images.storage import is_uri
from pixgrep.models.base import Encoder
from pixgrep.records import ImageRecord, IndexSummary

__all__ = [
    "DRAFT_FACTOR",
    "BatchWriter",
    "IndexPlan",
    "KnownVectors",
    "Progress",
    "content_hash",
    "default_warn",
    "finish_index",
    "index_roots",
    "plan_index",
    "validate_roots",
    "writing",
]

MAX_ROWS_PER_BATCH = 512  # reuse-only runs (renames) still commit regularly
# Decode threads run this much "nicer" than the model's threads: when both want a core, the model
# gets it, so decoding fills the gaps instead of stretching every batch (docs/catalog.md).
DECODE_NICENESS = 5

Warn = Callable[[str, str], None]
log = logging.getLogger(__name__)


class KnownVectors:
    """Which content hashes have a vector for the model: SQLite is asked about the hashes a run
    meets (batched primary-key lookups, db.hashes_with_vectors_among), and the answers and the
    hashes this run writes are remembered. Pool threads ask too, so every use of the catalog's
    connection during a run goes through `lock` (BatchWriter takes it to commit)."""

    def __init__(self, db: CatalogDB, model: str):
        self.db, self.model = db, model
        self.lock = threading.Lock()
        self._with: set[str] = set()
        self._without: set[str] = set()

    def learn(self, hashes: Iterable[str]) -> None:
        """Ask once about all of `hashes` (a batch), before testing them one by one."""
        ask = {h for h in hashes if h and h not in self._with and h not in self._without}
        if not ask:
            return
        with self.lock:
            found = self.db.hashes_with_vectors_among(self.model, ask)
        self._with.update(found)
        self._without.update(ask - found)

    def __contains__(self, digest: object) -> bool:
        if not isinstance(digest, str) or not digest:
            return False
        if digest not in self._with and digest not in self._without:
            self.learn([digest])
        return digest in self._with

    def add(self, digest: str) -> None:
        """A hash whose vector this run stores (or is about to): its duplicates reuse it."""
        self._with.add(digest)
        self._without.discard(digest)

    def update(self, hashes: Iterable[str]) -> None:
        for digest in hashes:
            self.add(digest)


def _lower_thread_priority() -> None:
    """Lower the calling pool thread's priority (Linux schedules threads, so this is per thread)."""
    if not DECODE_NICENESS or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + DECODE_NICENESS)
    except OSError:  # not allowed (some containers): run at normal priority
        pass


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


def default_warn(path: str, reason: str) -> None:
    log.warning("%s: %s", short_path(path), reason)


class Progress:
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
    wait: bool = True,
) -> IndexSummary:
    """Index every image under `roots` that is new or changed; drop rows of files that are gone.
    wait=False: when another index run is writing the catalog, raise IndexRunBusy at once instead
    of waiting for it (a search that indexes first then searches what is there).

    progress: True shows a bar on stderr when it is a terminal; a callable gets the running summary
    after every committed batch. on_warning(path, reason) reports each skipped file once (default:
    one `pixgrep: warning: PATH: reason` line on stderr).
    """
    started = time.monotonic()
    summary = IndexSummary()
    folders = validate_roots(roots)
    ticker = Progress(progress, summary)
    warn = ticker.warn(on_warning or default_warn)
    with writing(db, warn, wait=wait):
        return _index_locked(
            db, encoder, folders, started, summary, ticker, warn, exclude, include_hidden, batch_size, workers
        )


@contextlib.contextmanager
def writing(db: CatalogDB, warn: Warn, *, wait: bool = True) -> Iterator[None]:
    """What every index run (local or Ray) holds while it writes: a writable, sound catalog that
    no other index run is writing."""
    if db.read_only:
        raise PixgrepError(
            f"catalog {shown_path(db.path)}: it is read-only: it can be searched (-n) but not indexed into"
        )
    with index_lock(db, warn, wait=wait):
        # Writing into a damaged file would bury the damage under new pages: refuse (one read of the file).
        whole = db.check_integrity()
        words.probe(db, whole=whole)  # a damaged word index is built again before a trigger meets it
        yield


class IndexRunBusy(PixgrepError):
    """Another index run is writing this catalog, and the caller asked not to wait for it."""


@contextlib.contextmanager
def index_lock(db: CatalogDB, warn: Warn, *, wait: bool = True) -> Iterator[None]:
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
            if not wait:
                raise IndexRunBusy(f"another index run (pid {holder}) is writing this catalog") from None
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
    ticker: Progress,
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
    writer = BatchWriter(db, model, summary, ticker, started, known.lock)

    # 2. Hash, decode and preprocess in the pool; encode and commit in batches here.
    prepare = functools.partial(
        prepare_file,
        preprocess=encoder.preprocess_for_index,
        draft_size=DRAFT_FACTOR * max(encoder.image_size),
        has_vector=known.__contains__,  # moved, renamed or duplicated: no decode, no model
    )
    threads = workers or max(1, min(8, os.cpu_count() or 1))
    in_flight_cap = 2 * batch_size + threads
    batch: list[Prepared] = []
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
    window: deque[Future[Prepared]] = deque()
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
                    window.append(pool.submit(prepare, job))
                if not window:
                    break
                result = window.popleft().result()
                ticker.step()
                digest = result.content_hash
                if result.skip is not None:
                    warn(result.entry.path, result.skip.reason)
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
    # 5. Once per catalog: fingerprints of pictures stored before it kept them (duplicate folding).
    from pixgrep.catalog.fingerprints import fill_missing

    fill_missing(db, progress=ticker.terminal)
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

    def __init__(
        self,
        db: CatalogDB,
        model: str,
        summary: IndexSummary,
        ticker: Progress,
        started: float,
        lock: threading.Lock,
    ):
        self.db, self.model, self.summary, self.ticker, self.started = db, model, summary, ticker, started
        self.lock = lock  # KnownVectors.lock: pool threads read through the same connection
        self.committed: list[str] = []  # paths this run stored: checked again at the end (finish_index)

    def commit(self, results: Sequence[Prepared], vectors: dict[str, np.ndarray]) -> None:
        """`vectors`: the new vectors, by content hash; every other result without a skip reused one."""
        rows = [r.row() for r in results if r.stored]
        prints: dict[str, bytes | None] = {
            r.content_hash: r.fingerprint for r in results if r.content_hash and r.fingerprint
        }
        if rows or vectors:
            with self.lock:
                self.db.write_batch(rows, vectors, self.model, prints)
            self.committed.extend(row[0] for row in rows)
        s = self.summary
        errors = sum(1 for r in results if r.skip is not None)
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
    known: KnownVectors  # which content hashes have a vector for the model
    jobs: list[FileJob]


def plan_index(
    db: CatalogDB,
    model: str,
    roots: Sequence[Path | str],
    summary: IndexSummary,
    warn: Warn,
    *,
    exclude: Sequence[str] = (),
    include_hidden: bool = False,
) -> IndexPlan:
    """Walk `roots` and compare with the catalog: unchanged files drop out, the rest become jobs.

    Local folders and files are walked (catalog/scan.py); object-store prefixes (s3://..., only a
    Ray run reads them) are listed (catalog/uri_scan.py) and diffed against the rows stored under
    the prefix, the same way."""
    uris = [str(root).rstrip("/") for root in roots if is_uri(str(root))]
    paths = [Path(root) for root in roots if not is_uri(str(root))]
    local = validate_roots(paths) if paths else []
    from pixgrep.catalog.walk_warnings import OncePerCatalog

    once = OncePerCatalog(db, warn)  # unreadable entries: said by the first walk that meets them
    entries = list(scan(local, exclude=exclude, include_hidden=include_hidden, on_warning=once))
    once.save()
    stored: dict[str, ImageRecord] = {}
    for folder in local:
        under = db.images_under(folder) if os.path.isdir(folder) else db.images_by_path([folder])
        if _unmounted(db, folder, under):
            warn(
                folder,
                f"the folder is empty but the catalog holds {len(under)} image(s) there; kept them "
                "(a drive not mounted?). If they were deleted, index the folder above it to drop them",
            )
            continue
        stored.update(under)
    if uris:
        from pixgrep.catalog.uri_scan import scan_uri

        for uri in uris:
            entries += scan_uri(uri, exclude=exclude, include_hidden=include_hidden)
            stored.update(db.images_under(uri))
            stored.update(db.images_by_path([uri]))
    summary.found = len(entries)
    unchanged = {}
    for entry in entries:
        row = stored.get(entry.path)
        if row is not None and row.size == entry.size and row.mtime_ns == entry.mtime_ns:
            unchanged[entry.path] = row
    known = KnownVectors(db, model)
    known.learn(row.content_hash for row in unchanged.values() if row.error is None)
    raw_ok = raw_supported()
    jobs: list[FileJob] = []
    raw_skipped = 0
    for entry in entries:
        row = unchanged.get(entry.path)
        if row is not None:
            if row.error is not None:  # known unreadable, unchanged: reported when it was found
                summary.skipped += 1
                continue
            if row.content_hash in known:  # unchanged and encoded for this model
                continue
            jobs.append(FileJob(entry, row.content_hash))
        elif entry.raw and not raw_ok:
            raw_skipped += 1
        else:
            jobs.append(FileJob(entry, None))
    if raw_skipped:
        summary.skipped += raw_skipped
        warn(
            local[0] if len(local) == 1 else "RAW files",
            f"{raw_skipped} camera RAW file(s) skipped: install the raw extra to index them "
            "(pip install 'pixgrep[raw]')",
        )
    return IndexPlan([*local, *uris], entries, stored, known, jobs)


def folder_device(folder: str) -> int:
    """The device a folder is on: a mounted drive's, or (unmounted) the mount point's parent's."""
    return os.stat(folder).st_dev


def _unmounted(db: CatalogDB, folder: str, under: dict) -> bool:
    """Is `folder` what an unmounted drive leaves behind: empty (no entry at all) while the catalog
    holds images there, and on another device than when it last had entries (or never seen with
    them)? Its rows are then kept, not taken as deleted. A folder emptied on its own device is not."""
    try:
        device = str(folder_device(folder))
        with os.scandir(folder) as entries:
            empty = next(entries, None) is None
    except OSError:  # a file root, or unreadable: the walk says what is wrong
        return False
    key = "folder_device:" + hashlib.sha1(os.fsencode(folder)).hexdigest()
    if not empty:
        if not db.read_only and db.get_meta(key) != device:
            db.set_meta(key, device)
        return False
    return bool(under) and db.get_meta(key) != device


def finish_index(
    db: CatalogDB, plan: IndexPlan, summary: IndexSummary, committed: Sequence[str] = ()
) -> None:
    """Drop the rows under the walked folders whose files are gone (a file still on disk but
    excluded or hidden this time keeps its row). Last, so a rename found above reused the vector
    first. Files deleted while the run went (stored before, or `committed` by this run) are
    checked too, so they do not linger until the next run (the vectors of imported rows a run
    replaces go in the transaction that replaces them)."""
    seen = {e.path for e in plan.entries}
    candidates = dict.fromkeys([*plan.stored, *committed])
    # An object-store URI (s3://...) that the walk listed is there; a local path is checked on disk.
    gone = [p for p in candidates if not os.path.lexists(p) and (os.path.isabs(p) or p not in seen)]
    summary.removed = db.remove_images(gone)
