"""Image files in, pictures out: safe decoding (draft, orientation, pixel cap, first frame) and EXIF.

Shared by the catalog (indexing), search (image terms), the server (uploads, thumbnails), eval and
pixgrep-mini's feature extraction, so it sits below all of them and imports none of them.
"""
