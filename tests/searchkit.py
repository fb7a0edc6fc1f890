"""Helpers for the search tests: put rows straight into a catalog, as indexing would."""

from __future__ import annotations

import hashlib
import os
import time

import numpy as np

from pixgrep.catalog.db import CatalogDB, vector_to_blob


def unit(vector) -> np.ndarray:
    vector = np.asarray(vector, np.float32)
    return vector / np.linalg.norm(vector)


def add_image(
    db: CatalogDB,
    path: str | os.PathLike,
    vector,
    *,
    model: str = "fake",
    taken_at: str | None = None,
    error: str | None = None,
    stat: bool = False,
) -> int:
    """Insert one image row and its vector in one transaction; returns the image id.

    stat=True records the real size and mtime of an existing file (so a path term reuses it).
    """
    path = os.path.abspath(path)
    size, mtime_ns = 1000, 1
    if stat:
        info = os.stat(path)
        size, mtime_ns = info.st_size, info.st_mtime_ns
    content_hash = hashlib.sha256(path.encode() + np.asarray(vector, np.float32).tobytes()).hexdigest()
    with db.conn:
        cursor = db.conn.execute(
            "INSERT INTO images (path, size, mtime_ns, content_hash, width, height, format, taken_at,"
            " error, indexed_at) VALUES (?, ?, ?, ?, 64, 48, 'JPEG', ?, ?, ?)",
            (path, size, mtime_ns, content_hash, taken_at, error, time.time()),
        )
        db.conn.execute(
            "INSERT OR REPLACE INTO embeddings (content_hash, model, vector) VALUES (?, ?, ?)",
            (content_hash, model, vector_to_blob(unit(vector))),
        )
        db.bump_generation()
    return int(cursor.lastrowid)


def remove_image(db: CatalogDB, image_id: int) -> None:
    with db.conn:
        db.conn.execute("DELETE FROM images WHERE id = ?", (image_id,))
        db.bump_generation()


def top(matrix, query, k: int, *, offset: int = 0, exclusions=None, **scope):
    """search.topk.top with the Scope's fields as keywords (roots, after, before, allowed ids,
    threshold, exact) and optional Exclusions."""
    from pixgrep.search.scope import Exclusions, Scope
    from pixgrep.search.topk import top as ranked

    if scope.get("roots") is not None:
        scope["roots"] = tuple(os.fspath(root) for root in scope["roots"])
    if scope.get("allowed") is not None:
        scope["allowed"] = frozenset(scope["allowed"])
    return ranked(matrix, query, k, Scope(exclusions=exclusions or Exclusions(), **scope), offset=offset)
