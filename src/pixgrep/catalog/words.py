"""The word index: an SQLite FTS5 table over the words people remember about a picture.

One FTS row per image (rowid = image id), in five columns:
  text     what OCR read in the picture (catalog/ocr_pass.py; stored per content hash in
           `ocr_text`, with boxes and confidences, so a renamed or copied file is not read again)
  name     the file name split into words: underscores, dashes, camelCase and digits
           ("passportScan_2019-B14.jpg" -> "passportScan 2019 B14 passport Scan B 14")
  folder   the names of the (at most FOLDER_DEPTH) folders holding it
  meta     XMP / IPTC title, description and keywords (catalog/metadata.py's tables)
  caption  the caption an imported row came with (catalog/captions.py)
Tokenised by unicode61 with remove_diacritics 2 (so "cafe" finds "Café"), with prefix indexes of
PREFIX_LENGTHS letters: a prefix term of such a length is one lookup. FTS5 answers any other prefix
by scanning terms from the prefix on, and that scan first reads through the whole list of rows of
the term sorted before it ("pictures", held by every row of a library under Pictures/); the
search's loose tier therefore only asks for prefixes of these lengths (search/words.py). A catalog
whose index was built with other lengths gets it rebuilt by the next index or import run (prepare).

`words_source` remembers what each row was built from (a 16-byte digest of its path, content
hash, metadata source, OCR time and caption time). `sync` compares that with the catalog and
rebuilds only the rows that differ, inside one transaction; a missing index is simply every row
differing. Once built, a sync compares only the rows written since the last one
(`images.indexed_at`, metadata and OCR `read_at`, caption `stored_at`, all set by every write), so
adding one photo to a million costs one row, not a read of every path. An image deleted from the
catalog leaves the index in the same transaction (a trigger). A catalog that cannot be written gets
the index in SQLite's temp schema, built on first use in this process.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pixgrep.catalog import captions, imported
from pixgrep.catalog.db import _BUGS, CatalogDB, _reason, path_from_db, shown_path
from pixgrep.errors import CatalogUnavailable, PixgrepError

_F = TypeVar("_F", bound=Callable[..., Any])


def one_line_error(db: CatalogDB, exc: sqlite3.Error) -> PixgrepError:
    return CatalogUnavailable(_reason(exc, db.path))


class WordIndexDamaged(CatalogUnavailable):
    """The word index's own pages cannot be read. It is built from the catalog, so a writable
    catalog gets it built again (rebuild_damaged); the catalog itself may be sound."""

    def __init__(self, path: os.PathLike | str):
        super().__init__(f"catalog {shown_path(path)}: its word index is damaged; search with --no-words")


SQLITE_CORRUPT_VTAB = 267


def is_damage(exc: BaseException) -> bool:
    """Whether an SQLite error says the word index's data is damaged (FTS5's words)."""
    text = str(exc).lower()
    return isinstance(exc, sqlite3.Error) and (
        getattr(exc, "sqlite_errorcode", None) == SQLITE_CORRUPT_VTAB
        or "invalid fts5 file format" in text
        or "vtable constructor failed" in text
    )


def _one_line(function: _F) -> _F:
    """Any SQLite failure (a damaged, full or busy catalog) as one PixgrepError line, as
    catalog/db.py does for its own methods; errors in this module's SQL stay loud."""

    @functools.wraps(function)
    def wrapper(db: CatalogDB, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(db, *args, **kwargs)
        except _BUGS:
            raise
        except sqlite3.Error as exc:
            raise one_line_error(db, exc) from None

    return wrapper  # type: ignore[return-value]


FOLDER_DEPTH = 3
PREFIX_LENGTHS = (2, 3, 4, 5)
_PREFIX_OPTION = re.compile(r"prefix\s*=\s*'([^']*)'")
COLUMNS = ("text", "name", "folder", "meta", "caption")
# bm25 weights per column: the folder names say least about one picture.
WEIGHTS = (1.0, 1.0, 0.4, 1.0, 1.0)
OCR_META_KEY = "words.ocr"  # "1": index runs read text in new and changed pictures
SYNC_META_KEY = "words.synced"  # the catalog state the index was last brought up to date with
SYNC_MARK_KEY = "words.synced_mark"  # wall clock of that sync, less MARK_SLACK_S
WHOLE_STEP = 50_000  # image ids compared per step of a whole sync
MARK_SLACK_S = 120.0  # a write may commit this long after it stamped its rows (busy wait)
HIT_START, HIT_END = "\x02", "\x03"

TABLES = """
    CREATE TABLE IF NOT EXISTS main.ocr_text (
        content_hash TEXT PRIMARY KEY,
        text TEXT NOT NULL,            -- the lines joined by newlines
        lines TEXT NOT NULL,           -- JSON [[text, confidence, [[x, y] * 4]], ...]
        squashed TEXT NOT NULL,        -- each line's letters and digits, folded, without spaces
        text_free INTEGER NOT NULL,    -- 1: the detector found no text box
        error TEXT,                    -- why OCR could not read it (not retried until it changes)
        seconds REAL NOT NULL,
        read_at REAL NOT NULL
    );
    CREATE VIRTUAL TABLE IF NOT EXISTS {schema}.words USING fts5(
        text, name, folder, meta, caption,
        tokenize = 'unicode61 remove_diacritics 2', prefix = '{prefixes}'
    );
    CREATE TABLE IF NOT EXISTS {schema}.words_source (image_id INTEGER PRIMARY KEY, stamp BLOB NOT NULL);
"""
TRIGGER = """
    CREATE TRIGGER IF NOT EXISTS {schema}.words_follow_images AFTER DELETE ON {target}images BEGIN
        DELETE FROM words WHERE rowid = old.id;
        DELETE FROM words_source WHERE image_id = old.id;
    END
"""


def _schema(db: CatalogDB) -> str:
    return "temp" if db.read_only else "main"


def _has_tables(db: CatalogDB) -> bool:
    schema = _schema(db)
    row = db.conn.execute(
        f"SELECT COUNT(*) FROM {schema}.sqlite_master WHERE name IN ('words', 'words_source')"
    ).fetchone()
    return int(row[0]) == 2


def has_index(db: CatalogDB) -> bool:
    """Whether the word index exists (else its first use builds it from the catalog)."""
    return _has_tables(db)


def _has_current_prefixes(db: CatalogDB) -> bool:
    """Whether the index's prefix indexes are PREFIX_LENGTHS (an older pixgrep built '2 3')."""
    row = db.conn.execute(f"SELECT sql FROM {_schema(db)}.sqlite_master WHERE name = 'words'").fetchone()
    found = _PREFIX_OPTION.search(row[0] or "") if row else None
    return found is not None and tuple(int(n) for n in found.group(1).split()) == PREFIX_LENGTHS


def _has_ocr_table(db: CatalogDB) -> bool:
    row = db.conn.execute("SELECT 1 FROM main.sqlite_master WHERE name = 'ocr_text'").fetchone()
    return row is not None


def ensure_tables(db: CatalogDB) -> None:
    """Create the word index tables (in the temp schema for a read-only catalog); inside a
    transaction of the caller's, or one of its own."""
    schema = _schema(db)
    script = TABLES.format(schema=schema, prefixes=" ".join(map(str, PREFIX_LENGTHS)))
    if db.read_only:  # the catalog file cannot take a table: only the temp ones
        script = script.split(";", 1)[1]
    for statement in (s.strip() for s in script.split(";")):
        if statement:
            db.conn.execute(statement)
    # A temp trigger may watch a table of the main schema; a main one names it plainly.
    db.conn.execute(TRIGGER.format(schema=schema, target="main." if schema == "temp" else ""))


# -- words from names -------------------------------------------------------------------------

_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_DIGITS = re.compile(r"(?<=\d)(?=\D)|(?<=\D)(?=\d)")
_WORD = re.compile(r"\w+")


def name_words(name: str) -> str:
    """The words of a file name without its extension: each token as written, then its camelCase
    and letter/digit parts, so "BoardingPass2019" is found by "boarding pass", "boardingpass"
    and "2019"."""
    stem = os.path.splitext(name)[0] if "." in name[1:] else name
    out: list[str] = []
    for token in _WORD.findall(stem.replace("_", " ")):
        out.append(token)
        parts = [p for chunk in _CAMEL.split(token) for p in _DIGITS.split(chunk) if p]
        if len(parts) > 1:
            out.extend(parts)
    return " ".join(out)


def folder_words(path: str) -> str:
    folders = [part for part in os.path.dirname(path).split(os.sep) if part][-FOLDER_DEPTH:]
    return " ".join(name_words(folder + ".") for folder in folders)


# -- keeping the index in step with the catalog -----------------------------------------------


def _state(db: CatalogDB) -> str:
    """Changes whenever a row of the index could: the generation (images), the metadata and OCR
    writes (they do not bump the generation)."""
    one = lambda sql: db.conn.execute(sql).fetchone()[0]
    ocr = (
        one("SELECT COUNT(*) || ':' || IFNULL(MAX(read_at), 0) FROM ocr_text") if _has_ocr_table(db) else "-"
    )
    meta = one("SELECT COUNT(*) || ':' || IFNULL(MAX(read_at), 0) FROM photo_meta")
    return f"{db.generation()}/{meta}/{ocr}"


_SOURCE_SQL = """
    SELECT images.id, images.path, images.content_hash, IFNULL(photo_meta.source, ''), {ocr}, {caption}
    FROM images LEFT JOIN photo_meta ON photo_meta.image_id = images.id
    {join} WHERE images.error IS NULL {only}
"""


def _sources(
    db: CatalogDB, ids: Sequence[int] | None = None, span: tuple[int, int] | None = None
) -> dict[int, tuple[str, str, bytes]]:
    """image id -> (path, content hash, stamp) for the rows the index should hold: those of `ids`,
    else those with low < id <= high for span (low, high), else all."""
    has_ocr, has_captions = _has_ocr_table(db), captions.has_table(db)
    joins = [
        "LEFT JOIN ocr_text ON ocr_text.content_hash = images.content_hash" if has_ocr else "",
        "LEFT JOIN captions ON captions.image_id = images.id" if has_captions else "",
    ]
    sql = _SOURCE_SQL.format(
        ocr="IFNULL(ocr_text.read_at, '')" if has_ocr else "''",
        caption="IFNULL(captions.stored_at, '')" if has_captions else "''",
        join=" ".join(joins),
        only="AND images.id IN ({marks})" if ids is not None else "AND images.id > ? AND images.id <= ?",
    )
    out: dict[int, tuple[str, str, bytes]] = {}
    if ids is None:
        every = (-(2**63), 2**63 - 1)
        steps: list[tuple[str, Sequence[int]]] = [(sql, span or every)]
    else:
        chunks = [list(ids[i : i + 500]) for i in range(0, len(ids), 500)]
        steps = [(sql.replace("{marks}", ",".join("?" * len(chunk))), chunk) for chunk in chunks]
    for query, values in steps:
        for image_id, path, digest, meta_source, ocr_at, caption_at in db.conn.execute(query, values):
            # A name that is not UTF-8 (surrogate escapes) is indexed with its bytes shown \xNN.
            path = os.fsencode(path_from_db(path)).decode("utf-8", "backslashreplace")
            stamp = f"{path}\0{digest}\0{meta_source}\0{ocr_at}"
            if caption_at:  # only a row with a caption says so
                stamp += f"\0{caption_at}"
            # A digest, not the text: the path alone would take ~60 bytes more per row on disk.
            out[image_id] = (
                path,
                digest,
                hashlib.blake2b(stamp.encode("utf-8", "surrogatepass"), digest_size=16).digest(),
            )
    return out


@_one_line
def sync(db: CatalogDB, *, force: bool = False, relayout: bool = False) -> int:
    """Bring the word index up to date with the catalog (built when missing); rows rebuilt.
    Cheap when nothing changed: one comparison of the catalog's state. relayout: an index with
    other prefix lengths is built again (an index or import run; a search never waits for that).
    A damaged index is built again whole (rebuild_damaged)."""
    try:
        return _sync(db, force=force, relayout=relayout)
    except sqlite3.Error as exc:
        if db.read_only or not is_damage(exc):
            raise
    return rebuild_damaged(db)


def rebuild_damaged(db: CatalogDB) -> int:
    """Drop a damaged word index and build it again whole. SQLite's DROP TABLE cannot drop an FTS5
    table whose own records it cannot read, so its schema row is deleted (writable_schema) and its
    shadow tables dropped in one transaction; an interrupted build leaves no index, which the next
    sync builds. Rows built."""
    with db.conn:
        db.conn.execute("PRAGMA writable_schema = ON")
        try:
            db.conn.execute("DELETE FROM main.sqlite_master WHERE type = 'table' AND name = 'words'")
        finally:
            db.conn.execute("PRAGMA writable_schema = RESET")  # off; this connection reads the schema again
        for shadow in ("data", "idx", "content", "docsize", "config", "source"):
            db.conn.execute(f"DROP TABLE IF EXISTS main.words_{shadow}")
        db.conn.execute("DROP TRIGGER IF EXISTS main.words_follow_images")
    return _sync(db, force=True, relayout=False)


@_one_line
def probe(db: CatalogDB, *, whole: bool = False) -> None:
    """Before an index or import run writes (a deleted image's trigger reads the index): a damaged
    word index is built again now. One lookup in the index; whole (the catalog file was just
    read whole: it changed outside pixgrep): FTS5's own integrity-check too, which reads the
    whole index (SQLite's quick_check does not look inside FTS5's records, and a damaged record
    can answer wrongly without an error)."""
    if db.read_only or not _has_tables(db):
        return
    try:
        db.conn.execute("SELECT rowid FROM words WHERE words MATCH '\"pixgrep\"' LIMIT 1").fetchall()
        if whole:
            with db.conn:
                db.conn.execute("INSERT INTO words (words) VALUES ('integrity-check')")
    except sqlite3.Error as exc:
        text = str(exc).lower()
        if not (is_damage(exc) or (whole and ("malformed" in text or "logic error" in text))):
            raise
        rebuild_damaged(db)


def _sync(db: CatalogDB, *, force: bool, relayout: bool) -> int:
    has = _has_tables(db)
    if has and relayout and not db.read_only and not _has_current_prefixes(db):
        has = force = False  # built again below, in one transaction with dropping the old one
    state = _state(db)
    if has and not force and not db.read_only and imported.meta_value(db, SYNC_META_KEY) == state:
        return 0
    if has and db.read_only and getattr(db, "_words_state", None) == state:
        return 0
    since = _mark(db) if has and not force and not db.read_only else None
    try:
        with db.conn:
            mark = time.time() - MARK_SLACK_S
            if since is not None:  # only what was written since the last sync (deletes: the trigger)
                rebuilt = update_images(db, _written_since(db, since))
            else:
                if not has:  # rebuilt whole: what words_source remembers describes rows now gone
                    db.conn.execute(f"DROP TABLE IF EXISTS {_schema(db)}.words_source")
                    db.conn.execute(f"DROP TABLE IF EXISTS {_schema(db)}.words")
                ensure_tables(db)
                rebuilt = _compare_whole(db)
            state = _state(db)  # again: the tables made above count in it
            if not db.read_only:
                db.conn.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    [(SYNC_META_KEY, state), (SYNC_MARK_KEY, repr(mark))],
                )
    except sqlite3.OperationalError as exc:
        if "fts5" in str(exc).lower() and not is_damage(exc):  # an SQLite without FTS5: no words
            return 0
        raise
    db._words_state = state  # type: ignore[attr-defined]
    return rebuilt


