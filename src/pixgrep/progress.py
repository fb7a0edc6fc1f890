"""A tqdm bar on stderr when stderr is a terminal; silence otherwise (scripts, pipes, tests)."""

from __future__ import annotations

import sys


def show_progress() -> bool:
    return sys.stderr.isatty()


def bar(total: int, desc: str, unit: str = "it"):
    """A tqdm bar (update(n), close()); disabled when stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not show_progress(), leave=False)
