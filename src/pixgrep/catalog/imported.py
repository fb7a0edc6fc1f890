"""The catalog's SQL for Parquet import and export (catalog/parquet.py, docs/distributed.md).

Kept in one place: imported rows carry no file of this machine behind them, and import_batch is
the only write that creates such rows. An import writes into a checked catalog only
(CatalogDB.check_integrity, as an index run does), and every SQLite failure is one line.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from pixgrep.catalog import captions as captions_table
from pixgrep.catalog import words
from pixgrep.catalog.db import CatalogDB, ImageRow, one_line_errors, path_to_db

__all__ = ["delete_meta", "import_batch", "iter_exportable", "meta_value"]


@one_line_errors
def iter_exportable(db: CatalogDB, model: str | None = None, chunk: int = 20_000) -> Iterator[list[tuple]]:
    """Chunks of (path as stored, size, mtime_ns, content_hash, width, height, format, taken_at,
    model, vector blob, caption) for every decoded image with a vector (for `model`, or for every
    model); caption is None for an image without one."""
    where = "images.error IS NULL" + (" AND embeddings.model = ?" if model else "")
    with_captions = captions_table.has_table(db)
    cursor = db.conn.execute(
        "SELECT images.path, images.size, images.mtime_ns, images.content_hash, images.width, "
        "images.height, images.format, images.taken_at, embeddings.model, embeddings.vector, "
        f"{'captions.caption' if with_captions else 'NULL'} "
        "FROM images JOIN embeddings ON embeddings.content_hash = images.content_hash "
        f"{'LEFT JOIN captions ON captions.image_id = images.id' if with_captions else ''} "
        f"WHERE {where} ORDER BY images.id, embeddings.model",
        (model,) if model else (),
    )
    while rows := cursor.fetchmany(chunk):
        yield rows


@one_line_errors
def import_batch(
    db: CatalogDB,
    rows: Sequence[ImageRow],
    vectors: dict[str, np.ndarray],
    model: str,
    *,
    captions: Sequence[str | None] | None = None,
    progress: tuple[str, str] | None = None,
) -> None:
    """Store imported image rows and their vectors in one transaction, like write_batch, and drop
    the vectors of the rows they replace that nothing else uses. `captions` (one per row, when the
    input has a caption column) replace the rows' captions; the rows' word index entries are
    rebuilt in the same transaction (when the catalog has a word index: else its first use builds
    it). `progress` (key, value) is written to `meta` in the same transaction, so a resumed import
    knows exactly what is stored."""
    paths = [path_to_db(row[0]) for row in rows]
    with db.conn:
        db.store_in_transaction(rows, vectors, model, drop_every_replaced=True)
        # Asked after the first write, under the write lock (the generation is bumped below): an
        # index in step before this batch stays so, as the batch writes its rows' index rows.
        in_step = words.in_step(db)
        if captions is not None:
            captions_table.store_in_transaction(db, paths, captions)
        if words.has_index(db):
            words.update_images(db, _ids_of(db, paths))
        if progress is not None:
            db.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", progress)
        db.bump_generation()
        if in_step:
            words.mark_in_step(db)
    db.committed()


def _ids_of(db: CatalogDB, paths: Sequence[str | bytes]) -> list[int]:
    ids: list[int] = []
    for start in range(0, len(paths), 500):
        chunk = list(paths[start : start + 500])
        marks = ",".join("?" * len(chunk))
        ids += [row[0] for row in db.conn.execute(f"SELECT id FROM images WHERE path IN ({marks})", chunk)]
    return ids


@one_line_errors
def meta_value(db: CatalogDB, key: str) -> str | None:
    row = db.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


@one_line_errors
def delete_meta(db: CatalogDB, key: str) -> None:
    with db.conn:
        db.conn.execute("DELETE FROM meta WHERE key = ?", (key,))
