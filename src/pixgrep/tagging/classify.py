"""`pixgrep classify`: zero-shot labels for image files (prompt ensembling), optionally into XMP."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from pixgrep.catalog.scan import list_images
from pixgrep.errors import PixgrepError
from pixgrep.models.base import Encoder
from pixgrep.tagging import WRITE_MIN_PROBABILITY

BATCH = 16
log = logging.getLogger(__name__)


def expand_paths(paths: Sequence[str | os.PathLike]) -> tuple[list[Path], set[Path]]:
    """Files as given plus image files found (recursively, sorted) under given folders.

    Returns (all files, the subset named explicitly). A path that does not exist is an error.
    """
    files: list[Path] = []
    explicit: set[Path] = set()
    for raw in paths:
        path = Path(os.path.expanduser(raw))
        if path.is_dir():
            files.extend(list_images(path))
        elif path.is_file():
            files.append(path)
            explicit.add(path)
        else:
            raise PixgrepError(f"{raw}: no such file or folder")
    files = list(dict.fromkeys(files))
    if not files:
        raise PixgrepError("no image files to classify")
    return files, explicit


def classify_paths(
    encoder: Encoder,
    paths: Sequence[str | os.PathLike],
    labels: Sequence[str],
    *,
    top: int = 3,
    templates: Sequence[str] | None = None,
    write_xmp: bool = False,
    min_probability: float = WRITE_MIN_PROBABILITY,
) -> list[dict]:
    """Per image: the `top` labels with probabilities (tagging.zeroshot.label_probabilities: softmax
    over all labels, or a sigmoid per label for SigLIP-family models; each row's
    `probability_kind` says which), prompts ensembled over `templates`, CLIP's 80 ImageNet ones
    by default. With write_xmp, those of them with probability >= min_probability go into the
    image's XMP sidecar: by default (0.5) only labels that clearly fit (with softmax, at most the
    one clear winner, since the probabilities sum to 1).
    Unreadable files found inside a folder are skipped with a warning; a named one is an error."""
    from pixgrep.images.decode import open_image
    from pixgrep.progress import bar
    from pixgrep.tagging import xmp
    from pixgrep.tagging.templates import imagenet_templates
    from pixgrep.tagging.zeroshot import class_text_vectors, label_probabilities, probability_kind, top_labels

    if top < 1:
        raise PixgrepError("--top must be at least 1")
    files, explicit = expand_paths(paths)
    if write_xmp:  # refuse before any work if an existing sidecar cannot be merged into
        for path in files:
            xmp.check_sidecar(path)
    class_vectors = class_text_vectors(encoder, labels, templates or imagenet_templates())
    results: list[dict] = []
    progress = bar(len(files), "classify", "img")
    try:
        for start in range(0, len(files), BATCH):
            batch, images = [], []
            for path in files[start : start + BATCH]:
                try:
                    images.append(open_image(path))
                    batch.append(path)
                except PixgrepError as exc:
                    if path in explicit:
                        raise PixgrepError(f"{path}: {exc}") from None
                    log.warning("skipped %s: %s", path, exc)
            progress.update(len(files[start : start + BATCH]))
            if not images:
                continue
            vectors = encoder.encode_images(images)
            bias = encoder.logit_bias
            probabilities = label_probabilities(vectors, class_vectors, encoder.logit_scale, bias)
            for path, best in zip(batch, top_labels(probabilities, labels, top), strict=True):
                row: dict = {
                    "path": str(path),
                    "labels": [{"label": label, "probability": p} for label, p in best],
                    "probability_kind": probability_kind(bias),
                }
                if write_xmp:
                    keywords = [label for label, p in best if p >= min_probability]
                    row["sidecar"] = str(xmp.sidecar_path(path))
                    row["keywords_added"] = xmp.add_keywords(path, keywords) if keywords else []
                results.append(row)
    finally:
        progress.close()
    if not results:
        raise PixgrepError("none of the files could be read as images")
    return results