def _compare_whole(db: CatalogDB) -> int:
    """Compare every image with what words_source remembers of it and rebuild the rows that differ
    (or are gone), WHOLE_STEP image ids at a time, inside the caller's transaction: memory stays
    that of one step (all rows at once held ~0.7 GB per 1M rows). Rows rebuilt or removed."""
    rebuilt, low = 0, -(2**63)
    while True:
        count, last = db.conn.execute(
            "SELECT COUNT(*), MAX(id) FROM (SELECT id FROM images WHERE id > ? ORDER BY id LIMIT ?)",
            (low, WHOLE_STEP),
        ).fetchone()
        final = count < WHOLE_STEP  # the last step also takes every row remembered past its images
        span = (low, 2**63 - 1 if final else last)
        wanted = _sources(db, span=span)
        stored = dict(
            db.conn.execute(
                "SELECT image_id, stamp FROM words_source WHERE image_id > ? AND image_id <= ?", span
            )
        )
        gone = [i for i in stored if i not in wanted]
        stale = {i: row for i, row in wanted.items() if stored.get(i) != row[2]}
        _delete(db, gone)
        _rebuild(db, stale)
        rebuilt += len(gone) + len(stale)
        if final:
            return rebuilt
        low = last


def in_step(db: CatalogDB) -> bool:
    """Whether the index exists and the catalog has not changed since its last sync."""
    return has_index(db) and not db.read_only and imported.meta_value(db, SYNC_META_KEY) == _state(db)


