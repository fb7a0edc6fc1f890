"""What a search may be asked besides its query: one typed record from every front end to the engine.

The CLI, the server and the Python API each map their flags or parameters onto `SearchOptions`; the
engine reads it. A new filter or switch is one field here (with a default that keeps today's
behaviour) read where it acts.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pixgrep.errors import PixgrepError
from pixgrep.search.filters import date_bound

__all__ = ["SearchOptions"]


@dataclass(frozen=True)
class SearchOptions:
    """k, offset: the page. threshold: only scores >= it. roots: only images below these folders
    (None: the whole catalog). after/before: capture time in [after, before), epoch seconds or a date
    string (YYYY, YYYY-MM, YYYY-MM-DD, ISO); images without a capture time are left out when either
    is set. exclude: globs matched against each file and folder name below the root and the relative
    path. include_hidden=False drops dot-files and junk folders, as indexing does."""

    k: int = 10
    offset: int = 0
    threshold: float | None = None
    roots: tuple[str, ...] | None = None
    after: float | None = None
    before: float | None = None
    exclude: tuple[str, ...] = ()
    include_hidden: bool = True

    def __post_init__(self) -> None:
        # Validated once here, so every front end refuses the same things with the same words.
        for name in ("k", "offset"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise PixgrepError(f"{name} must be a whole number, not negative (got {value!r})")
        if self.threshold is not None:
            threshold = float(self.threshold)
            if not math.isfinite(threshold) or not -1.0 <= threshold <= 1.0:
                raise PixgrepError(
                    f"threshold must be a cosine score between -1 and 1 (got {self.threshold})"
                )
            object.__setattr__(self, "threshold", threshold)
        object.__setattr__(self, "after", _time_bound(self.after, "--after"))
        object.__setattr__(self, "before", _time_bound(self.before, "--before"))
        if self.roots is not None:
            roots = _strings(self.roots, "roots")
            object.__setattr__(self, "roots", tuple(os.path.expanduser(root) for root in roots) or None)
        object.__setattr__(self, "exclude", tuple(p for p in _strings(self.exclude, "exclude") if p.strip()))

    @classmethod
    def of(cls, options: SearchOptions | None = None, **fields: Any) -> SearchOptions:
        """`options` (or the defaults) with `fields` replaced; unknown field names are a TypeError."""
        return dataclasses.replace(options, **fields) if options is not None else cls(**fields)


def _time_bound(value: object, option: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return date_bound(value, option)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PixgrepError(f"{option} must be a date or a time in seconds (got {value!r})")
    return float(value)


def _strings(values: object, name: str) -> tuple[str, ...]:
    if isinstance(values, str | os.PathLike):
        values = [values]
    if not isinstance(values, Sequence | tuple | list):
        raise PixgrepError(f"{name} must be a list of strings")
    return tuple(os.fspath(value) for value in values)  # type: ignore[arg-type]
