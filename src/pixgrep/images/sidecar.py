"""Everything people search photos by, read from one image file and its XMP sidecars.

Read from the header only (Pillow opens lazily; no pixel is decoded), so filling these for a
catalog costs a file open per image, never a model run. Precedence, first wins:

    position      EXIF GPS IFD, then XMP (sidecar, then embedded) exif:GPSLatitude/GPSLongitude
    title         sidecar XMP, embedded XMP, IPTC 2:05
    description   sidecar XMP, embedded XMP, IPTC 2:120, EXIF ImageDescription
    keywords      all of them, sidecar first, without repeats (case-insensitive)

The sidecar wins because it is where darktable and digiKam write edits, while the embedded
packet is what the camera or an earlier export left.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from PIL import Image

from pixgrep.images.decode import register_plugins
from pixgrep.images.exif import GpsPosition, camera_facts, gps_position
from pixgrep.images.xmp_read import TextFields, parse_iptc, parse_xmp, read_sidecar, sidecar_candidates


@dataclass(frozen=True)
class PhotoMeta:
    latitude: float | None = None
    longitude: float | None = None
    altitude: float | None = None
    make: str | None = None
    model: str | None = None
    lens: str | None = None
    orientation: int | None = None
    title: str | None = None
    description: str | None = None
    keywords: tuple[str, ...] = field(default_factory=tuple)
    sidecars: tuple[str, ...] = ()  # the sidecar files that were read


def sidecars_of(image_path: str, xmp_names: set[str] | None = None) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) of each sidecar that exists, in reading order.

    xmp_names: the names ending in .xmp (any case) in the image's folder, when the caller listed
    it once for many images; then only sidecars that exist are stat'ed.
    """
    found = []
    seen: set[tuple[int, int]] = set()
    for name in sidecar_candidates(image_path):
        if xmp_names is not None and os.path.basename(name) not in xmp_names:
            continue
        try:
            stat = os.stat(name)
        except OSError:
            continue
        if (stat.st_dev, stat.st_ino) in seen:  # IMG.xmp and IMG.XMP on a case-blind file system
            continue
        seen.add((stat.st_dev, stat.st_ino))
        found.append((name, stat.st_size, stat.st_mtime_ns))
    return found


def xmp_names_in(folder: str) -> set[str] | None:
    """The names in `folder` ending in .xmp (any case); None when it cannot be listed."""
    try:
        with os.scandir(folder) as entries:
            return {entry.name for entry in entries if entry.name.lower().endswith(".xmp")}
    except OSError:
        return None


def _embedded(image: Image.Image) -> TextFields:
    packet = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp")
    if packet is None and hasattr(image, "tag_v2"):
        packet = image.tag_v2.get(700)  # TIFF's XMP tag
    fields = parse_xmp(packet) if isinstance(packet, (bytes, str)) else TextFields()
    try:
        from PIL import IptcImagePlugin

        iptc = IptcImagePlugin.getiptcinfo(image)  # type: ignore[arg-type]
    except Exception:  # a malformed APP13 block: no IPTC
        iptc = None
    return fields.merge(parse_iptc(iptc))


def read_photo_meta(image_path: str, sidecars: list[tuple[str, int, int]] | None = None) -> PhotoMeta:
    """The metadata of one image file (see module docstring); fields it lacks are None.

    Never raises for a bad file: an image Pillow cannot open still gets its sidecars' fields.
    """
    sidecars = sidecars_of(image_path) if sidecars is None else sidecars
    written = TextFields()
    for name, _size, _mtime in sidecars:
        written = written.merge(read_sidecar(name))
    position: GpsPosition | None = None
    facts = None
    try:
        register_plugins()  # HEIC/HEIF openers
        with Image.open(image_path) as image:
            exif = image.getexif()
            position = gps_position(exif)
            facts = camera_facts(exif)
            # pillow-heif applies the orientation itself and reports the file's own value here
            original = image.info.get("original_orientation")
            if isinstance(original, int) and 1 <= original <= 8:
                facts = replace(facts, orientation=original)
            written = written.merge(_embedded(image))
    except Exception:  # not an image Pillow opens (RAW without a TIFF header, junk): sidecars only
        pass
    latitude = position.latitude if position else written.latitude
    longitude = position.longitude if position else written.longitude
    return PhotoMeta(
        latitude=latitude,
        longitude=longitude,
        altitude=position.altitude if position else None,
        make=facts.make if facts else None,
        model=facts.model if facts else None,
        lens=facts.lens if facts else None,
        orientation=facts.orientation if facts else None,
        title=written.title,
        description=written.description or (facts.description if facts else None),
        keywords=tuple(written.keywords),
        sidecars=tuple(name for name, _, _ in sidecars),
    )
