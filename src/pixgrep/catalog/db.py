"""The SQLite catalog: schema, versioned migrations, and the queries the other layers need.

Vectors are keyed by (content hash, model), not by path: a moved, renamed or duplicated file
finds its vector by content and is never re-encoded, and switching models never deletes another
model's vectors. `meta.generation` is bumped in every transaction that changes what a search can
see, so derived files (the search matrix) know when to rebuild.

Paths are stored losslessly. A path that is valid UTF-8 is TEXT, as it always was; any other
(a Latin-1 or Shift-JIS name from an old disk, or plain invalid bytes) is a BLOB holding the file
name's raw bytes, and comes back as the str Python's os functions use for it (surrogateescape).
SQLite orders every TEXT before every BLOB, so a folder's rows are two range scans, one of each.

Every SQLite failure leaves this module as a one-line PixgrepError naming the catalog and what to
do (disk full, read-only, damaged, busy). Opening is safe under concurrency: creation and migration
run inside one BEGIN IMMEDIATE, so six processes opening a new catalog at once all succeed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from pixgrep.catalog import integrity
from pixgrep.catalog.paths import (
    default_catalog_path,
    opened_by_sqlite,
    refuse_unopenable,
    shown_path,
    writable,
)
from pixgrep.errors import CatalogUnavailable, PixgrepError
from pixgrep.records import ImageRecord

# -- photo metadata: GPS, camera, lens, keywords, place names; catalog/metadata.py -----------------
# Separate tables keyed by image id, so the images table and its writers stay as they are; an
# existing catalog gets them empty, and the next index run fills them from the files' headers and
# sidecars without re-encoding anything. The trigger keeps them in step with deleted images.
METADATA_SCHEMA = """
    CREATE TABLE photo_meta (
        image_id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,             -- image size:mtime + each sidecar name:size:mtime
        latitude REAL,
        longitude REAL,
        altitude REAL,
        make TEXT,
        model TEXT,
        lens TEXT,
        orientation INTEGER,
        title TEXT,
        description TEXT,
        city TEXT,
        region TEXT,
        country TEXT,
        country_code TEXT,
        placed INTEGER NOT NULL DEFAULT 0,  -- 1 once the position went through the gazetteer
        read_at REAL NOT NULL
    );
    CREATE INDEX photo_meta_latitude ON photo_meta (latitude) WHERE latitude IS NOT NULL;
    CREATE TABLE photo_keywords (
        image_id INTEGER NOT NULL,
        keyword TEXT NOT NULL,
        folded TEXT NOT NULL,             -- casefold(keyword), what filters match
        PRIMARY KEY (image_id, folded)
    );
    CREATE INDEX photo_keywords_folded ON photo_keywords (folded);
    CREATE TRIGGER photo_meta_follows_images AFTER DELETE ON images BEGIN
        DELETE FROM photo_meta WHERE image_id = old.id;
        DELETE FROM photo_keywords WHERE image_id = old.id;
    END;
