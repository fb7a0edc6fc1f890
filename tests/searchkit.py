"""Helpers for the search tests: put rows into a catalog through its own writes, as indexing would."""

from __future__ import annotations

import hashlib
import os

import numpy as np

from pixgrep.catalog.db import CatalogDB


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
    row = (path, size, mtime_ns, content_hash, 64, 48, "JPEG", taken_at, error)
    db.write_batch([row], {content_hash: unit(vector)}, model)  # the catalog's own write
    return db.images_by_path([path])[path].id


def remove_image(db: CatalogDB, image_id: int) -> None:
    db.remove_images([db.images_by_id([image_id])[image_id].path])


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