def mark_in_step(db: CatalogDB) -> None:
    """Inside the caller's transaction, after it changed the catalog and every index row that
    change touches (an import batch): the next sync has nothing to compare."""
    db.conn.executemany(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
        [(SYNC_META_KEY, _state(db)), (SYNC_MARK_KEY, repr(time.time() - MARK_SLACK_S))],
    )


def prepare(db: CatalogDB, *, progress: bool = False, relayout: bool = True) -> None:
    """sync, at the end of an index or import run; built whole (about 40 CPU s per 1M rows after
    an import into a catalog that had no index), it says so on a terminal rather than sit silent.
    relayout: see sync."""
    from pixgrep.progress import bar

    whole = not has_index(db) or (relayout and not _has_current_prefixes(db))
    meter = bar(1, "building the word index", "index") if progress and whole else None
    try:
        sync(db, relayout=relayout)
    finally:
        if meter is not None:
            meter.close()


def _mark(db: CatalogDB) -> float | None:
    value = imported.meta_value(db, SYNC_MARK_KEY)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _written_since(db: CatalogDB, mark: float) -> list[int]:
    """Ids of the images whose index row may have changed since `mark`: the image row, its
    metadata, its content's OCR text or its caption written at or after it."""
    sql = (
        "SELECT id FROM images WHERE indexed_at >= ? UNION SELECT image_id FROM photo_meta WHERE read_at >= ?"
    )
    if _has_ocr_table(db):
        # IN, not a join: a join lets SQLite scan every image and look each up in ocr_text.
        sql += (
            " UNION SELECT id FROM images WHERE content_hash IN"
            " (SELECT content_hash FROM ocr_text WHERE read_at >= ?)"
        )
    if captions.has_table(db):
        sql += " UNION SELECT image_id FROM captions WHERE stored_at >= ?"
    marks = (mark,) * sql.count("?")
    return [row[0] for row in db.conn.execute(sql, marks)]


