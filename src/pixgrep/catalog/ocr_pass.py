"""The words step of an index run: read text in new and changed pictures (when the catalog is
indexed with OCR), then bring the word index up to date (file and folder names, metadata, text).

Runs after the images are stored, under the same index lock. Text is read once per content hash:
a renamed, moved or copied file is not read again, a changed one is. Decoding (JPEG draft at the
OCR cap) and OCR run in a pool of threads, one engine on one core each; results commit every
COMMIT_EVERY pictures together with their word index rows, so Ctrl-C loses at most that many and
the next run resumes.

Object-store rows (paths that are URIs: s3://, gs://, file://, as a `--ray` run of a prefix stores
them) are read too when the run's roots name their prefix: the object is fetched whole through
images/storage.py, at most OBJECT_MAX_BYTES within OBJECT_TIMEOUT_S (a bigger one is stored without
text, as a picture OCR cannot read). An object that cannot be fetched is one warning and is not
stored, so the next run tries again; after MAX_OBJECT_FAILURES such failures in one run the
remaining objects wait for the next run (a store that is down costs seconds, not one timeout per
object).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pixgrep.catalog import words
from pixgrep.catalog.db import CatalogDB
from pixgrep.images.decode import ImageDecodeError, decode_file
from pixgrep.images.ocr import OCR_MAX_SIDE, PageText, TextReader, require_ocr
from pixgrep.images.storage import TooLarge, is_uri, read_bytes

COMMIT_EVERY = 16
MAX_THREADS = 4  # OCR engines at once, one core each
# One object-store read: the caps of the server's and the terminal previews' reads of the same rows.
OBJECT_MAX_BYTES = 64 * 1024 * 1024
OBJECT_TIMEOUT_S = 15.0
MAX_OBJECT_FAILURES = 3  # objects that could not be fetched before a run stops fetching more
Warn = Callable[[str, str], None]
log = logging.getLogger(__name__)


@dataclass
class TextSummary:
    read: int = 0  # pictures OCR looked at in this run
    with_text: int = 0  # ... in which it read some text
    text_free: int = 0  # ... skipped after the detector found no text box
    failed: int = 0  # ... it could not read (stored without text)
    unreachable: int = 0  # objects that could not be fetched (not stored: the next run tries again)
    seconds: float = 0.0  # decode + OCR time of this step

    def to_json(self) -> dict:
        return {**self.__dict__, "seconds": round(self.seconds, 3)}


def _images_under(db: CatalogDB, roots: Iterable[str]) -> dict[str, tuple[str, int, int]]:
    """content hash -> (path, width, height) of one decodable image each, below `roots`: local
    folders or files, or object-store prefixes or objects (URIs)."""
    out: dict[str, tuple[str, int, int]] = {}
    for root in roots:
        if is_uri(root):  # a prefix or one object: the catalog says which
            found = {**db.images_under(root.rstrip("/")), **db.images_by_path([root])}
        else:
            found = db.images_under(root) if os.path.isdir(root) else db.images_by_path([root])
        for record in found.values():
            readable = is_uri(record.path) if is_uri(root) else os.path.isabs(record.path)
            if record.error is None and record.content_hash and readable:
                out.setdefault(record.content_hash, (record.path, record.width or 0, record.height or 0))
    return out


def words_step(
    db: CatalogDB,
    roots: Sequence[str],
    *,
    ocr: bool | None = None,
    progress: bool = False,
    warn: Warn | None = None,
    reader: TextReader | None = None,
) -> TextSummary | None:
    """ocr: True turns OCR on for this catalog (remembered), False off, None as remembered.
    Returns what OCR did, or None when OCR is off. The word index is synced either way."""
    if ocr is not None and not db.read_only and ocr != words.ocr_enabled(db):
        if ocr:
            require_ocr()
        words.set_ocr(db, ocr)
    summary = None
    if words.ocr_enabled(db) and not db.read_only:
        summary = read_texts(db, roots, progress=progress, warn=warn, reader=reader)
        words.prune_texts(db)
    words.sync(db)
    return summary


def read_texts(
    db: CatalogDB,
    roots: Sequence[str],
    *,
    progress: bool = False,
    warn: Warn | None = None,
    reader: TextReader | None = None,
) -> TextSummary:
    """OCR every picture under `roots` whose content has not been read yet."""
    summary = TextSummary()
    done = words.hashes_read(db)
    todo = [(digest, *info) for digest, info in _images_under(db, roots).items() if digest not in done]
    if not todo:
        return summary
    # One engine per thread, each on one core: ONNX Runtime's multi-threaded runs spin-wait,
    # costing twice the CPU time for the same pictures on a busy machine (docs/words.md).
    local = threading.local()

    def engine() -> TextReader:
        if reader is not None:
            return reader
        if not hasattr(local, "reader"):
            local.reader = TextReader(threads=1)
        return local.reader

    warn = warn or (lambda path, reason: log.warning("%s: %s", path, reason))
    bar = _bar(len(todo)) if progress and sys.stderr.isatty() else None
    started = time.perf_counter()
    pending: list[words.StoredText] = []
    threads = max(1, min(MAX_THREADS, os.cpu_count() or 1))
    fetches = _Fetches()
    try:
        with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=threads) as pool:
            warnings.simplefilter("ignore", UserWarning)  # Pillow's noise on odd headers
            for outcome in pool.map(lambda job: _read_one(engine(), fetches, *job), todo):
                stored = _count(outcome, summary, warn, fetches)
                if stored is not None:
                    pending.append(stored)
                if bar is not None:
                    bar.update(1)
                if len(pending) >= COMMIT_EVERY:
                    words.store_texts(db, pending)
                    pending.clear()
            words.store_texts(db, pending)
    finally:
        if bar is not None:
            bar.close()
        summary.seconds = time.perf_counter() - started
    return summary


class _Fetches:
    """Object-store fetches of one run: how many failed; past MAX_OBJECT_FAILURES none is tried."""

    def __init__(self) -> None:
        self.failures = 0
        self.told = False  # that the rest wait for the next run
        self.lock = threading.Lock()

    def allowed(self) -> bool:
        with self.lock:
            return self.failures < MAX_OBJECT_FAILURES

    def failed(self) -> None:
        with self.lock:
            self.failures += 1


@dataclass
class _Outcome:
    digest: str
    path: str
    page: PageText | None = None
    problem: str | None = None  # why the file could not be decoded
    failure: str | None = None  # why OCR could not read the decoded picture
    unreachable: str | None = None  # why the object could not be fetched ("" when not tried)


def _fetch(fetches: _Fetches, digest: str, path: str) -> bytes | _Outcome:
    """An object's bytes, or the outcome of a failed fetch. Never raises."""
    if not fetches.allowed():
        return _Outcome(digest, path, unreachable="")
    try:
        return read_bytes(path, max_bytes=OBJECT_MAX_BYTES, timeout=OBJECT_TIMEOUT_S)
    except TooLarge as exc:  # for good: stored without text, not fetched again until it changes
        return _Outcome(digest, path, failure=str(exc))
    except FileNotFoundError:
        reason = "the object is gone"
    except TimeoutError:
        reason = f"the store did not answer in {OBJECT_TIMEOUT_S:g} s"
    except OSError as exc:  # unreachable, refused, no pyarrow
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    fetches.failed()
    return _Outcome(digest, path, unreachable=reason)


