"""The catalog's reads for the search side, as typed rows: every SQL statement a search runs is here.

The search matrix (search/matrix_store.py) is built from `searchable_rows` and caught up with
`changed_since`; a listing without a query (search/listing.py) reads `by_capture_time`. Paths come
back one way: as bytes (`path_bytes`, what the matrix sorts) or as the str Python's os functions
use (db.path_from_db), whether the catalog holds them as TEXT or, for a name in no encoding, as a
BLOB. Every SQLite failure, here or while iterating, is one PixgrepError line (db.one_line_errors).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from pixgrep.catalog.db import CatalogDB, one_line_errors, path_from_db, sqlite_errors

__all__ = [
    "ChangedRow",
    "ListedRow",
    "SearchableRow",
    "by_capture_time",
    "changed_since",
    "image_count",
    "image_ids",
    "path_bytes",
    "read_snapshot",
    "searchable_rows",
    "vector_rows",
    "vector_width",
    "vectors_for",
]

# (image id, path as bytes, indexed_at, taken_at): plain tuples, since a matrix build reads ten
# million of them and a record per row would cost more than the read.
SearchableRow = tuple[int, bytes, float, str | None]

# Every decoded image with a vector of the model. The vectors are read by a second pass
# (`vector_rows`), so a build never holds a second copy of them in memory.
_SEARCHABLE = (
    "FROM images JOIN embeddings ON embeddings.content_hash = images.content_hash "
    "WHERE embeddings.model = ? AND images.error IS NULL"
)


@dataclass(frozen=True)
class ChangedRow:
    """An images row written since a mark: what the matrix journal needs to follow it."""

    image_id: int
    path: bytes
    content_hash: str
    taken_at: str | None
    error: str | None
    indexed_at: float


@dataclass(frozen=True)
class ListedRow:
    image_id: int
    path: str
    size: int
    width: int | None
    height: int | None
    taken_at: str | None


def path_bytes(stored: str | bytes | memoryview) -> bytes:
    """A path as the catalog stores it (TEXT, or the raw bytes of a name that is not UTF-8) as bytes."""
    if isinstance(stored, bytes | memoryview):
        return bytes(stored)
    return stored.encode("utf-8", "surrogateescape")


@contextlib.contextmanager
def read_snapshot(db: CatalogDB) -> Iterator[None]:
    """A read transaction: every read inside sees one committed state of the catalog (WAL).
    A damaged page met inside (or at its end) is one PixgrepError line."""
    conn = db.conn
    owned = not conn.in_transaction
    with sqlite_errors(db.path):
        if owned:
            conn.execute("BEGIN")
    try:
        yield
    finally:
        if owned and conn.in_transaction:
            with sqlite_errors(db.path):
                conn.execute("COMMIT")  # nothing was written: ends the read snapshot


@one_line_errors
def searchable_rows(db: CatalogDB, model: str) -> Iterator[SearchableRow]:
    """Every decoded image with a vector of `model`, without the vector, in SQLite's order: the
    join reads only the embeddings' key index, not their 1 KB rows."""
    for image_id, path, stamp, taken in db.conn.execute(
        "SELECT images.id, images.path, images.indexed_at, images.taken_at FROM images "
        "WHERE images.error IS NULL AND EXISTS (SELECT 1 FROM embeddings "
        "WHERE embeddings.content_hash = images.content_hash AND embeddings.model = ?)",
        (model,),
    ):
        yield image_id, path_bytes(path), stamp, taken


@one_line_errors
def vector_rows(db: CatalogDB, model: str) -> Iterator[tuple[int, bytes]]:
    """(image id, float16 vector blob) of the same rows as `searchable_rows`, in SQLite's order:
    unordered, SQLite reads the vectors sequentially (5x faster than by id at 100k rows)."""
    yield from db.conn.execute(f"SELECT images.id, embeddings.vector {_SEARCHABLE}", (model,))


@one_line_errors
def vector_width(db: CatalogDB, model: str) -> int | None:
    """The byte length of the first vector `vector_rows` reads (None: no searchable rows); a row of
    another length is damage, and the matrix leaves it out."""
    row = db.conn.execute(f"SELECT length(embeddings.vector) {_SEARCHABLE} LIMIT 1", (model,)).fetchone()
    return None if row is None else int(row[0])


@one_line_errors
def changed_since(db: CatalogDB, mark: float) -> list[ChangedRow]:
    """The images rows written at or after `mark` (images.indexed_at, set by every write; indexed)."""
    rows = db.conn.execute(
        "SELECT id, path, content_hash, taken_at, error, indexed_at FROM images WHERE indexed_at >= ?",
        (mark,),
    )
    return [ChangedRow(r[0], path_bytes(r[1]), r[2], r[3], r[4], r[5]) for r in rows]


@one_line_errors
def vectors_for(db: CatalogDB, model: str, hashes: Iterable[str]) -> dict[str, bytes]:
    """The float16 vector blobs of `model` for these content hashes (absent: none stored)."""
    found: dict[str, bytes] = {}
    listed = sorted(set(hashes))
    for start in range(0, len(listed), 500):
        chunk = listed[start : start + 500]
        marks = ",".join("?" * len(chunk))
        found.update(
            db.conn.execute(
                f"SELECT content_hash, vector FROM embeddings WHERE model = ? AND content_hash IN ({marks})",
                [model, *chunk],
            )
        )
    return found


@one_line_errors
def image_count(db: CatalogDB) -> int:
    return int(db.conn.execute("SELECT COUNT(*) FROM images").fetchone()[0])


@one_line_errors
def highest_image_id(db: CatalogDB) -> int | None:
    """The largest image id: an upper bound of the row count read from the primary key in
    O(log n), without counting; None for an empty catalog."""
    return db.conn.execute("SELECT MAX(id) FROM images").fetchone()[0]


@one_line_errors
def image_ids(db: CatalogDB) -> np.ndarray:
    """Every images row id (int64), searchable or not."""
    return np.fromiter((row[0] for row in db.conn.execute("SELECT id FROM images")), "<i8")


@one_line_errors
def by_capture_time(db: CatalogDB, allowed: set[int] | None) -> Iterator[ListedRow]:
    """Decoded images, newest capture time first (none last, then by path); only `allowed` ids
    when given (they are sorted alone, not the whole catalog)."""
    scope = ""
    if allowed is not None:
        with db.conn:  # committed at once: an open transaction would pin this connection's snapshot
            db.conn.execute("CREATE TEMP TABLE IF NOT EXISTS listing_scope (id INTEGER PRIMARY KEY)")
            db.conn.execute("DELETE FROM listing_scope")
            db.conn.executemany("INSERT INTO listing_scope VALUES (?)", [(i,) for i in allowed])
        scope = "AND id IN (SELECT id FROM listing_scope) "
    for image_id, path, size, width, height, taken_at in db.conn.execute(
        f"SELECT id, path, size, width, height, taken_at FROM images WHERE error IS NULL {scope}"
        "ORDER BY taken_at IS NULL, taken_at DESC, path"
    ):
        yield ListedRow(image_id, path_from_db(path), size, width, height, taken_at)
