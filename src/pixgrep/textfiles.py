"""Text files a user names (captions, labels, templates, query lists): read as UTF-8, a missing or
unreadable one is a PixgrepError that names what it was meant to be."""

from __future__ import annotations

import os
from pathlib import Path

from pixgrep.errors import PixgrepError


def read_text(path: str | os.PathLike, what: str) -> str:
    """A text file's content, or a PixgrepError naming it as `what` ("captions file", ...)."""
    path = Path(path)
    try:
        return path.read_text("utf-8-sig")
    except FileNotFoundError:
        raise PixgrepError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise PixgrepError(f"{what} {path} is a folder, not a file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PixgrepError(f"{what} {path}: cannot read ({exc})") from None


def read_lines(path: str | os.PathLike, what: str) -> list[str]:
    """Non-empty lines of a text file, stripped."""
    return [line.strip() for line in read_text(path, what).splitlines() if line.strip()]
