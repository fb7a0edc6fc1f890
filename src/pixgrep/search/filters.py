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


def is_uri_scope(root: str | os.PathLike) -> bool:
    """An object-store prefix (s3://bucket/dir), not a folder: a local folder whose name holds
    "://" stays a folder."""
    root = os.fspath(root)
    return "://" in root and not os.path.exists(root)


def root_prefixes(roots: Sequence[str | os.PathLike]) -> list[str]:
    """Each root as absolute 'dir/' prefixes: as written and with symlinks resolved, if different;
    an object-store URI as written."""
    prefixes = []
    for root in roots:
        root = os.fspath(root)
        if is_uri_scope(root):  # stored as written
            prefixes.append(root if root.endswith("/") else root + "/")
            continue
        root = os.path.expanduser(root)
        for spelling in dict.fromkeys([os.path.abspath(root), os.path.realpath(root)]):
            prefixes.append(spelling if spelling.endswith(os.sep) else spelling + os.sep)
    return prefixes


# -- photo metadata filters: --near, --camera, --tag, --place -------------------------------------
#
# They become one set of allowed image ids (catalog/metadata.py answers it from SQLite), turned
# into a boolean mask over the matrix rows, so the ranking only ever sees allowed rows: a filtered
# top-k is the top-k of the allowed images, never a top-k cut down afterwards.

DEFAULT_NEAR_KM = 10.0  # --near without a radius: a city and its surroundings

NearValue = str | tuple[float, float] | tuple[float, float, float]


def near_bounds(value: NearValue) -> tuple[float, float, float]:
    """--near "Florence" | "Florence, 5" | "LAT,LON" | "LAT,LON,KM" (or a tuple) -> (lat, lon, km)."""
    from pixgrep.catalog.places import parse_near

    if isinstance(value, (tuple, list)):
        if len(value) not in (2, 3):
            raise PixgrepError("near must be (latitude, longitude) or (latitude, longitude, km)")
        value = ",".join(str(float(v)) for v in value)
    if not str(value).strip():
        raise PixgrepError("--near needs a place name or LAT,LON[,KM]")
    return parse_near(str(value), DEFAULT_NEAR_KM)


def metadata_filter(
    near: NearValue | None = None, camera: str | None = None, tag: str | None = None, place: str | None = None
):
    """A catalog.metadata.MetaFilter from user input; PixgrepError for an empty or unknown value."""
    from pixgrep.catalog.metadata import MetaFilter

    for option, text in (("--camera", camera), ("--tag", tag), ("--place", place)):
        if text is not None and not text.strip():
            raise PixgrepError(f"{option} needs some text")
    return MetaFilter(
        near=near_bounds(near) if near is not None else None, camera=camera, tag=tag, place=place
    )


def allowed_ids(db, near=None, camera=None, tag=None, place=None) -> set[int] | None:
    """Ids of the images every given metadata filter lets through; None when none is given."""
    if near is None and camera is None and tag is None and place is None:
        return None  # (without importing catalog.metadata and its XMP reader: a cold query)
    from pixgrep.catalog.metadata import matching_ids

    return matching_ids(db, metadata_filter(near, camera, tag, place))


def allowed_for(db, options) -> set[int] | None:
    """allowed_ids for a SearchOptions (its near is already (lat, lon, km))."""
    return allowed_ids(db, options.near, options.camera, options.tag, options.place)