def update_images(db: CatalogDB, ids: Sequence[int]) -> int:
    """Bring the index rows of these images up to date inside the caller's transaction (when the
    index exists; otherwise the next sync builds all of it); rows rebuilt or removed. A row whose
    source is what words_source remembers is kept: a sync's window (MARK_SLACK_S) names the rows
    an import wrote in its last two minutes again, and rebuilding them cost ~57 CPU s at 1M."""
    if not ids or not has_index(db):
        return 0
    wanted = _sources(db, list(ids))
    stored = _stored_stamps(db, list(wanted))
    gone = [i for i in ids if i not in wanted]
    stale = {i: row for i, row in wanted.items() if stored.get(i) != row[2]}
    _delete(db, gone)
    _rebuild(db, stale)
    return len(gone) + len(stale)


def _stored_stamps(db: CatalogDB, ids: Sequence[int]) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        query = f"SELECT image_id, stamp FROM words_source WHERE image_id IN ({marks})"
        out.update(db.conn.execute(query, list(chunk)))
    return out


def _delete(db: CatalogDB, ids: Sequence[int]) -> None:
    db.conn.executemany("DELETE FROM words WHERE rowid = ?", [(i,) for i in ids])
    db.conn.executemany("DELETE FROM words_source WHERE image_id = ?", [(i,) for i in ids])


