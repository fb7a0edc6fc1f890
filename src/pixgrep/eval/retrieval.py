"""`pixgrep eval retrieval`: the Flickr8k / Flickr30k / COCO image-text retrieval protocol."""

from __future__ import annotations

import os

from pixgrep.api import Catalog
from pixgrep.eval.datasets import build_caption_set, read_captions, read_split
from pixgrep.eval.progress import bar, show_progress
from pixgrep.eval.vectors import catalog_image_vectors
from pixgrep.eval.zeroshot import encode_texts_batched
from pixgrep.metrics import retrieval_metrics


def run_retrieval(
    catalog: Catalog,
    images_dir: str | os.PathLike,
    captions_file: str | os.PathLike,
    split_file: str | os.PathLike | None = None,
) -> dict:
    """Recall@1/5/10 (percent), median and mean rank, both directions, as one flat dict."""
    pairs = read_captions(captions_file)
    split = read_split(split_file) if split_file is not None else None
    data = build_caption_set(images_dir, pairs, split)
    # Only the evaluated images are indexed (a 1000-image test split of an 8000-image folder).
    image_vectors = catalog_image_vectors(catalog, data.images, data.images, progress=show_progress())
    progress = bar(len(data.captions), "text tower", "caption")
    try:
        caption_vectors = encode_texts_batched(catalog.encoder, data.captions, progress.update)
    finally:
        progress.close()
    metrics = retrieval_metrics(image_vectors, caption_vectors, data.caption_image)
    result: dict[str, object] = {
        key: round(value, 6) if isinstance(value, float) else value for key, value in metrics.items()
    }
    result["model"] = catalog.encoder.model_id
    result["caption_keys_remapped"] = len(data.remapped)
    return result
