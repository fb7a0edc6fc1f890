"""`pixgrep eval composed`: Recall@K of composed queries (reference image + modification text).

Protocol of CIRR (Liu et al., 2021): each triplet's query ranks every image of the split; the
reference image itself never counts (it is left out of its own ranking); Recall@1/5/10/50 is the
share of triplets whose target is in the top K. Where the triplets carry CIRR's `img_set.members`,
Recall_subset@1/2/3 ranks the target among the other members of its set only. Ties are ranked
pessimistically (pixgrep.lab.metrics). Image vectors come from the catalog; texts are encoded once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pixgrep.errors import PixgrepError
from pixgrep.lab.eval.cir import CirSet, read_cir
from pixgrep.lab.metrics import first_relevant_ranks

if TYPE_CHECKING:
    from pixgrep.api import Catalog
    from pixgrep.models.combiner import Combiner

KS = (1, 5, 10, 50)
SUBSET_KS = (1, 2, 3)
EVAL_FUSIONS = ("combiner", "sum", "image", "text")
CHUNK = 1024


@dataclass
class CirFeatures:
    """Vectors of one split: gallery (g, d); per triplet the reference's and target's gallery rows,
    the text vector (n, d), and CIRR's subset members as gallery rows (or None)."""

    gallery: np.ndarray
    texts: np.ndarray
    reference: np.ndarray
    target: np.ndarray
    members: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.reference)

    def subset(self, rows: np.ndarray) -> CirFeatures:
        members = [self.members[i] for i in rows] if self.members is not None else None
        return CirFeatures(self.gallery, self.texts[rows], self.reference[rows], self.target[rows], members)


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def query_vectors(features: CirFeatures, fusion: str, combiner: Combiner | None = None) -> np.ndarray:
    """The query of every triplet under one fusion: the Combiner's, the unit sum, or one side only."""
    image = features.gallery[features.reference]
    if fusion == "image":
        return _normalise(image)
    if fusion == "text":
        return _normalise(features.texts)
    if fusion == "sum":
        return _normalise(_normalise(image) + _normalise(features.texts))
    if fusion == "combiner":
        if combiner is None:
            raise PixgrepError(
                "--fusion combiner needs a Combiner (--combiner FILE, or a model that has one)"
            )
        return combiner.combine(image, features.texts)
    raise PixgrepError(f"unknown fusion {fusion!r}; choose from {', '.join(EVAL_FUSIONS)}")


def composed_recalls(features: CirFeatures, queries: np.ndarray) -> dict[str, float]:
    """R@1/5/10/50 (percent) over the gallery, reference excluded; subset recalls when members exist."""
    gallery = np.ascontiguousarray(features.gallery, np.float32)
    ranks = np.empty(len(features), np.int64)
    subset_ranks: list[int] = []
    for start in range(0, len(features), CHUNK):
        rows = np.arange(start, min(start + CHUNK, len(features)))
        scores = np.asarray(queries[rows], np.float32) @ gallery.T
        scores[np.arange(len(rows)), features.reference[rows]] = -np.inf  # never its own reference
        relevant = np.zeros_like(scores, dtype=bool)
        relevant[np.arange(len(rows)), features.target[rows]] = True
        ranks[rows] = first_relevant_ranks(scores, relevant)
        if features.members is not None:
            for local, row in enumerate(rows):
                members = [m for m in features.members[row] if m != features.reference[row]]
                member_scores = scores[local, members]
                relevant_members = np.asarray(members) == features.target[row]
                if relevant_members.any():
                    subset_ranks.append(
                        int(first_relevant_ranks(member_scores[None], relevant_members[None])[0])
                    )
    out = {f"R@{k}": 100.0 * float((ranks <= k).mean()) for k in KS}
    if subset_ranks:
        sub = np.asarray(subset_ranks)
        out.update({f"Recall_subset@{k}": 100.0 * float((sub <= k).mean()) for k in SUBSET_KS})
    return out


def cir_features(catalog: Catalog, data: CirSet, *, progress: bool = False) -> CirFeatures:
    """Index the split's images (only those files), read their vectors, encode the texts once."""
    from pixgrep.lab.eval.vectors import catalog_image_vectors
    from pixgrep.progress import bar
    from pixgrep.tagging.zeroshot import encode_texts_batched

    triplets = [t for t in data.triplets if t.target is not None]
    if not triplets:
        raise PixgrepError(
            f"{data.captions_file} has no targets (target_hard): a hidden test split cannot be scored here"
        )
    files = data.files()
    gallery = catalog_image_vectors(catalog, files, files, progress=progress)
    row = {name: i for i, name in enumerate(data.gallery)}
    texts = [t.text for t in triplets]
    meter = bar(len(texts), "text tower", "text")
    try:
        text_vectors = encode_texts_batched(catalog.encoder, texts, meter.update)
    finally:
        meter.close()
    members = None
    if all(t.members for t in triplets):
        members = [np.asarray([row[m] for m in t.members or ()], np.int64) for t in triplets]
    return CirFeatures(
        gallery=gallery,
        texts=_normalise(text_vectors),
        reference=np.asarray([row[t.reference] for t in triplets], np.int64),
        target=np.asarray([row[t.target] for t in triplets if t.target is not None], np.int64),
        members=members,
    )


def run_composed(
    catalog: Catalog,
    captions_file: str | os.PathLike,
    images_dir: str | os.PathLike,
    split_file: str | os.PathLike | None = None,
    fusion: str = "combiner",
    combiner_file: str | os.PathLike | None = None,
) -> dict:
    """One evaluation as a flat dict: R@K, subset recalls, counts, fusion and model."""
    from pixgrep.models.combiner import find_combiner, load_combiner
    from pixgrep.progress import show_progress

    if fusion not in EVAL_FUSIONS:
        raise PixgrepError(f"unknown fusion {fusion!r}; choose from {', '.join(EVAL_FUSIONS)}")
    data = read_cir(captions_file, images_dir, split_file)
    combiner = None
    if fusion == "combiner":  # checked before any image is indexed
        encoder = catalog.encoder
        combiner = load_combiner(combiner_file) if combiner_file else find_combiner(encoder)
        if combiner is None:
            raise PixgrepError(
                f"model {encoder.model_id} has no Combiner: give one with --combiner FILE "
                "(pixgrep train combiner) or choose --fusion sum"
            )
        combiner.check_model(encoder.model_id)
    features = cir_features(catalog, data, progress=show_progress())
    result: dict = {
        k: round(v, 4)
        for k, v in composed_recalls(features, query_vectors(features, fusion, combiner)).items()
    }
    result.update(
        {
            "triplets": len(features),
            "images": len(data.gallery),
            "fusion": fusion,
            "format": data.format,
            "model": catalog.encoder.model_id,
        }
    )
    if combiner is not None:
        result["combiner"] = str(combiner.path) if combiner.path else None
    return result
