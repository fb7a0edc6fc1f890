"""Tagging image files: zero-shot labels (`classify.py`) and writing them as XMP sidecar keywords
(`xmp.py`). `pixgrep classify` is the command; the zero-shot maths is shared with eval/zeroshot."""

# A sidecar keyword is a claim about the photo: with probabilities that sum to 1 over the labels,
# a floor of one half writes at most one label per image, the one that wins. With a floor of 0,
# every shown label was written: "car" on 10 of 10 dog photos (labels "cat, dog, car").
# Here, not in classify.py, so that the command's --help reads it without numpy.
WRITE_MIN_PROBABILITY = 0.5