def _read_one(
    reader: TextReader, fetches: _Fetches, digest: str, path: str, width: int, height: int
) -> _Outcome:
    """Fetch (an object), decode and read one picture (in a pool thread). Never raises."""
    source: str | bytes = path
    if is_uri(path):
        fetched = _fetch(fetches, digest, path)
        if isinstance(fetched, _Outcome):
            return fetched
        source = fetched
    try:
        image = decode_file(source, draft_size=OCR_MAX_SIDE)[0]
    except ImageDecodeError as exc:
        return _Outcome(digest, path, problem=str(exc))
    except OSError as exc:  # vanished or unreadable since the images were stored
        return _Outcome(digest, path, problem=f"cannot read: {exc.strerror or exc}")
    try:
        return _Outcome(digest, path, page=reader.read(image, (width, height) if width and height else None))
    except Exception as exc:  # one odd picture must not stop the run: indexed without text
        return _Outcome(digest, path, failure=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _count(outcome: _Outcome, summary: TextSummary, warn: Warn, fetches: _Fetches) -> words.StoredText | None:
    """The row to store for an outcome, counted in the summary (one warning for a failure); None
    for an object that was not fetched (nothing stored: the next run tries again)."""
    if outcome.unreachable is not None:
        summary.unreachable += 1
        if outcome.unreachable:
            warn(
                outcome.path,
                f"cannot fetch it to read its text ({outcome.unreachable}); indexed without text",
            )
        elif not fetches.told:
            fetches.told = True
            warn(
                outcome.path,
                f"stopped fetching objects after {fetches.failures} failures: the rest wait for the next run",
            )
        return None
    summary.read += 1
    page = outcome.page
    if page is None:
        summary.failed += 1
        reason = outcome.problem or outcome.failure or "unknown"
        if outcome.failure is not None:
            warn(outcome.path, f"cannot read text in it ({reason}); indexed without text")
        return words.StoredText(outcome.digest, [], False, reason, 0.0)
    summary.with_text += bool(page.lines)
    summary.text_free += page.text_free
    lines = [[line.text, line.confidence, [list(p) for p in line.box]] for line in page.lines]
    return words.StoredText(outcome.digest, lines, page.text_free, None, page.seconds)


def _bar(total: int):
    from tqdm import tqdm

    return tqdm(
        total=total, unit="img", desc="reading text", file=sys.stderr, dynamic_ncols=True, leave=False
    )


def after_index(db: CatalogDB, roots: Sequence[object], *, ocr: bool | None, progress: object) -> dict | None:
    """The words step of `Catalog.index`, under the catalog's index lock: its summary as a dict
    (for IndexSummary.text), or None when the catalog reads no text."""
    if db.read_only:
        return None
    from pixgrep.catalog.ingest import index_lock, validate_roots

    local = [root for root in map(str, roots) if not is_uri(root)]
    folders = validate_roots([Path(os.path.expanduser(root)) for root in local]) if local else []
    folders += [root.rstrip("/") for root in map(str, roots) if is_uri(root)]  # object-store prefixes
    warn = lambda path, reason: log.warning("%s: %s", path, reason)  # noqa: E731
    # Waited for quietly: a run that waited for another one's images has said so already.
    with index_lock(db, lambda path, reason: None):
        summary = words_step(db, folders, ocr=ocr, progress=progress is True, warn=warn)
    return summary.to_json() if summary is not None else None
