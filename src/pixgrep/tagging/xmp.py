"""Keywords into XMP sidecar files, merged with what a sidecar already holds; images untouched.

The sidecar of `IMG_0001.jpg` is `IMG_0001.jpg.xmp` (image name + `.xmp`), the name darktable and
digiKam read and write by default, so two photos `a.jpg` and `a.png` never share one sidecar.
(Lightroom names sidecars `IMG_0001.xmp` and only for raw files; it reads keywords from JPEGs
themselves, which pixgrep never modifies.)

Keywords are written where photo managers look for them:
  dc:subject                (rdf:Bag)  the standard keyword list: darktable, digiKam, Lightroom,
                                        exiftool, Windows, macOS all read it
  lr:hierarchicalSubject    (rdf:Bag)  Lightroom / digiKam / darktable tag trees (flat here)
  digiKam:TagsList          (rdf:Seq)  digiKam's own tag list
Existing keywords and every other property of an existing sidecar are kept; a keyword already
present is not repeated. In an existing sidecar, the lr: and digiKam: lists are extended only
where they already exist (a new one holding only pixgrep's labels would hide the older keywords
from digiKam, which reads those lists before dc:subject). The file is replaced atomically (temp
file + rename), so an interrupted run leaves the old sidecar or the new one, never half of one.
A sidecar that is not valid XMP is left alone and reported.
"""

from __future__ import annotations

import io
import os
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from pixgrep.errors import PixgrepError

X = "adobe:ns:meta/"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
DC = "http://purl.org/dc/elements/1.1/"
LR = "http://ns.adobe.com/lightroom/1.0/"
DIGIKAM = "http://www.digikam.org/ns/1.0/"
PREFIXES = {"x": X, "rdf": RDF, "dc": DC, "lr": LR, "digiKam": DIGIKAM}

# (namespace, property, container) for each keyword list we keep up to date
KEYWORD_PROPERTIES = (
    (DC, "subject", "Bag"),
    (LR, "hierarchicalSubject", "Bag"),
    (DIGIKAM, "TagsList", "Seq"),
)

XPACKET_BEGIN = '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
XPACKET_END = '\n<?xpacket end="w"?>\n'


def sidecar_path(image: str | os.PathLike) -> Path:
    image = Path(image)
    return image.with_name(image.name + ".xmp")


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _parse(path: Path) -> tuple[ET.Element, dict[str, str]]:
    """The root element and the file's own prefix -> namespace map (to write the same prefixes back)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PixgrepError(f"cannot read sidecar {path}: {exc.strerror}") from None
    prefixes: dict[str, str] = {}
    try:
        for _event, (prefix, uri) in ET.iterparse(io.BytesIO(data), events=("start-ns",)):
            prefixes.setdefault(prefix, uri)
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise PixgrepError(f"sidecar {path} is not valid XML ({exc}); left unchanged") from None
    if root.tag not in (_q(X, "xmpmeta"), _q(RDF, "RDF")):
        raise PixgrepError(f"sidecar {path} is not an XMP packet (root <{root.tag}>); left unchanged")
    return root, prefixes


def _new_packet() -> ET.Element:
    root = ET.Element(_q(X, "xmpmeta"))
    rdf = ET.SubElement(root, _q(RDF, "RDF"))
    ET.SubElement(rdf, _q(RDF, "Description"), {_q(RDF, "about"): ""})
    return root


def _rdf(root: ET.Element) -> ET.Element:
    if root.tag == _q(RDF, "RDF"):
        return root
    rdf = root.find(_q(RDF, "RDF"))
    if rdf is None:
        rdf = ET.SubElement(root, _q(RDF, "RDF"))
    return rdf


def _find_property(rdf: ET.Element, ns: str, prop: str) -> ET.Element | None:
    for desc in rdf.findall(_q(RDF, "Description")):
        element = desc.find(_q(ns, prop))
        if element is not None:
            return element
    return None


def _keyword_list(rdf: ET.Element, ns: str, prop: str, container: str) -> ET.Element:
    """The rdf:Bag/Seq of a property, found in any rdf:Description or created in the first one."""
    element = _find_property(rdf, ns, prop)
    if element is not None:
        for kind in ("Bag", "Seq", "Alt"):
            found = element.find(_q(RDF, kind))
            if found is not None:
                return found
        return ET.SubElement(element, _q(RDF, container))
    descriptions = rdf.findall(_q(RDF, "Description"))
    if not descriptions:
        descriptions = [ET.SubElement(rdf, _q(RDF, "Description"), {_q(RDF, "about"): ""})]
    element = ET.SubElement(descriptions[0], _q(ns, prop))
    return ET.SubElement(element, _q(RDF, container))


def read_keywords(path: str | os.PathLike) -> list[str]:
    """The dc:subject keywords of a sidecar (empty when it has none)."""
    root, _ = _parse(Path(path))
    out = []
    for desc in _rdf(root).findall(_q(RDF, "Description")):
        for li in desc.iterfind(f"{_q(DC, 'subject')}/*/{_q(RDF, 'li')}"):
            if li.text and li.text.strip():
                out.append(li.text.strip())
    return out


def check_sidecar(image: str | os.PathLike) -> None:
    """Raise PixgrepError if the image's existing sidecar could not be merged into."""
    path = sidecar_path(image)
    if path.exists():
        _parse(path)


def add_keywords(image: str | os.PathLike, keywords: Sequence[str]) -> list[str]:
    """Merge keywords into the sidecar of `image` (created if absent); return those newly added."""
    path = sidecar_path(image)
    if path.exists():
        root, file_prefixes = _parse(path)
    else:
        root, file_prefixes = _new_packet(), {}
    rdf = _rdf(root)
    added: list[str] = []
    new = not path.exists()
    changed = new
    for ns, prop, container in KEYWORD_PROPERTIES:
        # In an existing sidecar only dc:subject is created when absent: a new digiKam:TagsList or
        # lr:hierarchicalSubject holding only our labels would hide the older dc:subject keywords
        # from digiKam, which prefers those lists.
        if ns != DC and not new and _find_property(rdf, ns, prop) is None:
            continue
        bag = _keyword_list(rdf, ns, prop, container)
        have = {(li.text or "").strip() for li in bag.findall(_q(RDF, "li"))}
        for word in keywords:
            word = " ".join(word.split())
            if word and word not in have:
                ET.SubElement(bag, _q(RDF, "li")).text = word
                have.add(word)
                changed = True
                if ns == DC:
                    added.append(word)
    if changed:  # an up-to-date sidecar is not rewritten (its mtime and layout stay)
        _write(path, root, file_prefixes)
    return added


def _write(path: Path, root: ET.Element, file_prefixes: dict[str, str]) -> None:
    for prefix, uri in list(PREFIXES.items()) + list(file_prefixes.items()):
        if prefix:
            try:
                ET.register_namespace(prefix, uri)
            except ValueError:  # ET reserves ns0, ns1, ...
                pass
    ET.indent(root, space=" ")
    text = XPACKET_BEGIN + ET.tostring(root, encoding="unicode") + XPACKET_END
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        else:
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise PixgrepError(f"cannot write sidecar {path}: {exc.strerror}") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
