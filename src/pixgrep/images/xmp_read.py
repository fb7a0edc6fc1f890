"""Keywords, title, description (and a GPS position) from XMP packets and IPTC blocks.

XMP comes embedded in the image (JPEG APP1, PNG iTXt, TIFF tag 700, WebP/HEIF boxes) or in a
sidecar beside it. Sidecar names, in the order they are looked for:

    IMG_0001.jpg.xmp   darktable, digiKam's default, and pixgrep's `classify --write-xmp`
    IMG_0001.xmp       digiKam's "compatible" naming, Lightroom, Capture One, RawTherapee

Keywords are read from every list photo managers write: dc:subject (the standard flat list),
lr:hierarchicalSubject ("Places|Italy|Florence", darktable and Lightroom) and digiKam:TagsList
("Places/Italy/Florence", turned into the same "|" form), merged without repeats, in order.
Title and description are the x-default (else first) entry of dc:title / dc:description, whether
written as an rdf:Alt or as a plain attribute. GPS in XMP uses exif:GPSLatitude "43,28.0469N".

This module only reads; `pixgrep.tagging.xmp` writes sidecars (same namespaces). Parsing is by the
standard library's expat, which refuses external entities and limits entity expansion.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
DC = "http://purl.org/dc/elements/1.1/"
LR = "http://ns.adobe.com/lightroom/1.0/"
DIGIKAM = "http://www.digikam.org/ns/1.0/"
EXIF_NS = "http://ns.adobe.com/exif/1.0/"
PHOTOSHOP = "http://ns.adobe.com/photoshop/1.0/"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
MAX_PACKET_BYTES = 4 << 20  # a sidecar bigger than this is not a metadata file

_XMP_GPS = re.compile(r"^\s*(\d+(?:\.\d+)?)(?:,(\d+(?:\.\d+)?))?(?:,(\d+(?:\.\d+)?))?\s*([NSEW])\s*$", re.I)


@dataclass
class TextFields:
    """What a person wrote about a picture; empty when nothing was found."""

    keywords: list[str] = field(default_factory=list)
    title: str | None = None
    description: str | None = None
    latitude: float | None = None
    longitude: float | None = None

    def merge(self, other: TextFields) -> TextFields:
        """self first: its title/description/position win, keywords of both are kept (no repeats)."""
        return TextFields(
            _unique(self.keywords + other.keywords),
            self.title or other.title,
            self.description or other.description,
            self.latitude if self.latitude is not None else other.latitude,
            self.longitude if self.latitude is not None else other.longitude,
        )


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _unique(words: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for word in words:
        word = " ".join(word.split())
        if word and word.casefold() not in seen:
            seen.add(word.casefold())
            out.append(word)
    return out


def sidecar_candidates(image_path: str) -> list[str]:
    """The sidecar names of an image, in the order they are read (see module docstring)."""
    stem, ext = os.path.splitext(image_path)
    names = [image_path + ".xmp"]
    if ext:
        names += [stem + ".xmp", stem + ".XMP"]
    names.append(image_path + ".XMP")
    return list(dict.fromkeys(names))


def _items(element: ET.Element) -> list[ET.Element]:
    """The rdf:li children of a property's Bag/Seq/Alt (or the property itself when it is plain)."""
    for kind in ("Bag", "Seq", "Alt"):
        container = element.find(_q(RDF, kind))
        if container is not None:
            return container.findall(_q(RDF, "li"))
    return [element]


def _values(descriptions: list[ET.Element], ns: str, prop: str) -> list[str]:
    out = []
    for desc in descriptions:
        attribute = desc.get(_q(ns, prop))
        if attribute:
            out.append(attribute)
        for element in desc.findall(_q(ns, prop)):
            out += [li.text.strip() for li in _items(element) if li.text and li.text.strip()]
    return out


def _alt_text(descriptions: list[ET.Element], ns: str, prop: str) -> str | None:
    """The x-default entry of a language alternative (else the first one)."""
    for desc in descriptions:
        attribute = desc.get(_q(ns, prop))
        if attribute and attribute.strip():
            return " ".join(attribute.split())
        for element in desc.findall(_q(ns, prop)):
            items = [li for li in _items(element) if li.text and li.text.strip()]
            items.sort(key=lambda li: li.get(XML_LANG) != "x-default")
            if items:
                return " ".join((items[0].text or "").split())
    return None


