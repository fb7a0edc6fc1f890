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
