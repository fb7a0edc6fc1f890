"""XMP sidecars: valid XML parsed back, merged with existing content, images left byte-identical."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET

import pytest
from PIL import Image

from pixgrep.errors import PixgrepError
from pixgrep.tagging import xmp

RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
DC = "{http://purl.org/dc/elements/1.1/}"
LR = "{http://ns.adobe.com/lightroom/1.0/}"
DK = "{http://www.digikam.org/ns/1.0/}"


def _image(tmp_path, name="IMG_0001.jpg"):
    path = tmp_path / name
    Image.new("RGB", (16, 12), (200, 30, 40)).save(path, quality=90)
    return path


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _lis(root, prop):
    element = root.find(f".//{prop}")
    assert element is not None, f"{prop} missing"
    return [li.text for li in element.iter(f"{RDF}li")]


def test_new_sidecar_is_valid_xmp_and_image_untouched(tmp_path):
    image = _image(tmp_path)
    before, mtime = _sha(image), image.stat().st_mtime_ns
    added = xmp.add_keywords(image, ["cat", "sofa & cushion"])
    assert added == ["cat", "sofa & cushion"]
    sidecar = tmp_path / "IMG_0001.jpg.xmp"
    assert xmp.sidecar_path(image) == sidecar and sidecar.exists()
    text = sidecar.read_text("utf-8")
    assert text.startswith("<?xpacket begin=") and text.rstrip().endswith('<?xpacket end="w"?>')
    root = ET.fromstring(text.split("?>", 1)[1].rsplit("<?xpacket", 1)[0])
    assert root.tag == "{adobe:ns:meta/}xmpmeta"
    assert _lis(root, f"{DC}subject") == ["cat", "sofa & cushion"]
    assert root.find(f".//{DC}subject/{RDF}Bag") is not None
    assert _lis(root, f"{LR}hierarchicalSubject") == ["cat", "sofa & cushion"]
    assert root.find(f".//{DK}TagsList/{RDF}Seq") is not None
    assert xmp.read_keywords(sidecar) == ["cat", "sofa & cushion"]
    assert _sha(image) == before and image.stat().st_mtime_ns == mtime
    # no temp file left behind
    assert {p.name for p in tmp_path.iterdir()} == {"IMG_0001.jpg", "IMG_0001.jpg.xmp"}


DARKTABLE_SIDECAR = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:darktable="http://darktable.sf.net/"
    xmp:Rating="3"
    darktable:xmp_version="5"
    darktable:history_end="2">
   <dc:subject>
    <rdf:Bag>
     <rdf:li>holiday</rdf:li>
     <rdf:li>cat</rdf:li>
    </rdf:Bag>
   </dc:subject>
   <darktable:history>
    <rdf:Seq>
     <rdf:li darktable:operation="exposure" darktable:enabled="1"/>
    </rdf:Seq>
   </darktable:history>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def test_merges_into_existing_sidecar_keeping_everything(tmp_path):
    image = _image(tmp_path, "a.jpg")
    sidecar = tmp_path / "a.jpg.xmp"
    sidecar.write_text(DARKTABLE_SIDECAR, "utf-8")
    before = _sha(image)
    added = xmp.add_keywords(image, ["cat", "sofa"])
    assert added == ["sofa"]  # cat was already there
    text = sidecar.read_text("utf-8")
    root = ET.fromstring(text.split("?>", 1)[1].rsplit("<?xpacket", 1)[0])
    assert _lis(root, f"{DC}subject") == ["holiday", "cat", "sofa"]
    desc = root.find(f".//{RDF}Description")
    assert desc.get("{http://ns.adobe.com/xap/1.0/}Rating") == "3"
    assert desc.get("{http://darktable.sf.net/}xmp_version") == "5"
    history = root.find(".//{http://darktable.sf.net/}history")
    assert history is not None and len(list(history.iter(f"{RDF}li"))) == 1
    assert "darktable:history" in text and "dc:subject" in text  # prefixes kept, not ns0:
    # no digiKam/Lightroom list that would shadow "holiday" in digiKam was added
    assert root.find(f".//{DK}TagsList") is None and root.find(f".//{LR}hierarchicalSubject") is None
    assert _sha(image) == before


def test_existing_digikam_list_is_extended(tmp_path):
    image = _image(tmp_path)
    xmp.add_keywords(image, ["cat"])
    assert xmp.add_keywords(image, ["dog", "cat"]) == ["dog"]
    text = xmp.sidecar_path(image).read_text("utf-8")
    root = ET.fromstring(text.split("?>", 1)[1].rsplit("<?xpacket", 1)[0])
    assert _lis(root, f"{DK}TagsList") == ["cat", "dog"]
    assert _lis(root, f"{LR}hierarchicalSubject") == ["cat", "dog"]
    assert _lis(root, f"{DC}subject") == ["cat", "dog"]


def test_up_to_date_sidecar_is_not_rewritten(tmp_path):
    image = _image(tmp_path)
    xmp.add_keywords(image, ["cat"])
    sidecar = xmp.sidecar_path(image)
    content = sidecar.read_bytes()
    mtime = sidecar.stat().st_mtime_ns
    assert xmp.add_keywords(image, ["cat"]) == []
    assert sidecar.read_bytes() == content and sidecar.stat().st_mtime_ns == mtime


def test_invalid_sidecar_is_left_alone(tmp_path):
    image = _image(tmp_path)
    sidecar = xmp.sidecar_path(image)
    sidecar.write_text("<x:xmpmeta this is not xml", "utf-8")
    with pytest.raises(PixgrepError, match="not valid XML"):
        xmp.check_sidecar(image)
    with pytest.raises(PixgrepError, match="left unchanged"):
        xmp.add_keywords(image, ["cat"])
    assert sidecar.read_text("utf-8") == "<x:xmpmeta this is not xml"
    sidecar.write_text("<html><body/></html>", "utf-8")
    with pytest.raises(PixgrepError, match="not an XMP packet"):
        xmp.add_keywords(image, ["cat"])