def xmp_coordinate(text: str | None, positive: str) -> float | None:
    """XMP's "DDD,MM,SSk" or "DDD,MM.mmk" (k = N/S/E/W) -> signed degrees; None when invalid."""
    match = _XMP_GPS.match(text or "")
    if not match:
        return None
    degrees, minutes, seconds = (float(g) if g else 0.0 for g in match.groups()[:3])
    if minutes >= 60 or seconds >= 60:
        return None
    value = degrees + minutes / 60 + seconds / 3600
    direction = match.group(4).upper()
    if direction not in ({"N", "S"} if positive == "N" else {"E", "W"}):
        return None
    limit = 90 if positive == "N" else 180
    if value > limit:
        return None
    return value if direction == positive else -value


def parse_xmp(data: bytes | str) -> TextFields:
    """Fields of one XMP packet; empty fields when it is not parseable (never raises)."""
    if isinstance(data, str):
        data = data.encode("utf-8", "replace")
    if len(data) > MAX_PACKET_BYTES:
        return TextFields()
    data = data.strip(b"\x00 \t\r\n")
    # Embedded packets often carry padding or junk after the end; parse from <x:xmpmeta or <rdf:RDF.
    start = min((i for i in (data.find(b"<x:xmpmeta"), data.find(b"<rdf:RDF")) if i >= 0), default=-1)
    if start < 0:
        return TextFields()
    for end_tag in (b"</x:xmpmeta>", b"</rdf:RDF>"):
        end = data.rfind(end_tag)
        if end > start:
            data = data[start : end + len(end_tag)]
            break
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        return TextFields()
    descriptions = list(root.iter(_q(RDF, "Description")))
    hierarchical = _values(descriptions, LR, "hierarchicalSubject")
    hierarchical += [tag.replace("/", "|") for tag in _values(descriptions, DIGIKAM, "TagsList")]
    keywords = _values(descriptions, DC, "subject") + hierarchical
    title = _alt_text(descriptions, DC, "title") or _alt_text(descriptions, PHOTOSHOP, "Headline")
    latitude = xmp_coordinate(_first(descriptions, EXIF_NS, "GPSLatitude"), "N")
    longitude = xmp_coordinate(_first(descriptions, EXIF_NS, "GPSLongitude"), "E")
    if latitude is None or longitude is None or (latitude == 0 and longitude == 0):
        latitude = longitude = None
    description = _alt_text(descriptions, DC, "description")
    return TextFields(_unique(keywords), title, description, latitude, longitude)


def _first(descriptions: list[ET.Element], ns: str, prop: str) -> str | None:
    values = _values(descriptions, ns, prop)
    return values[0] if values else None


def read_sidecar(path: str) -> TextFields:
    """Fields of a sidecar file; empty when it cannot be read or parsed (never raises)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PACKET_BYTES + 1)
    except OSError:
        return TextFields()
    return parse_xmp(data)


def _iptc_text(value: bytes, utf8: bool) -> str:
    if not utf8:
        try:
            return value.decode("utf-8")  # many writers use UTF-8 without saying so
        except UnicodeDecodeError:
            return value.decode("latin-1")
    return value.decode("utf-8", "replace")


def parse_iptc(info: dict | None) -> TextFields:
    """IPTC-IIM record 2 (Pillow's getiptcinfo dict): keywords 2:25, object name 2:05, caption 2:120."""
    if not info:
        return TextFields()
    utf8 = info.get((1, 90)) == b"\x1b%G"  # the coded character set escape for UTF-8

    def texts(key: tuple[int, int]) -> list[str]:
        value = info.get(key)
        values = value if isinstance(value, list) else [value] if value is not None else []
        cleaned = (" ".join(_iptc_text(v, utf8).split()) for v in values if isinstance(v, bytes))
        return [text for text in cleaned if text]

    titles, captions = texts((2, 5)), texts((2, 120))
    title, caption = (titles[0] if titles else None), (captions[0] if captions else None)
    return TextFields(_unique(texts((2, 25))), title, caption)
