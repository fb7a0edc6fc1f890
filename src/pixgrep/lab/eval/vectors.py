"""Image vectors for an evaluation, through the catalog, so a rerun reuses what was encoded."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pixgrep.api import Catalog
from pixgrep.errors import PixgrepError


def _keys(path: Path) -> list[str]:
    """Spellings a catalog may store a path under (resolved absolute first)."""
    absolute = Path(os.path.abspath(path))
    # the catalog stores resolved folder + entry name (a symlinked file keeps its own name)
    return list(
        dict.fromkeys([str(absolute.parent.resolve() / absolute.name), str(path.resolve()), str(absolute)])
    )


def catalog_image_vectors(
    catalog: Catalog,
    roots: Sequence[str | os.PathLike],
    images: Sequence[Path],
    *,
    progress: bool = False,
) -> np.ndarray:
    """Index `roots` (new or changed files only), then return the (n, d) float32 unit vectors of
    `images`, in order. Any image that is missing, unreadable or without a vector is an error:
    a benchmark with silently dropped images would report a different protocol."""
    catalog.index(list(roots), progress=progress)
    model = catalog.encoder.model_id
    keys = [_keys(p) for p in images]
    records = catalog.images_at(k for ks in keys for k in ks)
    vectors = catalog.vectors_of(records.values())
    out = np.empty((len(images), catalog.encoder.dim), dtype=np.float32)
    problems: list[str] = []
    for row, (image, spellings) in enumerate(zip(images, keys, strict=True)):
        record = next((records[k] for k in spellings if k in records), None)
        vector = None
        if record is None:
            problems.append(f"{image}: not indexed")
        elif record.error:
            problems.append(f"{image}: {record.error}")
        else:
            vector = vectors.get(record.id)
            if vector is None:
                problems.append(f"{image}: no vector for model {model}")
        if vector is not None:
            out[row] = vector
    if problems:
        raise PixgrepError(f"{len(problems)} of {len(images)} image(s) have no vector, e.g. {problems[0]}")
    norms = np.linalg.norm(out, axis=1, keepdims=True)  # stored as float16: renormalise
    return out / np.maximum(norms, 1e-12)
