"""Search filters: folder-scope prefixes, and capture-time bounds (`--after` / `--before`) as numbers.

Capture times are camera wall-clock times (EXIF rarely says which time zone), so they are compared
as wall-clock times: a time zone, when present, is dropped rather than converted. Each time becomes
seconds since 1970-01-01T00:00 of that wall clock, a float64 the sidecar stores per row (NaN when
the image has no capture time), so a date filter is one vectorised comparison, not a SQLite query.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from datetime import datetime

from pixgrep.errors import PixgrepError

_EPOCH = datetime(1970, 1, 1)
_EXIF_DATE = re.compile(r"^(\d{4}):(\d{2}):(\d{2})")  # "2019:05:04 12:30:00", EXIF's own spelling


def wallclock_seconds(text: str | None) -> float | None:
    """ISO 8601 (or EXIF "YYYY:MM:DD HH:MM:SS") capture time -> wall-clock seconds; None if unreadable."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)  # the common case, in C: ~1 us per row
    except ValueError:
        try:
            moment = datetime.fromisoformat(_EXIF_DATE.sub(r"\1-\2-\3", text.strip()))
        except ValueError:
            return None
    if moment.tzinfo is not None:
        moment = moment.replace(tzinfo=None)
    return (moment - _EPOCH).total_seconds()


def date_bound(text: str, option: str) -> float:
    """A user's date for --after/--before: YYYY, YYYY-MM, YYYY-MM-DD, or a full ISO date and time.

    A partial date means its start: `--before 2019` is before 2019-01-01T00:00, `--after 2019-05`
    is from 2019-05-01T00:00 on.
    """
    value = text.strip()
    if re.fullmatch(r"\d{4}", value):
        value += "-01-01"
    elif re.fullmatch(r"\d{4}-\d{1,2}", value):
        year, month = value.split("-")
        value = f"{year}-{int(month):02d}-01"
    seconds = wallclock_seconds(value)
    if seconds is None:
        raise PixgrepError(
            f"{option} {text!r} is not a date: use YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH:MM"
        )
    return seconds


def root_prefixes(roots: Sequence[str | os.PathLike]) -> list[str]:
    """Each root as absolute 'dir/' prefixes: as written and with symlinks resolved, if different."""
    prefixes = []
    for root in roots:
        root = os.path.expanduser(os.fspath(root))
        for spelling in dict.fromkeys([os.path.abspath(root), os.path.realpath(root)]):
            prefixes.append(spelling if spelling.endswith(os.sep) else spelling + os.sep)
    return prefixes
