"""Filters with no query: the matching images, newest first (`pixgrep --near Florence`).

No model is loaded and no vector read: the rows come from SQLite in capture-time order (images
without a capture time last, by path), and the folder, date, exclude and metadata filters are the
same as a search's. Results carry score 0.0, since nothing was ranked by similarity.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from pixgrep.catalog.db import CatalogDB
from pixgrep.errors import PixgrepError
from pixgrep.records import SearchResult
from pixgrep.search.filters import root_prefixes, wallclock_seconds


def list_images(
    db: CatalogDB,
    *,
    allowed: set[int] | None,
    k: int = 10,
    offset: int = 0,
    roots: Sequence[str | os.PathLike] | None = None,
    after: float | None = None,
    before: float | None = None,
    accept: Callable[[int, str], bool] | None = None,
) -> list[SearchResult]:
    """Up to k images (after skipping offset) passing every filter, newest capture time first.

    allowed: ids from the metadata filters (None = every image). after/before: wall-clock
    seconds, [after, before); when either is set, images without a capture time are left out.
    """
    if k < 0 or offset < 0:
        raise PixgrepError("k and offset must not be negative")
    if k == 0 or (allowed is not None and not allowed):
        return []
    prefixes = tuple(root_prefixes(roots)) if roots is not None else None
    scope = ""
    if allowed is not None:  # sort only the allowed rows, not the whole catalog
        with db.conn:  # committed at once: an open transaction would pin this connection's snapshot
            db.conn.execute("CREATE TEMP TABLE IF NOT EXISTS listing_scope (id INTEGER PRIMARY KEY)")
            db.conn.execute("DELETE FROM listing_scope")
            db.conn.executemany("INSERT INTO listing_scope VALUES (?)", [(i,) for i in allowed])
        scope = "AND id IN (SELECT id FROM listing_scope) "
    sql = (
        f"SELECT id, path, size, width, height, taken_at FROM images WHERE error IS NULL {scope}"
        "ORDER BY taken_at IS NULL, taken_at DESC, path"
    )
    results: list[SearchResult] = []
    skipped = 0
    for image_id, path, size, width, height, taken_at in db.conn.execute(sql):
        if prefixes is not None and not path.startswith(prefixes):
            continue
        if after is not None or before is not None:
            seconds = wallclock_seconds(taken_at)
            if seconds is None or (after is not None and seconds < after):
                continue
            if before is not None and seconds >= before:
                continue
        if accept is not None and not accept(image_id, path):
            continue
        if skipped < offset:
            skipped += 1
            continue
        results.append(SearchResult(image_id, path, 0.0, size, width, height, taken_at))
        if len(results) >= k:
            break
    return results