def _rebuild(db: CatalogDB, rows: dict[int, tuple[str, str, bytes]]) -> None:
    ids = list(rows)
    if not ids:
        return
    _delete(db, ids)
    texts = _ocr_texts(db, {digest for _, digest, _ in rows.values()})
    metas = _meta_texts(db, ids)
    captioned = captions.texts(db, ids)
    db.conn.executemany(
        "INSERT INTO words (rowid, text, name, folder, meta, caption) VALUES (?, ?, ?, ?, ?, ?)",
        [
            (
                i,
                texts.get(digest, ""),
                name_words(os.path.basename(path)),
                folder_words(path),
                metas.get(i, ""),
                captioned.get(i, ""),
            )
            for i, (path, digest, _) in rows.items()
        ],
    )
    db.conn.executemany(
        "INSERT INTO words_source (image_id, stamp) VALUES (?, ?)", [(i, s) for i, (_, _, s) in rows.items()]
    )


def _chunks(items: Sequence, size: int = 500) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _ocr_texts(db: CatalogDB, hashes: set[str]) -> dict[str, str]:
    if not _has_ocr_table(db):
        return {}
    out: dict[str, str] = {}
    for chunk in _chunks(sorted(hashes)):
        marks = ",".join("?" * len(chunk))
        out.update(
            db.conn.execute(
                f"SELECT content_hash, text FROM ocr_text WHERE content_hash IN ({marks}) AND text != ''",
                list(chunk),
            )
        )
    return out


