"""pixgrep: grep for pictures."""

__version__ = "0.1.0"

__all__ = ["Catalog", "PixgrepError", "SearchOptions", "SearchResult", "__version__", "open_catalog"]


def __getattr__(name: str):
    # Lazy, so `pixgrep --help` and the CLI's start-up do not import numpy through the API.
    if name in ("Catalog", "SearchOptions", "SearchResult", "open_catalog"):
        from pixgrep import api

        return getattr(api, name)
    if name == "PixgrepError":
        from pixgrep.errors import PixgrepError

        return PixgrepError
    raise AttributeError(f"module 'pixgrep' has no attribute {name!r}")
