"""The SQLite catalog: schema, versioned migrations, and the queries the other layers need.

Vectors are keyed by (content hash, model), not by path: a moved, renamed or duplicated file
finds its vector by content and is never re-encoded, and switching models never deletes another
model's vectors. `meta.generation` is bumped in every transaction that changes what a search can
see, so derived files (the search matrix) know when to rebuild.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from pixgrep.errors import PixgrepError
from pixgrep.records import ImageRecord

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
)

# What write_batch stores per file: (path, size, mtime_ns, content_hash, width, height, format,
# taken_at, error); error is None for a decoded image, else the reason it could not be decoded.
ImageRow = tuple[str, int, int, str, int | None, int | None, str | None, str | None, str | None]

IMAGE_COLUMNS = "id, path, size, mtime_ns, content_hash, width, height, format, taken_at, error"


def default_catalog_path() -> Path:
    """$PIXGREP_CATALOG, else catalog.db in the user data folder (the CLI and the API agree)."""
    env = os.environ.get("PIXGREP_CATALOG")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("pixgrep", appauthor=False)) / "catalog.db"


def vector_to_blob(vector: np.ndarray) -> bytes:
    """float16 little-endian: half the size of float32 and enough for cosine ranking."""
    return np.asarray(vector, dtype="<f2").tobytes()


def blob_to_vector(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f2")


class CatalogDB:
    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path else default_catalog_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            self._check_ours()  # before WAL mode, which rewrites the file header
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            if getattr(self, "conn", None) is not None:
                self.conn.close()
            raise PixgrepError(f"cannot open catalog {self.path}: {exc}") from None
        except OSError as exc:
            raise PixgrepError(f"cannot open catalog {self.path}: {exc.strerror}") from None

    def _check_ours(self) -> None:
        """Refuse, without writing a byte, a file that is corrupt, not SQLite, or someone else's database."""
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0 and self.conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]:
            self.conn.close()
            raise PixgrepError(f"{self.path} is an SQLite file but not a pixgrep catalog")
        if version > len(MIGRATIONS):
            self.conn.close()
            raise PixgrepError(
                f"catalog {self.path} was written by a newer pixgrep (schema {version}); upgrade pixgrep"
            )

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise PixgrepError(
                f"catalog {self.path} was written by a newer pixgrep (schema {version}); upgrade pixgrep"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.conn:
                self.conn.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")

    def close(self) -> None:
        self.conn.close()

    # -- generation: changes whenever what a search can see changes ---------------------------

    def generation(self) -> int:
        return int(self.conn.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])

    def bump_generation(self) -> None:
        """Call inside the transaction that changes images or embeddings."""
        self.conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")

    # -- reads ---------------------------------------------------------------------------------

    def images_by_path(self, paths: Iterable[str] | None = None) -> dict[str, ImageRecord]:
        """All rows (or those for `paths`), keyed by path."""
        if paths is None:
            rows = self.conn.execute(f"SELECT {IMAGE_COLUMNS} FROM images")
            return {row[1]: ImageRecord(*row) for row in rows}
        found = {}
        for path in paths:
            row = self.conn.execute(f"SELECT {IMAGE_COLUMNS} FROM images WHERE path = ?", (path,)).fetchone()
            if row:
                found[path] = ImageRecord(*row)
        return found

    def images_by_id(self, ids: Iterable[int]) -> dict[int, ImageRecord]:
        ids = [int(i) for i in ids]
        found: dict[int, ImageRecord] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.conn.execute(f"SELECT {IMAGE_COLUMNS} FROM images WHERE id IN ({marks})", chunk):
                found[row[0]] = ImageRecord(*row)
        return found

    def folder_counts(self) -> dict[str, int]:
        """Folders holding readable images, with how many each holds directly."""
        counts: dict[str, int] = {}
        for (path,) in self.conn.execute("SELECT path FROM images WHERE error IS NULL"):
            folder = os.path.dirname(path)
            counts[folder] = counts.get(folder, 0) + 1
        return counts

    def hashes_with_vectors(self, model: str) -> set[str]:
        rows = self.conn.execute("SELECT content_hash FROM embeddings WHERE model = ?", (model,))
        return {row[0] for row in rows}

    def vector_for_hash(self, content_hash: str, model: str) -> np.ndarray | None:
        row = self.conn.execute(
            "SELECT vector FROM embeddings WHERE content_hash = ? AND model = ?",
            (content_hash, model),
        ).fetchone()
        return blob_to_vector(row[0]) if row else None

    def iter_searchable(self, model: str, *, ordered: bool = True) -> Iterator[tuple[int, str, bytes]]:
        """(image id, path, float16 vector blob) of every image that has a vector for `model`.

        ordered=False leaves the order to SQLite, which then reads the vectors sequentially instead
        of one index lookup per image: 5x faster on 100k images (the search matrix sorts anyway).
        """
        order = " ORDER BY images.id" if ordered else ""
        yield from self.conn.execute(
            "SELECT images.id, images.path, embeddings.vector FROM images "
            "JOIN embeddings ON embeddings.content_hash = images.content_hash "
            "WHERE embeddings.model = ? AND images.error IS NULL" + order,
            (model,),
        )

    def capture_times(self) -> Iterator[tuple[int, str]]:
        """(image id, taken_at) of every image with a capture time (for the search date filters)."""
        yield from self.conn.execute("SELECT id, taken_at FROM images WHERE taken_at IS NOT NULL")

    def images_under(self, root: str) -> dict[str, ImageRecord]:
        """Rows whose path lies below the folder `root` (absolute), keyed by path.

        A range scan on the path index: every path below "/a/b" sorts between "/a/b/" and "/a/b0"
        ("0" follows "/" in code point order), and "/a/bc/..." falls outside it.
        """
        low = root.rstrip(os.sep) + os.sep
        high = low[:-1] + chr(ord(os.sep) + 1)
        rows = self.conn.execute(
            f"SELECT {IMAGE_COLUMNS} FROM images WHERE path >= ? AND path < ?", (low, high)
        )
        return {row[1]: ImageRecord(*row) for row in rows}

    def write_batch(self, rows: Sequence[ImageRow], vectors: dict[str, np.ndarray], model: str) -> None:
        """Insert or update image rows and store new vectors, in one transaction with a generation bump.

        Either all of it is stored or none (an interrupt or crash mid-way rolls back), so a catalog
        never holds an image row that points at a vector which was not written.
        """
        now = time.time()
        with self.conn:
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
                [(*row, now) for row in rows],
            )
            self.bump_generation()

    def remove_images(self, paths: Sequence[str]) -> int:
        """Delete the rows of files that are gone, and the vectors no remaining row uses (one transaction)."""
        if not paths:
            return 0
        removed = 0
        with self.conn:
            for start in range(0, len(paths), 500):
                chunk = list(paths[start : start + 500])
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
            self.bump_generation()
        return removed

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
