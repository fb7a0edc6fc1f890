"""Filters with no query: the matching images, newest first (`pixgrep --near Florence`).

No model is loaded and no vector read: the rows come from the catalog in capture-time order
(images without a capture time last, by path; catalog/searchable.py), and the folder, date,
exclude and metadata filters are the same Scope as a search's. Results carry score 0.0, since
nothing was ranked by similarity.
"""

from __future__ import annotations

from pixgrep.catalog.db import CatalogDB
from pixgrep.catalog.searchable import by_capture_time
from pixgrep.errors import PixgrepError
from pixgrep.records import SearchResult
from pixgrep.search.filters import wallclock_seconds
from pixgrep.search.scope import Scope


def list_images(db: CatalogDB, scope: Scope, *, k: int = 10, offset: int = 0) -> list[SearchResult]:
    """Up to k images (after skipping offset) in `scope`, newest capture time first. When a date
    bound is set, images without a capture time are left out."""
    if k < 0 or offset < 0:
        raise PixgrepError("k and offset must not be negative")
    if k == 0 or (scope.allowed is not None and not scope.allowed):
        return []
    prefixes = scope.prefixes
    after, before = scope.after, scope.before
    exclusions = None if scope.exclusions.empty else scope.exclusions
    results: list[SearchResult] = []
    skipped = 0
    for row in by_capture_time(db, None if scope.allowed is None else set(scope.allowed)):
        if prefixes is not None and not row.path.startswith(prefixes):
            continue
        if after is not None or before is not None:
            seconds = wallclock_seconds(row.taken_at)
            if seconds is None or (after is not None and seconds < after):
                continue
            if before is not None and seconds >= before:
                continue
        if exclusions is not None and exclusions.drops(row.image_id, row.path):
            continue
        if skipped < offset:
            skipped += 1
            continue
        results.append(
            SearchResult(row.image_id, row.path, 0.0, row.size, row.width, row.height, row.taken_at)
        )
        if len(results) >= k:
            break
    return results