def _meta_texts(db: CatalogDB, ids: Sequence[int]) -> dict[int, str]:
    parts: dict[int, list[str]] = {}
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        for image_id, title, description in db.conn.execute(
            f"SELECT image_id, title, description FROM photo_meta WHERE image_id IN ({marks})", list(chunk)
        ):
            parts.setdefault(image_id, []).extend(t for t in (title, description) if t)
        for image_id, keyword in db.conn.execute(
            f"SELECT image_id, keyword FROM photo_keywords WHERE image_id IN ({marks})", list(chunk)
        ):
            parts.setdefault(image_id, []).append(keyword.replace("|", " "))
    return {i: " ".join(words) for i, words in parts.items()}


# -- OCR results --------------------------------------------------------------------------------


@_one_line
def ocr_enabled(db: CatalogDB) -> bool:
    """True once the catalog was indexed with --ocr: later runs keep reading new files."""
    return imported.meta_value(db, OCR_META_KEY) == "1"


@_one_line
def set_ocr(db: CatalogDB, enabled: bool) -> None:
    with db.conn:
        db.conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (OCR_META_KEY, "1" if enabled else "0")
        )


@dataclass(frozen=True)
class StoredText:
    content_hash: str
    lines: list  # [[text, confidence, [[x, y] * 4]], ...]
    text_free: bool
    error: str | None
    seconds: float


@_one_line
def hashes_read(db: CatalogDB) -> set[str]:
    if not _has_ocr_table(db):
        return set()
    return {row[0] for row in db.conn.execute("SELECT content_hash FROM ocr_text")}


