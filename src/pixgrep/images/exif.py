"""Capture time from EXIF, as ISO 8601 text ("2008-05-30T15:56:01", "+01:00" added when known).

Cameras write "YYYY:MM:DD HH:MM:SS" with no time zone; newer ones add an OffsetTime tag. Blank,
zeroed or impossible dates (seen in the wild: "0000:00:00 00:00:00", "    :  :     :  :  ") give
None rather than a wrong date.
"""

from __future__ import annotations

import re
from datetime import datetime

from PIL import Image

EXIF_IFD = 0x8769
# (date tag, offset tag, IFD) in order of preference: when the shutter fired, when the picture was
# digitised (the same for digital cameras), and last the IFD0 DateTime, which software rewrites
# on every edit but is the only date many exports keep.
_DATE_TAGS = (
    (0x9003, 0x9011, EXIF_IFD),  # DateTimeOriginal, OffsetTimeOriginal
    (0x9004, 0x9012, EXIF_IFD),  # DateTimeDigitized, OffsetTimeDigitized
    (0x0132, 0x9010, None),  # DateTime (IFD0), OffsetTime (Exif IFD)
)

_DATE = re.compile(r"^\s*(\d{4})[:\-/](\d{2})[:\-/](\d{2})[ T](\d{2}):(\d{2})(?::(\d{2}))?")
_OFFSET = re.compile(r"^\s*([+-])(\d{2}):?(\d{2})\s*$")


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, (tuple, list)) and value:  # a few writers store the string as a list
        value = value[0]
    return value.strip("\x00 ") if isinstance(value, str) else None


def parse_exif_datetime(value: object, offset: object = None) -> str | None:
    """'2008:05:30 15:56:01' (+ optional '+02:00') -> '2008-05-30T15:56:01+02:00'; junk -> None."""
    text = _text(value)
    match = _DATE.match(text) if text else None
    if not match:
        return None
    year, month, day, hour, minute = (int(g) for g in match.groups()[:5])
    second = int(match.group(6) or 0)
    try:
        when = datetime(year, month, day, hour, minute, min(second, 59))
    except ValueError:
        return None
    if year < 1826:  # before the first photograph: a zeroed or garbage field
        return None
    iso = when.isoformat()
    offset_text = _text(offset)
    off = _OFFSET.match(offset_text) if offset_text else None
    if off and int(off.group(2)) <= 14 and int(off.group(3)) < 60:
        iso += f"{off.group(1)}{off.group(2)}:{off.group(3)}"
    return iso


def capture_time(exif: Image.Exif) -> str | None:
    """The best capture time an image's EXIF offers, or None."""
    try:
        sub = exif.get_ifd(EXIF_IFD)
    except Exception:  # a broken Exif IFD pointer must not hide IFD0's date
        sub = {}
    for date_tag, offset_tag, ifd in _DATE_TAGS:
        value = (sub if ifd == EXIF_IFD else exif).get(date_tag)
        iso = parse_exif_datetime(value, sub.get(offset_tag))
        if iso:
            return iso
    return None


def image_capture_time(image: Image.Image) -> str | None:
    """capture_time of an opened PIL image; None when its EXIF is absent or unreadable."""
    try:
        return capture_time(image.getexif())
    except Exception:  # EXIF parsers raise anything on corrupt blocks; the date is optional
        return None
