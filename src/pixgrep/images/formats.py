"""File-name facts about image formats, without importing a decoder at import time (the folder walk
and a cold search need them; Pillow is imported only when the readable extensions are first asked)."""

from __future__ import annotations

from functools import lru_cache

# Camera RAW files: decoded through rawpy (LibRaw) when the `raw` extra is installed.
RAW_EXTENSIONS = frozenset(
    ".3fr .ari .arw .bay .cr2 .cr3 .crw .dcr .dng .erf .fff .iiq .k25 .kdc .mef .mos .mrw .nef .nrw "
    ".orf .pef .raf .rw2 .rwl .sr2 .srf .srw .x3f".split()
)

# Formats Pillow can open that are not pictures a person searches, or need outside programs:
# scientific and weather-data stubs, PostScript (needs Ghostscript), MPEG video, IPTC sidecars.
_NOT_PHOTOS = frozenset({"BUFR", "GRIB", "HDF5", "WMF", "EPS", "MPEG", "IPTC"})


@lru_cache(maxsize=1)
def image_extensions() -> frozenset[str]:
    """Lower-case extensions (".jpg") of every format Pillow and pillow-heif can open."""
    from PIL import Image

    from pixgrep.images.decode import register_plugins

    register_plugins()
    Image.init()
    extensions = {
        ext
        for ext, fmt in Image.registered_extensions().items()
        if fmt in Image.OPEN and fmt not in _NOT_PHOTOS
    }
    extensions.add(".mpo")  # multi-picture JPEGs: opened by the JPEG plugin
    return frozenset(extensions | {".heic", ".heif", ".avif"})
