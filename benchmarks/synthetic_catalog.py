"""A catalog of synthetic images (random unit vectors, no files) for search and HTTP benchmarks."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np


def fill_catalog(
    db_path: Path,
    rows: int,
    model_id: str,
    dim: int,
    *,
    folder: str,
    first: Path | None = None,
    seed: int = 0,
    base_vectors: np.ndarray | None = None,
    noise: float = 0.017,
    vectors_given: np.ndarray | None = None,
) -> None:
    """`rows` images in 100 sub-folders of `folder`, capture dates spread over 14 years. When
    `first` is a real file it becomes row 0 with its true size and mtime, so an image query for
    it finds its stored vector. Vectors are random unit vectors, or, given `base_vectors` (real
    image vectors, unit rows), copies of them with Gaussian `noise` per component (cosine to the
    original about 0.93 at 512-d): realistic for ANN benchmarks, where uniform noise is not.
    `vectors_given` (rows x dim unit rows) sets every row's vector instead."""
    from pixgrep.catalog.db import CatalogDB

    db = CatalogDB(db_path)
    rng = np.random.default_rng(seed)
    now = time.time()
    try:
        with db.conn:
            for start in range(0, rows, 10_000):
                count = min(10_000, rows - start)
                if vectors_given is not None:
                    vectors = np.asarray(vectors_given[start : start + count], np.float32)
                elif base_vectors is None:
                    vectors = rng.standard_normal((count, dim)).astype(np.float32)
                else:
                    vectors = base_vectors[rng.integers(0, len(base_vectors), count)].astype(np.float32)
                    vectors += noise * rng.standard_normal((count, dim)).astype(np.float32)
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                images, embeddings = [], []
                for offset in range(count):
                    i = start + offset
                    real = first is not None and i == 0
                    path = str(first) if real else os.path.join(folder, f"d{i % 100:03d}", f"img{i:06d}.jpg")
                    stat = os.stat(first) if real else None
                    digest = hashlib.sha1(path.encode()).hexdigest()
                    taken = f"20{10 + i % 14:02d}-{1 + i % 12:02d}-{1 + i % 28:02d}T12:00:00"
                    images.append(
                        (
                            path,
                            stat.st_size if stat else 2_000_000,
                            stat.st_mtime_ns if stat else 1,
                            digest,
                            4000,
                            3000,
                            "JPEG",
                            taken,
                            None,
                            now,
                        )
                    )
                    embeddings.append((digest, model_id, vectors[offset].astype("<f2").tobytes()))
                db.conn.executemany(
                    "INSERT INTO images (path, size, mtime_ns, content_hash, width, height, format, "
                    "taken_at, error, indexed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    images,
                )
                db.conn.executemany("INSERT INTO embeddings VALUES (?, ?, ?)", embeddings)
            db.bump_generation()
    finally:
        db.close()
