"""A folder of real camera files (GPS, cameras, XMP keywords) from ../shared/data/exif-samples plus
two generated pictures with hand-written sidecars in darktable's and digiKam's layouts.

What the filters must find in it (checked against exifread/reverse-geocode in test_metadata.py):
    87_OSError.jpg     Nikon D70s, taken in Florence (43.786 N, 11.235 E)
    DSCN0010/0012.jpg  Nikon COOLPIX P6000, near Arezzo (50 km from Florence)
    iphone_hdr_NO.jpg  Apple iPhone 6, Spain
    Canon_40D.jpg      Canon EOS 40D, no position
    Nikon_D70.jpg      Nikon D70, no position
    BlueSquare.jpg     no camera; embedded XMP/IPTC keywords "Blue Square", "XMP", ...
    bridge.jpg         darktable sidecar bridge.jpg.xmp: "bridge", "Places|Italy|Florence"
    anna.jpg           digiKam sidecar anna.xmp: "Anna", "Holiday", "People|Anna", GPS in Paris
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from conftest import shared_data
from PIL import Image

SAMPLES = (
    "gps/DSCN0010.jpg",
    "gps/DSCN0012.jpg",
    "tests/87_OSError.jpg",
    "Canon_40D.jpg",
    "hdr/iphone_hdr_NO.jpg",
    "xmp/BlueSquare.jpg",
    "Nikon_D70.jpg",
)


DARKTABLE = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
    xmlns:darktable="http://darktable.sf.net/"
   xmp:Rating="3"
   darktable:xmp_version="5"
   darktable:history_end="0">
   <dc:title><rdf:Alt><rdf:li xml:lang="x-default">Ponte Vecchio at dusk</rdf:li></rdf:Alt></dc:title>
   <dc:subject><rdf:Bag><rdf:li>bridge</rdf:li><rdf:li>darktable|format|jpg</rdf:li></rdf:Bag></dc:subject>
   <lr:hierarchicalSubject>
    <rdf:Bag><rdf:li>Places|Italy|Florence</rdf:li></rdf:Bag>
   </lr:hierarchicalSubject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""

DIGIKAM = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:digiKam="http://www.digikam.org/ns/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:exif="http://ns.adobe.com/exif/1.0/"
   exif:GPSLatitude="48,51.5N"
   exif:GPSLongitude="2,17.4E">
   <digiKam:TagsList><rdf:Seq><rdf:li>People/Anna</rdf:li><rdf:li>Holiday</rdf:li></rdf:Seq></digiKam:TagsList>
   <dc:description><rdf:Alt><rdf:li xml:lang="x-default">Anna by the river</rdf:li></rdf:Alt></dc:description>
   <dc:subject><rdf:Bag><rdf:li>Anna</rdf:li><rdf:li>Holiday</rdf:li></rdf:Bag></dc:subject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""


def plain_jpeg(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize((32, 24)).save(path)
    return path


def build_photo_folder(root: Path) -> Path:
    samples = shared_data("exif-samples") / "jpg"
    root.mkdir(parents=True, exist_ok=True)
    for name in SAMPLES:
        shutil.copy(samples / name, root / Path(name).name)
    plain_jpeg(root / "bridge.jpg", 1)
    (root / "bridge.jpg.xmp").write_text(DARKTABLE, encoding="utf-8")
    plain_jpeg(root / "anna.jpg", 2)
    (root / "anna.xmp").write_text(DIGIKAM, encoding="utf-8")
    return root
