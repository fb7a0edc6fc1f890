"""Zero-shot classification: class names -> text vectors (prompt ensembling) -> probabilities."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from pixgrep.models.base import Encoder, unit_rows

TEXT_BATCH = 256


def encode_texts_batched(
    encoder: Encoder, texts: Sequence[str], progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """encode_texts in batches (bounded memory), calling progress(n) after each batch.

    Texts are batched in order of length (and returned in the given order), so towers that pad to
    the longest text of a batch (MiniLM) waste little work on padding.
    """
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), encoder.dim), np.float32)
    for start in range(0, len(texts), TEXT_BATCH):
        rows = order[start : start + TEXT_BATCH]
        out[rows] = np.asarray(encoder.encode_texts([texts[i] for i in rows]), dtype=np.float32)
        if progress:
            progress(len(rows))
    return out


def class_text_vectors(
    encoder: Encoder,
    class_names: Sequence[str],
    templates: Sequence[str],
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """(classes, d): each class's prompts encoded, averaged, renormalised (CLIP's prompt ensembling).

    With one template this is just the unit text vector of that prompt.
    """
    prompts = [t.replace("{}", name) for name in class_names for t in templates]
    vectors = encode_texts_batched(encoder, prompts, progress)
    per_class = vectors.reshape(len(class_names), len(templates), -1)
    return unit_rows(unit_rows(per_class).mean(axis=1))


def softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def label_probabilities(
    image_vectors: np.ndarray,
    class_vectors: np.ndarray,
    logit_scale: float,
    logit_bias: float | None = None,
) -> np.ndarray:
    """(images, classes) probabilities as the model was trained to give them: CLIP's
    softmax(logit_scale * cosine) over the classes, or, for SigLIP-family models (those with a
    logit bias), each pair's own sigmoid(logit_scale * cosine + logit_bias), in [0, 1] and not
    summing to 1 (probability_kind names which)."""
    cosines = unit_rows(image_vectors) @ unit_rows(class_vectors).T
    if logit_bias is None:
        return softmax(float(logit_scale) * cosines)
    logits = float(logit_scale) * cosines.astype(np.float64) + float(logit_bias)
    return 0.5 * (1.0 + np.tanh(0.5 * logits))  # the logistic sigmoid, without exp's overflow


def probability_kind(logit_bias: float | None) -> str:
    """ "sigmoid" for models with a logit bias (SigLIP family), else "softmax"."""
    return "softmax" if logit_bias is None else "sigmoid"


def top_labels(probabilities: np.ndarray, labels: Sequence[str], top: int) -> list[list[tuple[str, float]]]:
    """Per image, the `top` labels by probability, best first; ties keep the order labels were given."""
    out = []
    for row in np.asarray(probabilities):
        order = np.argsort(-row, kind="stable")[:top]
        out.append([(labels[i], float(row[i])) for i in order])
    return out
