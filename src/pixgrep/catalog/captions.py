"""Captions of imported rows: the text a Parquet input carries beside each image (clip-retrieval's
`caption`, LAION's `TEXT`), one per image id, searched by the word index's `caption` column
(catalog/words.py).

Written only by an import (catalog/imported.py), inside the transaction that stores its rows; the
table is made by the first import that brings captions, so a catalog without any has none. A
deleted image takes its caption along (a trigger). `stored_at` tells the word index which rows to
rebuild.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from pixgrep.catalog.db import CatalogDB

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS main.captions (image_id INTEGER PRIMARY KEY, caption TEXT NOT NULL, "
    "stored_at REAL NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS main.captions_follow_images AFTER DELETE ON images BEGIN "
    "DELETE FROM captions WHERE image_id = old.id; END",
)


def has_table(db: CatalogDB) -> bool:
    row = db.conn.execute("SELECT 1 FROM main.sqlite_master WHERE name = 'captions'").fetchone()
    return row is not None


def store_in_transaction(
    db: CatalogDB, paths: Sequence[str | bytes], texts: Sequence[str | None]
) -> list[int]:
    """Set the captions of the images at `paths` (as stored) to `texts` (None or blank: no caption)
    inside the caller's transaction; the ids of those images."""
    if not paths:
        return []
    for statement in SCHEMA:
        db.conn.execute(statement)
    ids: dict[str | bytes, int] = {}
    for start in range(0, len(paths), 500):
        chunk = list(paths[start : start + 500])
        marks = ",".join("?" * len(chunk))
        ids.update(
            (path, image_id)
            for image_id, path in db.conn.execute(
                f"SELECT id, path FROM images WHERE path IN ({marks})", chunk
            )
        )
    now = time.time()
    keep, drop = [], []
    for path, text in zip(paths, texts, strict=True):
        image_id = ids.get(path)
        if image_id is None:
            continue
        text = str(text).strip() if text is not None else ""
        if text:
            keep.append((image_id, text, now))
        else:
            drop.append((image_id,))
    db.conn.executemany(
        "INSERT OR REPLACE INTO captions (image_id, caption, stored_at) VALUES (?, ?, ?)", keep
    )
    db.conn.executemany("DELETE FROM captions WHERE image_id = ?", drop)
    return list(dict.fromkeys(ids.values()))


def texts(db: CatalogDB, ids: Iterable[int]) -> dict[int, str]:
    """image id -> caption, for those of `ids` that have one."""
    if not has_table(db):
        return {}
    wanted = list(ids)
    out: dict[int, str] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        marks = ",".join("?" * len(chunk))
        out.update(
            db.conn.execute(f"SELECT image_id, caption FROM captions WHERE image_id IN ({marks})", chunk)
        )
    return out


def count(db: CatalogDB) -> int:
    """Readable images with a caption (for `pixgrep stats`)."""
    if not has_table(db):
        return 0
    return int(
        db.conn.execute(
            "SELECT COUNT(*) FROM captions JOIN images ON images.id = captions.image_id "
            "WHERE images.error IS NULL"
        ).fetchone()[0]
    )
