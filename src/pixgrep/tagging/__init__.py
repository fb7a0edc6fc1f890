"""Tagging image files: zero-shot labels (`classify.py`) and writing them as XMP sidecar keywords
(`xmp.py`). `pixgrep classify` is the command; the zero-shot maths is shared with eval/zeroshot."""