"""

# One entry per schema version; never edit an entry that has shipped, append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE images (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        content_hash TEXT NOT NULL,
        width INTEGER,
        height INTEGER,
        format TEXT,
        taken_at TEXT,
        error TEXT,
        indexed_at REAL NOT NULL
    );
    CREATE INDEX images_content_hash ON images (content_hash);
    -- A rowid table: WITHOUT ROWID spilled every 1 KB vector into its own overflow page
    -- (3x the file size at 100k images, half the read speed).
    CREATE TABLE embeddings (
        content_hash TEXT NOT NULL,
        model TEXT NOT NULL,
        vector BLOB NOT NULL,
        PRIMARY KEY (content_hash, model)
    );
    INSERT INTO meta VALUES ('generation', '0');
    """,
    METADATA_SCHEMA,  # 2: photo metadata tables (block above)
    # 3: the search matrix catches up with `indexed_at >= mark`; without an index that read the
    # whole images table (1.6 s at 1M rows) for every added photo.
    "CREATE INDEX IF NOT EXISTS images_indexed_at ON images (indexed_at);",
    # 4: perceptual fingerprints per content hash (images/fingerprint.py; NULL: it could not be
    # computed); duplicate folding confirms a model's near-duplicate with them.
    "CREATE TABLE IF NOT EXISTS fingerprints (content_hash TEXT PRIMARY KEY, bits BLOB) WITHOUT ROWID;",
    # 5: the models that have stored vectors, kept by a trigger (catalog/models_held.py): every
    # command without --model asks, and SELECT DISTINCT over the embeddings' key reads every key
    # (0.04 s per ask at 1M rows warm, the whole index cold).
    """
    CREATE TABLE IF NOT EXISTS models_held (model TEXT PRIMARY KEY) WITHOUT ROWID;
    INSERT OR IGNORE INTO models_held SELECT DISTINCT model FROM embeddings;
    CREATE TRIGGER IF NOT EXISTS models_held_follow_embeddings AFTER INSERT ON embeddings BEGIN
        INSERT OR IGNORE INTO models_held VALUES (new.model);
    END;
    """,
)
# A new catalog's page size. The embeddings rows (a 1 KB vector for 512 dimensions, 1.5-2 KB for
# larger models, plus the key) fit 3 to a 4 KB page, a quarter of it left empty; 14 fit a 16 KB one.
PAGE_SIZE = 16384

# Versions after this one only add indexes, the fingerprints and models_held (read as absent when
# missing): a
# read-only catalog that lacks them is still read.
READABLE_SCHEMA = 2

# What write_batch stores per file: (path, size, mtime_ns, content_hash, width, height, format,
# taken_at, error); error is None for a decoded image, else the reason it could not be decoded.
ImageRow = tuple[str, int, int, str, int | None, int | None, str | None, str | None, str | None]

IMAGE_COLUMNS = "id, path, size, mtime_ns, content_hash, width, height, format, taken_at, error"


def path_to_db(path: str) -> str | bytes:
    """What the catalog stores for a path: the str when it is valid UTF-8, else its raw bytes."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        pass
    try:
        return path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that no file name decodes to
        raise PixgrepError(f"not a file name: {path!r}") from None


def _below(root: str) -> list[tuple[str | bytes, str | bytes]]:
    """Path ranges holding exactly the paths below the folder `root` (absolute), for a range scan
    on the path index: every path below "/a/b" sorts between "/a/b/" and "/a/b0" ("0" follows "/"
    in code point order), and "/a/bc/..." falls outside. Twice: once over the TEXT paths, once over
    the BLOB ones (not UTF-8), which SQLite sorts after all text."""
    low = root.rstrip(os.sep) + os.sep
    low_bytes = low.encode("utf-8", "surrogateescape")
    ranges: list[tuple[str | bytes, str | bytes]] = [(low_bytes, low_bytes[:-1] + bytes([low_bytes[-1] + 1]))]
    if isinstance(path_to_db(low), str):  # a root that is not UTF-8 has no TEXT paths below it
        ranges.insert(0, (low, low[:-1] + chr(ord(os.sep) + 1)))
    return ranges


def path_from_db(value: str | bytes) -> str:
    """The path as Python's os functions spell it (surrogateescape for bytes that are not UTF-8)."""
    return value if isinstance(value, str) else bytes(value).decode("utf-8", "surrogateescape")


def _record(row: Sequence[Any]) -> ImageRecord:
    return ImageRecord(row[0], path_from_db(row[1]), *row[2:])


# Opening can meet "database is locked" at once, whatever the busy timeout: SQLite does not wait
# where waiting could deadlock (switching a new file to WAL while another process creates the
# schema) or while another connection resets the WAL. Such a moment passes: try again, for ~10 s.
OPEN_RETRY_PAUSES = (*(min(0.5, 0.02 * 2**i) for i in range(25)), None)


