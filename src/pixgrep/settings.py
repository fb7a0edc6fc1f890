"""PIXGREP_* environment settings, read where they are used and checked there: a value that cannot
be used is one line (PixgrepError) naming the variable and what it accepts, never a traceback or
a nonsense figure later on. An empty value counts as unset. Standard library only."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from pixgrep.errors import PixgrepError


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value is not None and value.strip() else None


def seconds(name: str, default: float, *, most: float = 3600.0) -> float:
    """A duration in seconds: a number above 0 and at most `most` (not nan, inf, 0 or negative)."""
    text = _raw(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= most):
        raise PixgrepError(f"{name} must be a number of seconds above 0 and at most {most:g} (not {text!r})")
    return value


def switch(name: str, default: bool) -> bool:
    """On or off: 1 or 0."""
    text = _raw(name)
    if text is None:
        return default
    if text.strip() not in ("0", "1"):
        raise PixgrepError(f"{name} must be 0 or 1 (not {text!r})")
    return text.strip() == "1"


def choice(name: str, choices: Sequence[str], default: str) -> str:
    """One of `choices`, exactly."""
    text = _raw(name)
    if text is None:
        return default
    if text not in choices:
        raise PixgrepError(f"{name} must be one of {', '.join(choices)} (not {text!r})")
    return text


def path(name: str) -> Path | None:
    """A file or folder path (~ expanded), or None when unset."""
    text = _raw(name)
    if text is None:
        return None
    if text != text.strip():
        raise PixgrepError(f"{name} must be a path without leading or trailing spaces (not {text!r})")
    return Path(text).expanduser()
