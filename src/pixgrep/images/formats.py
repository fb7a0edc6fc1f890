"""File-name facts about image formats, without importing a decoder (the folder walk and a cold
search need them; Pillow is imported only where pixels are read)."""

from __future__ import annotations

# Camera RAW files: decoded through rawpy (LibRaw) when the `raw` extra is installed.
RAW_EXTENSIONS = frozenset(
    ".3fr .ari .arw .bay .cr2 .cr3 .crw .dcr .dng .erf .fff .iiq .k25 .kdc .mef .mos .mrw .nef .nrw "
    ".orf .pef .raf .rw2 .rwl .sr2 .srf .srw .x3f".split()
)
