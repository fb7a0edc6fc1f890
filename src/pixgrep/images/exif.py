"""What EXIF says about a picture: capture time, GPS position, camera, lens, orientation.

Capture time from EXIF, as ISO 8601 text ("2008-05-30T15:56:01", "+01:00" added when known).

Cameras write "YYYY:MM:DD HH:MM:SS" with no time zone; newer ones add an OffsetTime tag. Blank,
zeroed or impossible dates (seen in the wild: "0000:00:00 00:00:00", "    :  :     :  :  ") give
None rather than a wrong date.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
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


# -- where and with what: GPS position, camera, lens, orientation ----------------------------------
#
# GPS tags are rationals written by every kind of firmware and editor, and the shared samples hold
# most ways they go wrong: a rational 0/0 (Pillow reads it as NaN), one number where three belong,
# a missing or junk N/S/E/W ref, 0xFFFFFFFF sentinels, a (0, 0) "no fix" position. The rule: a
# position is stored only when it is certainly valid; anything doubtful gives no position at all
# (a wrong place is worse than none). A missing ref counts as N/E, as exiftool and most
# photo managers read it; an unknown ref refuses the position.

GPS_IFD = 0x8825
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON, _GPS_ALT_REF, _GPS_ALT = 1, 2, 3, 4, 5, 6
_GPS_STATUS = 9
_MAKE, _MODEL, _ORIENTATION, _DESCRIPTION = 0x010F, 0x0110, 0x0112, 0x010E
_LENS_MAKE, _LENS_MODEL = 0xA433, 0xA434
MAX_ALTITUDE_M = 100_000.0  # above this (or below -MAX_ALTITUDE_M / 10) an altitude is junk


@dataclass(frozen=True)
class GpsPosition:
    latitude: float  # degrees, north positive
    longitude: float  # degrees, east positive
    altitude: float | None  # metres above sea level, negative below; None when absent or doubtful


@dataclass(frozen=True)
class CameraFacts:
    make: str | None
    model: str | None
    lens: str | None
    orientation: int | None  # EXIF orientation 1..8, None when absent or out of range
    description: str | None  # IFD0 ImageDescription, when it is real text


def _number(value: object) -> float | None:
    """A finite float from an EXIF rational/integer; None for 0/0 (NaN), inf, or a non-number."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) else None


def _degrees(value: object) -> float | None:
    """(degrees, minutes, seconds) rationals -> decimal degrees, unsigned; None when not certain.

    Also accepted: (degrees, decimal minutes) and (decimal degrees,), which some phones write.
    Minutes and seconds must be in [0, 60); every part finite and non-negative.
    """
    parts = value if isinstance(value, (tuple, list)) else (value,)
    if not 1 <= len(parts) <= 3:
        return None
    numbers = [_number(part) for part in parts]
    if any(n is None or n < 0 for n in numbers):
        return None
    if any(n >= 60 for n in numbers[1:]):  # type: ignore[operator]
        return None
    total = 0.0
    for number, scale in zip(numbers, (1.0, 60.0, 3600.0), strict=False):
        total += number / scale  # type: ignore[operator]
    return total


def _ref(value: object) -> str | None:
    text = _text(value)
    return text.upper()[:1] if text else None


def gps_position(exif: Image.Exif) -> GpsPosition | None:
    """The GPS position an image's EXIF holds, or None when absent or not certainly valid."""
    try:
        gps = exif.get_ifd(GPS_IFD)
    except Exception:  # a broken GPS IFD pointer: no position
        return None
    if not gps or _ref(gps.get(_GPS_STATUS)) == "V":  # "V": the receiver said the fix is void
        return None
    latitude, longitude = _degrees(gps.get(_GPS_LAT)), _degrees(gps.get(_GPS_LON))
    if latitude is None or longitude is None or latitude > 90 or longitude > 180:
        return None
    lat_ref, lon_ref = _ref(gps.get(_GPS_LAT_REF)), _ref(gps.get(_GPS_LON_REF))
    if lat_ref not in (None, "N", "S") or lon_ref not in (None, "E", "W"):
        return None
    latitude = -latitude if lat_ref == "S" else latitude
    longitude = -longitude if lon_ref == "W" else longitude
    if latitude == 0 and longitude == 0:  # what receivers write before they have a fix
        return None
    return GpsPosition(latitude, longitude, _altitude(gps))


def _altitude(gps: dict) -> float | None:
    altitude = _number(gps.get(_GPS_ALT))
    if altitude is None or altitude < 0:
        return None
    ref = gps.get(_GPS_ALT_REF)
    if isinstance(ref, (bytes, bytearray)):
        ref = ref[0] if ref else 0
    if ref not in (None, 0, 1):
        return None
    altitude = -altitude if ref == 1 else altitude
    return altitude if -MAX_ALTITUDE_M / 10 <= altitude <= MAX_ALTITUDE_M else None


def _clean(value: object) -> str | None:
    """EXIF ASCII text, NUL padding and surrounding spaces removed; None when nothing is left."""
    text = _text(value)
    text = " ".join(text.split("\x00")[0].split()) if text else None  # some firmware pads past a NUL
    return text or None


def camera_facts(exif: Image.Exif) -> CameraFacts:
    """Camera make and model, lens, orientation and ImageDescription from EXIF (None where absent)."""
    try:
        sub = exif.get_ifd(EXIF_IFD)
    except Exception:
        sub = {}
    lens = _clean(sub.get(_LENS_MODEL))
    lens_make = _clean(sub.get(_LENS_MAKE))
    if lens and lens_make and not lens.lower().startswith(lens_make.lower()):
        lens = f"{lens_make} {lens}"
    orientation = exif.get(_ORIENTATION)
    if not isinstance(orientation, int) or not 1 <= orientation <= 8:
        orientation = None
    description = _clean(exif.get(_DESCRIPTION))
    make, model = _clean(exif.get(_MAKE)), _clean(exif.get(_MODEL))
    if description and _is_boilerplate(description, make, model):
        description = None
    return CameraFacts(make, model, lens, orientation, description)


def _is_boilerplate(description: str, make: str | None, model: str | None) -> bool:
    """Firmware fills ImageDescription with its own name ("OLYMPUS DIGITAL CAMERA"): not a caption."""
    text = description.casefold()
    names = {n.casefold() for n in (make, model) if n}
    return text in names or text.endswith("digital camera") or text.startswith("file written by")


def camera_name(make: str | None, model: str | None) -> str | None:
    """What a person calls the camera: the model, with the make in front unless the model has it."""
    if not model:
        return make
    if not make or model.lower().startswith(make.split()[0].lower()):
        return model
    return f"{make} {model}"