@_one_line
def store_texts(db: CatalogDB, texts: Sequence[StoredText]) -> None:
    """Store OCR results and rebuild the index rows of every image with those contents, in one
    transaction."""
    if not texts:
        return
    now = time.time()
    with db.conn:
        ensure_tables(db)
        db.conn.executemany(
            "INSERT OR REPLACE INTO ocr_text (content_hash, text, lines, squashed, text_free, error, "
            "seconds, read_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    t.content_hash,
                    "\n".join(line[0] for line in t.lines),
                    json.dumps(t.lines),
                    "\n".join(squash(line[0]) for line in t.lines),
                    int(t.text_free),
                    t.error,
                    round(t.seconds, 4),
                    now,
                )
                for t in texts
            ],
        )
        ids: list[int] = []
        for chunk in _chunks([t.content_hash for t in texts]):
            marks = ",".join("?" * len(chunk))
            ids += [
                row[0]
                for row in db.conn.execute(
                    f"SELECT id FROM images WHERE content_hash IN ({marks})", list(chunk)
                )
            ]
        update_images(db, ids)


@_one_line
def text_lines(db: CatalogDB, content_hash: str) -> list:
    """The stored OCR lines of one content ([] when none were read)."""
    if not _has_ocr_table(db):
        return []
    row = db.conn.execute("SELECT lines FROM ocr_text WHERE content_hash = ?", (content_hash,)).fetchone()
    return json.loads(row[0]) if row else []


@_one_line
def counts(db: CatalogDB) -> dict:
    """For `pixgrep stats`: whether OCR is on, images read, images with text, text-free ones, and
    images with an imported caption."""
    out = {"ocr": ocr_enabled(db), "with_text": 0, "text_read": 0, "text_free": 0}
    out["with_caption"] = captions.count(db)
    if not _has_ocr_table(db):
        return out
    row = db.conn.execute(
        "SELECT COUNT(*), SUM(ocr_text.text != ''), SUM(ocr_text.text_free) FROM images "
        "JOIN ocr_text ON ocr_text.content_hash = images.content_hash WHERE images.error IS NULL"
    ).fetchone()
    out.update(text_read=int(row[0] or 0), with_text=int(row[1] or 0), text_free=int(row[2] or 0))
    return out


@_one_line
def prune_texts(db: CatalogDB) -> None:
    """Drop OCR rows of contents no image has any more (inside a transaction of its own)."""
    if _has_ocr_table(db) and not db.read_only:
        with db.conn:
            db.conn.execute(
                "DELETE FROM ocr_text WHERE NOT EXISTS "
                "(SELECT 1 FROM images WHERE images.content_hash = ocr_text.content_hash)"
            )


# -- queries ------------------------------------------------------------------------------------


def squash(text: str) -> str:
    """Letters and digits only, case and accents folded: what is compared when OCR ran words
    together ("WIFIPASSWORD") or split one."""
    import unicodedata

    folded = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in folded if c.isalnum() and not unicodedata.combining(c))


@_one_line
def squashed_match(db: CatalogDB, squashed: str, limit: int = 1000) -> list[WordHit]:
    """Images whose OCR text holds `squashed` (see squash) within one line, fewest lines first."""
    if not squashed or not _has_ocr_table(db):
        return []
    # CROSS JOIN keeps ocr_text the outer loop (SQLite's planner chose to scan every image: 0.19 s
    # at 1M rows with no OCR text at all); each text then finds its images by the hash index.
    rows = db.conn.execute(
        "SELECT images.id, length(ocr_text.squashed) FROM ocr_text CROSS JOIN images "
        "ON images.content_hash = ocr_text.content_hash WHERE ocr_text.squashed != '' "
        "AND instr(ocr_text.squashed, ?) AND images.error IS NULL ORDER BY 2 LIMIT ?",
        (squashed, limit),
    ).fetchall()
    return [WordHit(int(i), float(n), (squashed,), ("text",)) for i, n in rows]


@dataclass(frozen=True)
class WordHit:
    image_id: int
    rank: float  # FTS5 bm25: lower is better
    words: tuple[str, ...]  # the words that matched, as written in the picture or name
    sources: tuple[str, ...]  # the columns they matched in: text, name, folder, meta, caption


