"""`pixgrep duplicates` through the ANN index (search/dedup.ann_duplicate_groups): the same groups as
the exact all-pairs search, with rows appended after the index was built, removed rows and --in."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest

from pixgrep.catalog.db import CatalogDB, vector_to_blob
from pixgrep.search import ann as ann_module
from pixgrep.search import dedup
from pixgrep.search import matrix as matrix_module

if not ann_module.available():  # imports onnxruntime before usearch (see ann._usearch_index_class)
    pytest.skip("the ann extra (usearch) is not installed", allow_module_level=True)

DIM = 32
ROWS = 2000


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def _insert(db: CatalogDB, path: str, vector: np.ndarray, content: str | None = None) -> None:
    digest = content or hashlib.sha1(path.encode()).hexdigest()
    db.conn.execute(
        "INSERT INTO images (path, size, mtime_ns, content_hash, width, height, format, taken_at,"
        " error, indexed_at) VALUES (?, 1, 1, ?, 1, 1, 'JPEG', NULL, NULL, ?)",
        (path, digest, time.time()),
    )
    blob = vector_to_blob(vector)
    db.conn.execute("INSERT OR IGNORE INTO embeddings VALUES (?, 'fake', ?)", (digest, blob))


@pytest.fixture
def catalog(tmp_path, monkeypatch):
    """2000 clustered vectors (distinct pictures of 40 scenes, cosines up to ~0.8 within a scene) in
    two folders, with 30 planted groups of 2-3 near-copies (cosine >= 0.9) and one identical file."""
    monkeypatch.setattr(ann_module, "ANN_MIN_ROWS", 500)
    matrix_module._cache.clear()
    rng = np.random.default_rng(11)
    centres = rng.standard_normal((40, DIM))
    vectors = _unit(centres[rng.integers(0, 40, ROWS)] + 0.6 * rng.standard_normal((ROWS, DIM)))
    chosen = rng.choice(ROWS, 90, replace=False)
    for original, *copies in chosen.reshape(30, 3)[:, : rng.integers(2, 4)]:
        for row in copies:
            vectors[row] = _unit(vectors[original] + 0.08 * rng.standard_normal(DIM))
    db = CatalogDB(tmp_path / "catalog.db")
    with db.conn:
        for i, vector in enumerate(vectors):
            _insert(db, f"/p/f{i % 2}/{i:05d}.jpg", vector)
        _insert(db, "/p/f0/same-bytes.jpg", vectors[7], content=hashlib.sha1(b"/p/f1/00007.jpg").hexdigest())
        db.bump_generation()
    yield db, vectors
    db.close()
    matrix_module._cache.clear()


def _groups(db: CatalogDB, monkeypatch, *, exact: bool, roots=None) -> list[list[str]]:
    calls = []
    real = dedup.ann_duplicate_groups

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(dedup, "ann_duplicate_groups", spy)
    monkeypatch.setattr(ann_module, "ANN_MIN_ROWS", 10**9 if exact else 500)
    groups = dedup.catalog_duplicates(db, "fake", roots, threshold=0.85)
    assert bool(calls) is not exact  # the path asked for was the one taken
    return [[r.path for r in group] for group in groups]


def test_ann_groups_equal_the_exact_groups(catalog, monkeypatch):
    db, vectors = catalog
    matrix = matrix_module.load_matrix(db, "fake")
    assert matrix.base.ann_index() is not None
    exact = _groups(db, monkeypatch, exact=True)
    assert len(exact) >= 30  # every planted group, and the identical file with row 7
    assert any("/p/f0/same-bytes.jpg" in group and "/p/f1/00007.jpg" in group for group in exact)
    assert _groups(db, monkeypatch, exact=False) == exact
    scoped = _groups(db, monkeypatch, exact=False, roots=["/p/f0"])
    assert scoped == _groups(db, monkeypatch, exact=True, roots=["/p/f0"])
    assert scoped and all(path.startswith("/p/f0/") for group in scoped for path in group)


def test_rows_appended_and_removed_after_the_index_was_built(catalog, monkeypatch):
    db, vectors = catalog
    matrix_module.load_matrix(db, "fake")  # base and index built now; later changes go to the journal
    rng = np.random.default_rng(12)
    with db.conn:
        _insert(db, "/p/f0/new-copy-of-5.jpg", _unit(vectors[5] + 0.05 * rng.standard_normal(DIM)))
        fresh = _unit(rng.standard_normal(DIM))
        _insert(db, "/p/f0/new-a.jpg", fresh)
        _insert(db, "/p/f1/new-b.jpg", _unit(fresh + 0.05 * rng.standard_normal(DIM)))
        db.conn.execute("DELETE FROM images WHERE path = '/p/f0/same-bytes.jpg'")
        db.bump_generation()
    matrix = matrix_module.load_matrix(db, "fake")
    assert len(matrix.tail_ids) == 3 and matrix.dead == 1  # appended rows live outside the index
    ann = _groups(db, monkeypatch, exact=False)
    assert ann == _groups(db, monkeypatch, exact=True)
    assert any({"/p/f1/00005.jpg", "/p/f0/new-copy-of-5.jpg"} <= set(group) for group in ann)
    assert ["/p/f0/new-a.jpg", "/p/f1/new-b.jpg"] in ann
    assert not any("/p/f0/same-bytes.jpg" in group for group in ann)  # removed: never listed
    scoped = _groups(db, monkeypatch, exact=False, roots=["/p/f0"])
    assert scoped == _groups(db, monkeypatch, exact=True, roots=["/p/f0"])
    assert all(path.startswith("/p/f0/") for group in scoped for path in group)  # 00005 is outside
