"""Which images a search may return: one typed record for folders, dates, metadata and exclusions.

Built once per search from SearchOptions (scope_for) and read by the ranking (search/topk.py) and
the listing without a query (search/listing.py). Exclusions mirror what the folder walk skips
(catalog/scan.py), so a `-n` search of a catalog indexed with other options shows what a fresh
walk would: a glob matches a file or folder below the root by its name, its path relative to the
root, or its absolute path; hidden files and junk folders are left out unless asked for; and the
images a query is made of are never its results.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pixgrep.catalog.db import CatalogDB
from pixgrep.search.filters import allowed_for, root_prefixes
from pixgrep.search.options import SearchOptions

__all__ = ["Exclusions", "Scope", "scope_for"]


@dataclass(frozen=True)
class Exclusions:
    """Candidates dropped by id or path; asked only of the best candidates, in score order."""

    own_ids: frozenset[int] = frozenset()  # the images the query is made of
    patterns: tuple[str, ...] = ()  # --exclude globs
    include_hidden: bool = True
    prefixes: tuple[str, ...] = ()  # the searched roots as "dir/" prefixes

    @property
    def empty(self) -> bool:
        return not self.own_ids and not self.patterns and self.include_hidden

    def drops(self, image_id: int, path: str) -> bool:
        if image_id in self.own_ids:
            return True
        if not self.patterns and self.include_hidden:
            return False
        from pixgrep.catalog.scan import JUNK_DIRS, excluded

        # Below a searched root, every folder under it counts; elsewhere only the file's own name.
        base, parts = os.path.dirname(path) + os.sep, [os.path.basename(path)]
        for prefix in self.prefixes:
            if path.startswith(prefix):
                base, parts = prefix, [part for part in path[len(prefix) :].split(os.sep) if part]
                break
        if not self.include_hidden:
            if any(part.startswith(".") for part in parts) or any(part in JUNK_DIRS for part in parts[:-1]):
                return True
        return any(
            excluded(name, base, base + os.sep.join(parts[:depth]), list(self.patterns))
            for depth, name in enumerate(parts, start=1)
        )


@dataclass(frozen=True)
class Scope:
    """roots: only images below these folders (None: all). after/before: capture time in
    wall-clock seconds, [after, before); images without one are left out when either is set.
    allowed: the image ids the metadata filters let through (None: no metadata filter).
    threshold: only scores >= it. exact: score every row in scope even where the ANN index would
    be used."""

    roots: tuple[str, ...] | None = None
    after: float | None = None
    before: float | None = None
    allowed: frozenset[int] | None = None
    threshold: float | None = None
    exclusions: Exclusions = Exclusions()
    exact: bool = False

    @property
    def prefixes(self) -> tuple[str, ...] | None:
        return None if self.roots is None else tuple(root_prefixes(self.roots))


def scope_for(db: CatalogDB, options: SearchOptions, own_ids: frozenset[int] = frozenset()) -> Scope:
    """The Scope of a search with these options (the metadata filters read from the catalog)."""
    roots = None if options.roots is None else tuple(os.fspath(r) for r in options.roots)
    allowed = allowed_for(db, options)
    return Scope(
        roots=roots,
        after=options.after,
        before=options.before,
        allowed=None if allowed is None else frozenset(allowed),
        threshold=options.threshold,
        exclusions=Exclusions(
            own_ids=frozenset(own_ids),
            patterns=tuple(p.rstrip("/") for p in options.exclude),
            include_hidden=options.include_hidden,
            prefixes=tuple(root_prefixes(roots or ())),
        ),
        exact=options.exact,
    )