def matching_at_least(db: CatalogDB, fts_query: str, count: int) -> bool:
    """Whether `count` images or more match an FTS5 query: it stops at the count, where ranking
    every match (bm25) costs ~0.85 µs per matching image (60 ms for 71,000 at 1M rows)."""
    try:
        (found,) = db.conn.execute(
            "SELECT COUNT(*) FROM (SELECT rowid FROM words WHERE words MATCH ? LIMIT ?)", (fts_query, count)
        ).fetchone()
    except sqlite3.Error as exc:
        if _unanswerable(exc):
            return False
        raise _match_error(db, exc) from None
    return int(found) >= count


def match(
    db: CatalogDB,
    fts_query: str,
    limit: int = 1000,
    accept: Callable[[list[int]], set[int]] | None = None,
) -> list[WordHit]:
    """The `limit` best images matching an FTS5 query (bm25, then image id), with the words that
    matched; accept: the ids of a batch that may be shown (a search's scope), applied before the
    limit counts. None for FTS5 syntax it cannot take or an SQLite without FTS5; a damaged word
    index is WordIndexDamaged, any other damage one PixgrepError."""
    try:
        ranked = _ranked(db, fts_query, limit, accept)
        return _with_words(db, fts_query, ranked)
    except sqlite3.Error as exc:
        if _unanswerable(exc):
            return []
        raise _match_error(db, exc) from None


def _ranked(
    db: CatalogDB, fts_query: str, limit: int, accept: Callable[[list[int]], set[int]] | None
) -> list[tuple[int, float]]:
    weights = ", ".join(str(w) for w in WEIGHTS)
    sql = (
        f"SELECT rowid, bm25(words, {weights}) FROM words WHERE words MATCH ? "
        f"ORDER BY bm25(words, {weights}), rowid LIMIT ?"
    )
    fetch = limit
    while True:  # a narrow scope may keep few of the best: ask for 4 times more until enough
        rows = db.conn.execute(sql, (fts_query, fetch)).fetchall()
        kept = rows
        if accept is not None:
            allowed = accept([row[0] for row in rows])
            kept = [row for row in rows if row[0] in allowed]
        if len(kept) >= limit or len(rows) < fetch:
            return [(int(i), float(rank)) for i, rank in kept[:limit]]
        fetch *= 4


def _with_words(db: CatalogDB, fts_query: str, ranked: list[tuple[int, float]]) -> list[WordHit]:
    """The hits, with the words each matched (FTS5's highlight, read for these rows alone)."""
    highlights = ", ".join(f"highlight(words, {i}, '{HIT_START}', '{HIT_END}')" for i in range(len(COLUMNS)))
    marked_of: dict[int, list[str]] = {}
    for chunk in _chunks([i for i, _ in ranked]):
        marks = ",".join("?" * len(chunk))
        query = f"SELECT rowid, {highlights} FROM words WHERE words MATCH ? AND rowid IN ({marks})"
        marked_of.update((int(row[0]), row[1:]) for row in db.conn.execute(query, (fts_query, *chunk)))
    hits = []
    for image_id, rank in ranked:
        words: list[str] = []
        sources = []
        for column, text in zip(COLUMNS, marked_of.get(image_id, ()), strict=False):
            found = re.findall(f"{HIT_START}(.*?){HIT_END}", text or "", flags=re.S)
            if found:
                sources.append(column)
                words += [w for w in found if w not in words]
        hits.append(WordHit(image_id, rank, tuple(words), tuple(sources)))
    return hits


def _unanswerable(exc: sqlite3.Error) -> bool:
    """FTS5 syntax it cannot take, or an SQLite without FTS5 (not a damaged index)."""
    text = str(exc).lower()
    return (
        isinstance(exc, sqlite3.OperationalError)
        and ("fts5" in text or "no such table" in text)
        and not is_damage(exc)
    )


def _match_error(db: CatalogDB, exc: sqlite3.Error) -> PixgrepError:
    return WordIndexDamaged(db.path) if is_damage(exc) else one_line_error(db, exc)
