"""The walk's warnings (an entry it cannot read: a symlink loop, a too-long name) said once per
catalog: the catalog remembers which ones the last walk met, and a later walk says only new ones,
so a search that indexes first does not repeat them on every run. A problem that went away and
came back is said again."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from pixgrep.catalog.db import CatalogDB

_KEY = "walk_warnings"
MAX_REMEMBERED = 10_000  # digests kept (16 bytes of text each): a bound on the meta row


def _digest(path: str, reason: str) -> str:
    text = f"{path}\0{reason}".encode("utf-8", "surrogateescape")
    return hashlib.blake2b(text, digest_size=8).hexdigest()


class OncePerCatalog:
    """A warn(path, reason) that passes on only what the catalog's last walk did not meet; save()
    (inside the index run's write lock) records this walk's set in place of the last one."""

    def __init__(self, db: CatalogDB, warn: Callable[[str, str], None]):
        self._db = db
        self._warn = warn
        stored = db.get_meta(_KEY)
        try:
            self._before = set(json.loads(stored)) if stored else set()
        except (ValueError, TypeError):  # written by hand or cut short: start afresh
            self._before = set()
        self._now: set[str] = set()

    def __call__(self, path: str, reason: str) -> None:
        key = _digest(path, reason)
        self._now.add(key)
        if key not in self._before:
            self._warn(path, reason)

    def save(self) -> None:
        if self._now == self._before or self._db.read_only:
            return
        value = json.dumps(sorted(self._now)[:MAX_REMEMBERED])
        self._db.set_meta(_KEY, value)
