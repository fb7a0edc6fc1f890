"""pixgrep: grep for pictures."""

__version__ = "0.1.0"

from pixgrep.api import Catalog, SearchResult, open_catalog
from pixgrep.errors import PixgrepError

__all__ = ["Catalog", "PixgrepError", "SearchResult", "__version__", "open_catalog"]
