"""The default catalog's location and how a path is shown: no numpy here, so that a query handed
to a running server (server/handoff.py) stays light."""

from __future__ import annotations

import os
from pathlib import Path


def default_catalog_path() -> Path:
    """$PIXGREP_CATALOG, else catalog.db in the user data folder (the CLI and the API agree)."""
    from pixgrep.settings import path

    env = path("PIXGREP_CATALOG")
    if env is not None:
        return env
    from platformdirs import user_data_dir

    return Path(user_data_dir("pixgrep", appauthor=False)) / "catalog.db"


def shown_path(path: str | os.PathLike) -> str:
    """A path for a message or a table: bytes that are not UTF-8 shown escaped (caf\\xe9.jpg)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def short_path(path: str | os.PathLike, limit: int = 200) -> str:
    """shown_path, cut in the middle when longer than `limit` (a 5 KB path stays one short line)."""
    text = shown_path(path)
    return text if len(text) <= limit else f"{text[:120]}...{text[-40:]} ({len(text)} characters)"


SQLITE_HEADER = b"SQLite format 3\0"

# (device, inode) of catalog files this process has opened with SQLite. Their header is never read
# again: closing any descriptor of a file drops every POSIX lock this process holds on it, SQLite's
# own included, and another process's close would then delete the -wal and -shm files that the
# connections still open here are using.
_opened_by_sqlite: set[tuple[int, int]] = set()


def opened_by_sqlite(path: Path) -> None:
    """Say that SQLite has opened `path` in this process (after its first connection)."""
    try:
        st = path.stat()
    except OSError:
        return
    _opened_by_sqlite.add((st.st_dev, st.st_ino))


def writable(path: Path) -> bool:
    """Whether pixgrep may write `path` (a file or folder): its permission, and for root (whom file
    modes do not bind) its mode bits, so a catalog, its folder or its sidecar folder made
    read-only (chmod a-w) is not written, by anyone."""
    try:
        if not os.access(path, os.W_OK):
            return False
        return getattr(os, "geteuid", lambda: -1)() != 0 or bool(path.stat().st_mode & 0o222)
    except OSError:
        return False


def refuse_unopenable(path: Path, *, create: bool) -> None:
    """Refuse, before SQLite touches anything, a missing catalog that this command must not create
    (a mistyped --catalog on a search) and a file that is not SQLite at all (a text file, a JPEG):
    neither is a damaged catalog to restore. An empty file is a new catalog for a command that
    makes one, unless pixgrep left a catalog there (its stamp says so): then it was emptied."""
    from pixgrep.catalog import integrity
    from pixgrep.errors import CatalogUnavailable, PixgrepError

    shown = shown_path(path)
    missing = f"no catalog at {shown}; `pixgrep index FOLDER --catalog {shown}` makes one"
    if not path.exists():
        if not create:
            raise PixgrepError(missing)
        return
    try:
        st = path.stat()
        if st.st_size == 0 and path.is_file():
            left = integrity.left_size(path)
            if left:
                raise CatalogUnavailable(
                    f"catalog {shown}: it is empty, where pixgrep left {left:,} bytes; restore a "
                    "backup, or delete it and index again"
                )
            if not create:
                raise PixgrepError(f"{missing} (the file is empty)")
            return
        if (st.st_dev, st.st_ino) in _opened_by_sqlite:
            return
        with open(path, "rb") as file:
            head = file.read(len(SQLITE_HEADER))
    except OSError:
        return  # unreadable or a folder: SQLite's open says why
    if head and head != SQLITE_HEADER:
        raise PixgrepError(
            f"cannot open catalog {shown_path(path)}: it is not a pixgrep catalog (not an SQLite file)"
        )
