"""pixgrep: grep for pictures.

The Python API (see docs/architecture.md):

    open_catalog(path=None, model=None) -> Catalog   open or create a catalog ($PIXGREP_CATALOG or
                                                     the user data folder) with a model: a registry
                                                     name, hf:OWNER/REPO, or a model folder
    Catalog.index(roots) / .search(query, k=...) / .search_vector(vector) / .stats() / .close()
    SearchOptions                                    k, offset, threshold, folders, dates, ... of a search
    SearchResult                                     one hit: path, score, image id, ...
    PixgrepError                                     a user-caused problem, with a one-line message

`Catalog`, `SearchOptions`, `SearchResult` and `open_catalog` are imported on first use, so that
`import pixgrep` (and the command's start-up) does not load numpy.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["Catalog", "PixgrepError", "SearchOptions", "SearchResult", "__version__", "open_catalog"]
_FROM_API = ("Catalog", "SearchOptions", "SearchResult", "open_catalog")


def __getattr__(name: str) -> Any:
    if name in _FROM_API:
        from pixgrep import api

        return getattr(api, name)
    if name == "PixgrepError":
        from pixgrep.errors import PixgrepError

        return PixgrepError
    raise AttributeError(f"module 'pixgrep' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
