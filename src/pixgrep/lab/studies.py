"""The experiments of CLIP image-text studies: `pixgrep rank` and `pixgrep probe`."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from pixgrep.api import Catalog
from pixgrep.errors import PixgrepError
from pixgrep.models.base import Encoder


def open_one_image(path: str | os.PathLike):
    """A PIL image, or a PixgrepError that names the file."""
    from pixgrep.images.decode import open_image

    try:
        return open_image(path)
    except PixgrepError as exc:
        raise PixgrepError(f"{path}: {exc}") from None


def rank_captions(encoder: Encoder, image_path: str | os.PathLike, captions: Sequence[str]) -> dict:
    """Captions sorted by cosine with the image (ties keep the given order), each with its
    probability at the model's logit scale: softmax over the given captions, or each caption's
    sigmoid with the logit bias for SigLIP-family models (`probability_kind` says which)."""
    from pixgrep.models.base import unit_rows
    from pixgrep.tagging.zeroshot import encode_texts_batched, label_probabilities, probability_kind

    captions = list(dict.fromkeys(c.strip() for c in captions if c.strip()))
    if not captions:
        raise PixgrepError("no captions to rank (give them as arguments or with --captions FILE)")
    image_vector = unit_rows(encoder.encode_images([open_one_image(image_path)]))
    text_vectors = unit_rows(encode_texts_batched(encoder, captions))
    cosines = (image_vector @ text_vectors.T)[0]
    bias = encoder.logit_bias
    probabilities = label_probabilities(image_vector, text_vectors, encoder.logit_scale, bias)[0]
    order = np.argsort(-cosines, kind="stable")
    return {
        "image": str(image_path),
        "model": encoder.model_id,
        "logit_scale": float(encoder.logit_scale),
        "logit_bias": bias,
        "probability_kind": probability_kind(bias),
        "captions": [
            {"caption": captions[i], "cosine": float(cosines[i]), "probability": float(probabilities[i])}
            for i in order
        ],
    }


def with_tone(level: str, tone: str) -> str:
    """`a kitchen` + `messy, dingy` -> `a kitchen, messy, dingy` (the tone words appended)."""
    return f"{level.rstrip(' .,')}, {tone.strip()}"


def probe(
    catalog: Catalog,
    levels: Sequence[str],
    roots: Sequence[str | os.PathLike],
    tone: str | None = None,
) -> dict:
    """For each description, the best image under `roots` and its cosine (and with the tone words
    appended, the change in best cosine). Texts are encoded verbatim, not parsed as queries, so
    a `-` or `+` in a description is just text. The catalog must already be indexed."""
    from pixgrep.tagging.zeroshot import encode_texts_batched

    levels = [level.strip() for level in levels]
    if not levels or not all(levels):
        raise PixgrepError("probe needs one or more non-empty descriptions")
    if tone is not None and not tone.strip(" ,"):
        raise PixgrepError('--tone needs some words, e.g. --tone "messy, dingy"')
    texts = list(levels) + ([with_tone(level, tone) for level in levels] if tone else [])
    vectors = encode_texts_batched(catalog.encoder, texts)

    def best(row: np.ndarray) -> tuple[str, float]:
        hits = catalog.search_vector(row, roots=roots, k=1)
        if not hits:
            raise PixgrepError(f"no indexed images under {', '.join(map(str, roots))}")
        return hits[0].path, float(hits[0].score)

    rows = []
    previous = None
    for i, level in enumerate(levels):
        path, score = best(vectors[i])
        row: dict = {"level": i + 1, "query": level, "best": path, "cosine": score}
        row["change"] = None if previous is None else score - previous
        previous = score
        if tone:
            toned_path, toned = best(vectors[len(levels) + i])
            row["tone"] = {
                "query": texts[len(levels) + i],
                "best": toned_path,
                "cosine": toned,
                "change": toned - score,
            }
        rows.append(row)
    return {"model": catalog.encoder.model_id, "tone": tone, "levels": rows}
