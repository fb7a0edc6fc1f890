"""`pixgrep eval retrieval`: the Flickr8k / Flickr30k / COCO image-text retrieval protocol."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from pixgrep.api import Catalog
from pixgrep.lab.eval.datasets import build_caption_set, read_captions, read_split
from pixgrep.lab.eval.vectors import catalog_image_vectors
from pixgrep.lab.metrics import retrieval_metrics, retrieval_metrics_from_scores
from pixgrep.progress import bar, show_progress
from pixgrep.tagging.zeroshot import encode_texts_batched


def run_retrieval(
    catalog: Catalog,
    images_dir: str | os.PathLike,
    captions_file: str | os.PathLike,
    split_file: str | os.PathLike | None = None,
    *,
    all_parts: bool = False,
    ignore_tone: bool = False,
) -> dict:
    """Recall@1/5/10 (percent), median and mean rank, both directions, as one flat dict.

    all_parts: score each caption as `--all` search does (its parts combined, search/allof.py);
    both directions then rank by that score. ignore_tone: remove the tone component from the
    caption vectors first (search/tone.py). The result records which were on."""
    pairs = read_captions(captions_file)
    split = read_split(split_file) if split_file is not None else None
    data = build_caption_set(images_dir, pairs, split)
    # Only the evaluated images are indexed (a 1000-image test split of an 8000-image folder).
    image_vectors = catalog_image_vectors(catalog, data.images, data.images, progress=show_progress())
    encoder = catalog.encoder
    transform = None
    captions = data.captions
    if ignore_tone:  # as search does: tone-only list items dropped, then the tone projection
        from pixgrep.search.tone import strip_tone_items, tone_space

        captions = [strip_tone_items(c) for c in captions]
        transform = tone_space(encoder).project
    if all_parts:
        scores = all_of_scores(encoder, captions, image_vectors, transform, progress=True)
        metrics = retrieval_metrics_from_scores(scores, data.caption_image)
    else:
        progress = bar(len(data.captions), "text tower", "caption")
        try:
            caption_vectors = encode_texts_batched(encoder, captions, progress.update)
        finally:
            progress.close()
        if transform is not None:
            caption_vectors = transform(caption_vectors)
        metrics = retrieval_metrics(image_vectors, caption_vectors, data.caption_image)
    result: dict[str, object] = {k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()}
    result["model"] = catalog.encoder.model_id
    result["caption_keys_remapped"] = len(data.remapped)
    result["caption_keys_skipped"] = len(data.skipped)
    result["all_parts"] = all_parts
    result["ignore_tone"] = ignore_tone
    cut = sum(1 for c in encoder.cut_texts(data.captions) if c)
    if cut:  # the captions the text tower reads only in part (plain search sees only the start)
        result["captions_cut"] = cut
    return result


def all_of_scores(
    encoder,
    texts: Sequence[str],
    images: np.ndarray,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    power: float | None = None,
    progress: bool = False,
) -> np.ndarray:
    """(len(texts), len(images)) all-of scores of each text against in-memory image vectors.

    Every distinct text (parts and whole queries) is encoded once; transform maps the text vectors
    (the tone projection) before scoring. Each image set plays the catalog (its score distribution
    standardises the parts)."""
    from pixgrep.search.allof import POWER, combine, plan_parts

    cuts = encoder.cut_texts(list(texts))
    plans = [plan_parts(text, bool(cut)) for text, cut in zip(texts, cuts, strict=True)]
    unique = list(dict.fromkeys(t for plan in plans for t in plan.texts()))
    ticker = bar(len(unique), "text tower", "text") if progress else None
    try:
        vectors = encode_texts_batched(encoder, unique, ticker.update if ticker else None)
    finally:
        if ticker:
            ticker.close()
    if transform is not None:
        vectors = transform(vectors)
    row = {text: i for i, text in enumerate(unique)}
    images = np.asarray(images, np.float32)
    out = np.empty((len(plans), len(images)), np.float32)
    for i, plan in enumerate(plans):
        scores = vectors[[row[t] for t in plan.texts()]] @ images.T
        out[i] = combine(scores, POWER if power is None else power, plan.weights())
    return out