def _is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _reason(exc: sqlite3.Error, path: Path) -> str:
    """One line for a failed catalog operation, with what the user can do about it."""
    return f"catalog {shown_path(path)}: {_hint(exc)}"


def _hint(exc: sqlite3.Error) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    low = text.lower()
    if "disk is full" in low:
        return "the disk is full; free some space and run again (what was stored is kept)"
    if "disk i/o error" in low:
        return "disk I/O error (is the disk full or failing?); what was stored before is kept"
    if "readonly" in low or "read-only" in low:
        return "it is read-only: it can be searched (-n) but not indexed into"
    if "malformed" in low or "not a database" in low or "corrupt" in low:
        return f"it is damaged ({text}); restore a backup, or delete it and index again"
    if _is_busy(exc):
        return "it is busy (another pixgrep is writing to it); try again"
    return text


_F = TypeVar("_F", bound=Callable[..., Any])
# Errors in pixgrep's own SQL (wrong bindings, a broken constraint) are bugs: they stay loud.
_BUGS = (sqlite3.ProgrammingError, sqlite3.InterfaceError, sqlite3.IntegrityError)


def one_line_errors(method: _F) -> _F:
    """Turn any SQLite failure inside a CatalogDB method (or a function taking the CatalogDB first,
    or while iterating its result) into one PixgrepError line: a full disk, a read-only file or a
    damaged page must never be a traceback."""

    @functools.wraps(method)
    def wrapper(self: CatalogDB, *args: Any, **kwargs: Any) -> Any:
        with sqlite_errors(self.path):
            result = method(self, *args, **kwargs)
        if isinstance(result, Iterator):
            return _guarded_iter(result, self.path)
        return result

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def sqlite_errors(path: Path) -> Iterator[None]:
    """Inside: an SQLite failure becomes one PixgrepError line naming the catalog (bugs stay loud)."""
    try:
        yield
    except _BUGS:
        raise
    except sqlite3.Error as exc:
        raise CatalogUnavailable(_reason(exc, path)) from None


def catalog_error_line(exc: BaseException, path: str | os.PathLike | None) -> str | None:
    """The one line for an SQLite failure on the catalog at `path` (the default one when None);
    None for anything else, and for an error in pixgrep's own SQL, which is a bug."""
    if not isinstance(exc, sqlite3.Error) or isinstance(exc, _BUGS):
        return None
    return _reason(exc, Path(path) if path else default_catalog_path())


def _guarded_iter(rows: Iterator[Any], path: Path) -> Iterator[Any]:
    with sqlite_errors(path):
        yield from rows


def _statements(script: str) -> list[str]:
    """A migration script split into complete statements (executescript would COMMIT our transaction)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip().strip(";").strip():
        statements.append(current.strip())
    return [s for s in statements if s.strip().strip(";").strip()]


def _missing_folder_reason(path: Path) -> str | None:
    """Why the folders above `path` cannot be made: a file where a folder should be."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return f"{shown_path(parent)} is a file, not a folder"
    return None


def vector_to_blob(vector: np.ndarray) -> bytes:
    """float16 little-endian: half the size of float32 and enough for cosine ranking."""
    return np.asarray(vector, dtype="<f2").tobytes()


