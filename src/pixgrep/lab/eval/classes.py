"""`pixgrep eval classes`: the rclip paper's class retrieval metric and zero-shot accuracy."""

from __future__ import annotations

import os
from collections.abc import Sequence

from pixgrep.api import Catalog
from pixgrep.lab.eval.datasets import read_class_folder
from pixgrep.lab.eval.vectors import catalog_image_vectors
from pixgrep.lab.metrics import class_retrieval_ranks, classification_ranks, recall_at_k
from pixgrep.progress import bar, show_progress
from pixgrep.tagging.templates import SINGLE_TEMPLATE, templates_for
from pixgrep.tagging.zeroshot import class_text_vectors


def run_classes(
    catalog: Catalog,
    folder: str | os.PathLike,
    template_modes: Sequence[str] = ("single", "ensemble"),
) -> dict:
    """retrieval_top1/top5: for each class, the prompt "a photo of a {class}." ranks all images;
    is an image of that class first / in the first five (percent of classes).
    zeroshot_top1/top5: per template mode, percent of images whose class prompt(s) score best."""
    data = read_class_folder(folder)
    template_sets = {mode: templates_for(mode) for mode in dict.fromkeys(template_modes)}
    image_vectors = catalog_image_vectors(catalog, [folder], data.images, progress=show_progress())
    encoder = catalog.encoder
    extra = sum(len(t) for t in template_sets.values() if t != [SINGLE_TEMPLATE])
    texts = len(data.class_names) * (1 + extra)
    progress = bar(texts, "text tower", "prompt")
    try:
        retrieval_vectors = class_text_vectors(encoder, data.class_names, [SINGLE_TEMPLATE], progress.update)
        ranks = class_retrieval_ranks(retrieval_vectors, image_vectors, data.labels)
        top1: dict[str, float] = {}
        top5: dict[str, float] = {}
        for mode, templates in template_sets.items():
            if templates == [SINGLE_TEMPLATE]:
                class_vectors = retrieval_vectors
            else:
                class_vectors = class_text_vectors(encoder, data.class_names, templates, progress.update)
            class_ranks = classification_ranks(image_vectors @ class_vectors.T, data.labels)
            top1[mode] = round(recall_at_k(class_ranks, 1), 6)
            top5[mode] = round(recall_at_k(class_ranks, 5), 6)
    finally:
        progress.close()
    return {
        "retrieval_top1": round(recall_at_k(ranks, 1), 6),
        "retrieval_top5": round(recall_at_k(ranks, 5), 6),
        "zeroshot_top1": top1,
        "zeroshot_top5": top5,
        "templates": {mode: len(t) for mode, t in template_sets.items()},
        "classes": len(data.class_names),
        "images": len(data.images),
        "model": encoder.model_id,
    }