def blob_to_vector(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f2")


class _Closed:
    """What a closed CatalogDB holds instead of its connection: any use is one PixgrepError (a
    search after `close()`), not SQLite's ProgrammingError."""

    def __init__(self, path: Path):
        self._path = path

    def __getattr__(self, name: str) -> Any:
        raise PixgrepError(f"catalog {shown_path(self._path)} was closed; open it again to use it")


class CatalogDB:
    def __init__(self, path: str | os.PathLike | None = None, *, create: bool = True):
        self.path = Path(path) if path else default_catalog_path()
        self.create = create  # False: a missing catalog is refused, its folder never made
        # True when the file or its folder cannot be written: searches work, index runs are refused.
        self.read_only = False
        self._verified = False  # check_integrity passed in this process
        self._writer = f"{os.getpid()}:{id(self)}"  # this connection, in the stamp between commits
        try:
            for pause in OPEN_RETRY_PAUSES:
                try:
                    self._open()
                    break
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc) or pause is None:
                        raise
                    self._close_quietly()
                    time.sleep(pause)
        except sqlite3.Error as exc:
            self._close_quietly()
            raise PixgrepError(f"cannot open catalog {shown_path(self.path)}: {_hint(exc)}") from None
        except OSError as exc:
            self._close_quietly()
            raise PixgrepError(
                f"cannot open catalog {shown_path(self.path)}: {exc.strerror or exc}"
            ) from None
        except BaseException:
            self._close_quietly()
            raise

    def _open(self) -> None:
        self.read_only = False
        self.conn = self._connect()
        self._check_ours()  # before WAL mode, which rewrites the file header
        opened_by_sqlite(self.path)
        self.conn.execute("PRAGMA cell_size_check = ON")  # each page read is checked a little more
        if not self.read_only:
            # Takes effect only in a new, empty file (before WAL mode); see PAGE_SIZE.
            self.conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        elif self._schema_version() < READABLE_SCHEMA:
            raise PixgrepError(
                f"catalog {shown_path(self.path)} needs a schema upgrade but is read-only; "
                "open it once where it can be written"
            )

    def _close_quietly(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.close()

    def _connect(self) -> sqlite3.Connection:
        """A read-write connection; a read-only one when the file or its folder is not writable
        (immutable when the folder is: SQLite could not create the -shm file WAL readers need)."""
        refuse_unopenable(self.path, create=self.create)
        folder = self.path.parent
        if not folder.is_dir():
            reason = _missing_folder_reason(self.path)
            if reason:
                raise PixgrepError(f"cannot create catalog {shown_path(self.path)}: {reason}")
            folder.mkdir(parents=True, exist_ok=True)
        exists = self.path.exists()
        if exists and self.path.is_dir():
            raise PixgrepError(f"catalog {shown_path(self.path)} is a folder, not a file")
        folder_writable = writable(folder)
        if exists and folder_writable and writable(self.path):
            return sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        if not exists:
            if not folder_writable:
                raise PixgrepError(
                    f"cannot create catalog {shown_path(self.path)}: the folder is not writable"
                )
            return sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self.read_only = True
        uri = "file:" + urllib.parse.quote(os.fsencode(self.path.absolute()))
        wal = Path(f"{self.path}-wal")
        # immutable skips the -shm file (which cannot be created here) and any -wal; a non-empty
        # -wal holds commits the file lacks, so then it is opened plainly read-only instead.
        pending = wal.exists() and wal.stat().st_size > 0
        uri += "?mode=ro" if folder_writable or pending else "?immutable=1"
        return sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)

    def _schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _check_ours(self) -> None:
        """Refuse, without writing a byte, a file that is corrupt, not SQLite, or someone else's database."""
        # One statement, one snapshot: another process may be creating the catalog right now.
        version, tables = self.conn.execute(
            "SELECT (SELECT user_version FROM pragma_user_version), (SELECT COUNT(*) FROM sqlite_master)"
        ).fetchone()
        if version == 0 and tables:
            raise PixgrepError(f"{shown_path(self.path)} is an SQLite file but not a pixgrep catalog")
        if version > len(MIGRATIONS):
            raise PixgrepError(
                f"catalog {shown_path(self.path)} was written by a newer pixgrep (schema {version}); "
                "upgrade pixgrep"
            )

    def _migrate(self) -> None:
        if self._schema_version() == len(MIGRATIONS):
            return
        if self._schema_version() > 0:  # an upgrade writes: never into a damaged file
            self.check_integrity()
        # Check and create under the write lock: a second process waits here (busy timeout), then
        # finds the catalog made and migrates nothing.
        self.conn.isolation_level = None
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self._check_ours()
                version = self._schema_version()
                for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                    for statement in _statements(script):
                        self.conn.execute(statement)
                    self.conn.execute(f"PRAGMA user_version = {number}")
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        finally:
            self.conn.isolation_level = "DEFERRED"

    @one_line_errors
    def check_integrity(self) -> bool:
        """Refuse to write into a damaged file; call before a command's first write. Whether the
        whole file was read (the word index's own check then runs too: catalog/words.py probe).

        PRAGMA quick_check reads every page (about 0.4 s per 100 MB on an idle core), so it runs
        only when the file may hold damage pixgrep did not see: `<catalog>.checked` holds the
        size and mtime of the file (and its -wal) as the last pixgrep that wrote it left it, at a
        clean close (close()), or as this connection left it at its last commit (committed()).
        Either means nothing else touched the file since: no full read, only SQLite's own checks
        of each page it reads (cell_size_check). Any other stamp (a killed or crashed writer,
        another program, a disk error, stray bytes) means a full check first.
        docs/reliability.md says what is checked when."""
        if integrity.matches(self.path, self._writer):
            self._verified = True
            return False
        problems = [row[0] for row in self.conn.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            raise CatalogUnavailable(
                f"catalog {shown_path(self.path)}: it is damaged ({integrity.first_problem(problems)}); "
                "restore a backup, or delete it and index again"
            )
        self._verified = True
        integrity.write_stamp(self.path)
        return True

    def committed(self) -> None:
        """After a commit of this connection to a checked catalog: the stamp follows the file,
        marked as written by this open connection, so this connection's next check (a server that
        indexes for hours) reads nothing, while any other process sees a writer that has not
        closed yet, or was killed, and checks the whole file."""
        if self._verified and not self.read_only:
            integrity.write_stamp(self.path, self._writer)

    def close(self) -> None:
        """Close; a checked catalog this connection wrote to gets its stamp renewed (a clean close:
        the next writer need not read the whole file again)."""
        conn = getattr(self, "conn", None)
        if conn is None or isinstance(conn, _Closed):  # closed already: nothing to do
            return
        wrote = conn.total_changes > 0 and not conn.in_transaction
        self._close_quietly()
        self.conn = _Closed(self.path)  # type: ignore[assignment]
        if wrote and self._verified and not self.read_only:
            integrity.write_stamp(self.path)

    # -- meta: small facts the catalog remembers (key -> text) ----------------------------------

    @one_line_errors
    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    @one_line_errors
    def set_meta(self, key: str, value: str) -> None:
        """One committed write (not for use inside another transaction)."""
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
        self.committed()

    # -- generation: changes whenever what a search can see changes ---------------------------

    @one_line_errors
    def generation(self) -> int:
        return int(self.conn.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])

    def bump_generation(self) -> None:
        """Call inside the transaction that changes images or embeddings."""
        self.conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")

    # -- reads ---------------------------------------------------------------------------------

    @one_line_errors
    def images_by_path(self, paths: Iterable[str] | None = None) -> dict[str, ImageRecord]:
        """All rows (or those for `paths`), keyed by path."""
        if paths is None:
            records = map(_record, self.conn.execute(f"SELECT {IMAGE_COLUMNS} FROM images"))
            return {record.path: record for record in records}
        found = {}
        for path in paths:
            row = self.conn.execute(
                f"SELECT {IMAGE_COLUMNS} FROM images WHERE path = ?", (path_to_db(path),)
            ).fetchone()
            if row:
                found[path] = _record(row)
        return found

    @one_line_errors
    def images_by_id(self, ids: Iterable[int]) -> dict[int, ImageRecord]:
        # An id SQLite cannot hold (>= 2**63) names no row; binding it would raise OverflowError.
        ids = [int(i) for i in ids if -(2**63) <= int(i) < 2**63]
        found: dict[int, ImageRecord] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.conn.execute(f"SELECT {IMAGE_COLUMNS} FROM images WHERE id IN ({marks})", chunk):
                found[row[0]] = _record(row)
        return found

    @one_line_errors
    def folder_counts(self) -> dict[str, int]:
        """Folders holding readable images, with how many each holds directly."""
        counts: dict[str, int] = {}
        for (path,) in self.conn.execute("SELECT path FROM images WHERE error IS NULL"):
            folder = os.path.dirname(path_from_db(path))
            counts[folder] = counts.get(folder, 0) + 1
        return counts

    @one_line_errors
    def vector_for_hash(self, content_hash: str, model: str) -> np.ndarray | None:
        row = self.conn.execute(
            "SELECT vector FROM embeddings WHERE content_hash = ? AND model = ?",
            (content_hash, model),
        ).fetchone()
        return blob_to_vector(row[0]) if row else None

    @one_line_errors
    def images_under(self, root: str) -> dict[str, ImageRecord]:
        """Rows whose path lies below the folder `root` (absolute), keyed by path (`_below`)."""
        found: dict[str, ImageRecord] = {}
        for bounds in _below(root):
            for row in self.conn.execute(
                f"SELECT {IMAGE_COLUMNS} FROM images WHERE path >= ? AND path < ?", bounds
            ):
                record = _record(row)
                found[record.path] = record
        return found

    @one_line_errors
    def holds_under(self, root: str) -> bool:
        """Whether a readable image lies below the folder `root`: one step of the path index, where
        `folder_counts` reads every path (seconds at 1M rows)."""
        sql = "SELECT 1 FROM images WHERE path >= ? AND path < ? AND error IS NULL LIMIT 1"
        return any(self.conn.execute(sql, bounds).fetchone() for bounds in _below(root))

    @one_line_errors
    def write_batch(
        self,
        rows: Sequence[ImageRow],
        vectors: dict[str, np.ndarray],
        model: str,
        fingerprints: dict[str, bytes | None] | None = None,
    ) -> None:
        """Insert or update image rows and store new vectors (and the fingerprints of the pictures
        decoded for them), in one transaction with a generation bump.

        Either all of it is stored or none (an interrupt or crash mid-way rolls back), so a catalog
        never holds an image row that points at a vector which was not written.
        """
        with self.conn:
            self.store_in_transaction(rows, vectors, model)
            if fingerprints:
                self.conn.executemany(
                    "INSERT OR REPLACE INTO fingerprints (content_hash, bits) VALUES (?, ?)",
                    list(fingerprints.items()),
                )
            self.bump_generation()
        self.committed()

    def store_in_transaction(
        self,
        rows: Sequence[ImageRow],
        vectors: dict[str, np.ndarray],
        model: str,
        *,
        drop_every_replaced: bool = False,
    ) -> None:
        """Upsert image rows and vectors inside the caller's transaction (indexed_at: now), and drop
        the vectors these rows replace that nothing else uses: those of imported rows
        (SYNTHETIC_PREFIX keys), or of every replaced row with `drop_every_replaced` (an import).
        Bookkeeping that reads only the rows written, never every imported vector."""
        paths = [path_to_db(row[0]) for row in rows]
        only_imported = "" if drop_every_replaced else " AND content_hash >= ? AND content_hash < ?"
        bounds = [] if drop_every_replaced else [SYNTHETIC_PREFIX, SYNTHETIC_END]
        replaced: set[str] = set()
        for start in range(0, len(paths), 500):
            chunk = paths[start : start + 500]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT content_hash FROM images WHERE path IN ({marks}){only_imported}"
            replaced.update(r[0] for r in self.conn.execute(query, [*chunk, *bounds]))
        now = time.time()
        self.conn.executemany(
            "INSERT OR REPLACE INTO embeddings (content_hash, model, vector) VALUES (?, ?, ?)",
            [(content_hash, model, vector_to_blob(v)) for content_hash, v in vectors.items()],
        )
        self.conn.executemany(
            "INSERT INTO images (path, size, mtime_ns, content_hash, width, height, format, taken_at, "
            "error, indexed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET "
            "size=excluded.size, mtime_ns=excluded.mtime_ns, content_hash=excluded.content_hash, "
            "width=excluded.width, height=excluded.height, format=excluded.format, "
            "taken_at=excluded.taken_at, error=excluded.error, indexed_at=excluded.indexed_at",
            [(path, *row[1:], now) for path, row in zip(paths, rows, strict=True)],
        )
        self.conn.executemany(
            "DELETE FROM embeddings WHERE content_hash = ? AND NOT EXISTS "
            "(SELECT 1 FROM images WHERE images.content_hash = ?)",
            [(h, h) for h in replaced - set(vectors)],
        )

    @one_line_errors
    def remove_images(self, paths: Sequence[str]) -> int:
        """Delete the rows of files that are gone, and the vectors no remaining row uses (one transaction)."""
        if not paths:
            return 0
        removed = 0
        with self.conn:
            for start in range(0, len(paths), 500):
                chunk = [path_to_db(path) for path in paths[start : start + 500]]
                marks = ",".join("?" * len(chunk))
                hashes = [
                    row[0]
                    for row in self.conn.execute(
                        f"SELECT DISTINCT content_hash FROM images WHERE path IN ({marks})", chunk
                    )
                ]
                removed += self.conn.execute(f"DELETE FROM images WHERE path IN ({marks})", chunk).rowcount
                self.conn.executemany(
                    "DELETE FROM embeddings WHERE content_hash = ? AND NOT EXISTS "
                    "(SELECT 1 FROM images WHERE images.content_hash = ?)",
                    [(h, h) for h in hashes],
                )
                self.conn.executemany(
                    "DELETE FROM fingerprints WHERE content_hash = ? AND NOT EXISTS "
                    "(SELECT 1 FROM images WHERE images.content_hash = ?)",
                    [(h, h) for h in hashes],
                )
            # a model left without vectors is no longer held (each held one: found at its first row)
            self.conn.execute(
                "DELETE FROM models_held WHERE NOT EXISTS "
                "(SELECT 1 FROM embeddings WHERE embeddings.model = models_held.model)"
            )
            self.bump_generation()
        self.committed()
        return removed

    @one_line_errors
    def stats(self) -> dict:
        one = lambda sql: self.conn.execute(sql).fetchone()[0]
        per_model = dict(
            self.conn.execute("SELECT model, COUNT(*) FROM embeddings GROUP BY model").fetchall()
        )
        return {
            "catalog": str(self.path),
            "images": one("SELECT COUNT(*) FROM images WHERE error IS NULL"),
            "errors": one("SELECT COUNT(*) FROM images WHERE error IS NOT NULL"),
            "vectors": per_model,
            # the write-ahead log holds recent commits until a checkpoint folds them into the file
            "bytes": sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists()),
        }

    @one_line_errors
    def hashes_with_vectors_among(self, model: str, hashes: Iterable[str]) -> set[str]:
        """The hashes among `hashes` that have a vector for `model`: primary-key lookups, a few
        hundred a query, so a run asks about the files it meets, never loads every hash."""
        wanted = list(dict.fromkeys(hashes))
        found: set[str] = set()
        for start in range(0, len(wanted), HASH_LOOKUP_CHUNK):
            chunk = wanted[start : start + HASH_LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                f"SELECT content_hash FROM embeddings WHERE model = ? AND content_hash IN ({marks})",
                (model, *chunk),
            )
            found.update(row[0] for row in rows)
        return found


# An imported row without a content hash (clip-retrieval writes none) is keyed "path:" + a hash of
# its path; docs/distributed.md says how a later local index replaces it.
SYNTHETIC_PREFIX = "path:"
SYNTHETIC_END = SYNTHETIC_PREFIX[:-1] + chr(ord(SYNTHETIC_PREFIX[-1]) + 1)  # sorts after every key

# Hashes per lookup query: under SQLite's oldest limit on bound parameters (999).
HASH_LOOKUP_CHUNK = 500
