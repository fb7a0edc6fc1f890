"""`pixgrep duplicates` through the ANN index (search/dedup.ann_duplicate_groups) against the exact
all-pairs search: every planted group found whole, no pair the exact search does not report, and
nearly all of its pairs (a pair of distinct photos right at the threshold in a dense cluster may
have no link in the graph), with rows appended after the index was built, removed rows and --in;
for each way the ANN path finds its candidates (the graph's links, the links after the int8
prefilter, a search per row), and the reader of the links (search/ann_graph.py) on its own."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest

from pixgrep.catalog.db import CatalogDB, vector_to_blob
from pixgrep.search import ann as ann_module
from pixgrep.search import dedup
from pixgrep.search import matrix_store as matrix_module

if not ann_module.available():  # imports onnxruntime before usearch (see ann._usearch_index_class)
    pytest.skip("the ann extra (usearch) is not installed", allow_module_level=True)

DIM = 64
ROWS = 2000
ALIKE = bytes(80)


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
    # Every picture looks alike, so the model's pairs decide, as the exact search they are checked
    # against (the fingerprint check is tests/test_dedup_fingerprints.py's).
    db.conn.execute("INSERT OR IGNORE INTO fingerprints VALUES (?, ?)", (digest, ALIKE))


@pytest.fixture(params=["links", "links-prefiltered", "search-per-row"])
def candidates(request, monkeypatch):
    """How the ANN path gets its candidate pairs (all three must give the exact groups)."""
    if request.param == "links-prefiltered":  # few sampled pairs: the int8 prefilter runs at 2000 rows
        monkeypatch.setattr(dedup, "CALIBRATION_PAIRS", 300)
    if request.param == "search-per-row":  # as when the index file's links cannot be read
        monkeypatch.setattr(ann_module.AnnIndex, "links", lambda self: None)
    return request.param


@pytest.fixture
def catalog(tmp_path, monkeypatch, candidates):
    """2000 clustered vectors (distinct pictures of 40 scenes, cosines up to ~0.85 within a scene) in
    two folders, with 30 planted groups of 2-3 near-copies (cosine >= 0.92) and one identical file.
    Yields the catalog, the vectors and the planted groups' paths."""
    monkeypatch.setattr(ann_module, "ANN_MIN_ROWS", 500)
    # One build thread makes the graph the same on every run: two threads occasionally leave a row
    # almost unlinked, a miss that is measured (docs/benchmarks.md), not a plumbing error to test.
    monkeypatch.setattr(ann_module.os, "cpu_count", lambda: 1)
    matrix_module._cache.clear()
    rng = np.random.default_rng(11)
    centres = rng.standard_normal((40, DIM))
    vectors = _unit(centres[rng.integers(0, 40, ROWS)] + 0.8 * rng.standard_normal((ROWS, DIM)))
    chosen = rng.choice(ROWS, 90, replace=False).reshape(30, 3)[:, : rng.integers(2, 4)]
    for original, *copies in chosen:
        for row in copies:
            vectors[row] = _unit(vectors[original] + 0.03 * rng.standard_normal(DIM))
    planted = [{f"/p/f{i % 2}/{i:05d}.jpg" for i in group} for group in chosen.tolist()]
    planted.append({"/p/f0/same-bytes.jpg", "/p/f1/00007.jpg"})
    db = CatalogDB(tmp_path / "catalog.db")
    with db.conn:
        for i, vector in enumerate(vectors):
            _insert(db, f"/p/f{i % 2}/{i:05d}.jpg", vector)
        _insert(db, "/p/f0/same-bytes.jpg", vectors[7], content=hashlib.sha1(b"/p/f1/00007.jpg").hexdigest())
        db.bump_generation()
    yield db, vectors, planted
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


def _pairs(groups: list[list[str]]) -> set[tuple[str, str]]:
    return {(a, b) for group in groups for a in group for b in group if a < b}


def _assert_agrees(ann: list[list[str]], exact: list[list[str]], planted: list[set[str]]) -> None:
    """ANN groups against exact ones: planted groups whole, no false pair, pair recall >= 0.95."""
    missed = [group for group in planted if not any(group <= set(found) for found in ann)]
    assert [(g, [f for f in ann if set(f) & g]) for g in missed] == []
    assert all(any(set(found) <= set(group) for group in exact) for found in ann)
    assert len(_pairs(ann)) >= 0.95 * len(_pairs(exact))


def test_ann_groups_agree_with_the_exact_groups(catalog, monkeypatch):
    db, vectors, planted = catalog
    matrix = matrix_module.load_matrix(db, "fake")
    assert matrix.base.ann_index() is not None
    exact = _groups(db, monkeypatch, exact=True)
    assert len(exact) >= 31  # every planted group, and the identical file with row 7
    assert all(any(group <= set(found) for found in exact) for group in planted)
    _assert_agrees(_groups(db, monkeypatch, exact=False), exact, planted)
    scoped = _groups(db, monkeypatch, exact=False, roots=["/p/f0"])
    in_f0 = [group for group in planted if all(path.startswith("/p/f0/") for path in group)]
    _assert_agrees(scoped, _groups(db, monkeypatch, exact=True, roots=["/p/f0"]), in_f0)
    assert scoped and all(path.startswith("/p/f0/") for group in scoped for path in group)


def test_rows_appended_and_removed_after_the_index_was_built(catalog, monkeypatch):
    db, vectors, planted = catalog
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
    planted = [group for group in planted if "/p/f0/same-bytes.jpg" not in group]
    ann = _groups(db, monkeypatch, exact=False)
    _assert_agrees(ann, _groups(db, monkeypatch, exact=True), planted)
    assert any({"/p/f1/00005.jpg", "/p/f0/new-copy-of-5.jpg"} <= set(group) for group in ann)
    assert ["/p/f0/new-a.jpg", "/p/f1/new-b.jpg"] in ann
    assert not any("/p/f0/same-bytes.jpg" in group for group in ann)  # removed: never listed
    scoped = _groups(db, monkeypatch, exact=False, roots=["/p/f0"])
    in_f0 = [group for group in planted if all(path.startswith("/p/f0/") for path in group)]
    _assert_agrees(scoped, _groups(db, monkeypatch, exact=True, roots=["/p/f0"]), in_f0)
    assert all(path.startswith("/p/f0/") for group in scoped for path in group)  # 00005 is outside


def test_the_prefilter_drops_pairs_and_keeps_every_duplicate(catalog, candidates, monkeypatch):
    if candidates == "search-per-row":
        pytest.skip("the prefilter works on the graph's links")
    db, _, _ = catalog
    base = matrix_module.load_matrix(db, "fake").base
    index, vectors = base.ann_index(), np.asarray(base.vectors, np.float32)
    links = index.links()
    assert links is not None
    low, high = links
    monkeypatch.setattr(dedup, "CALIBRATION_PAIRS", 300)
    kept_low, kept_high = dedup._likely_pairs(index, vectors, low, high, 0.85)
    cosines = np.einsum("ij,ij->i", vectors[low], vectors[high])
    kept = set(zip(kept_low.tolist(), kept_high.tolist(), strict=True))
    assert len(kept) < len(low) / 4  # most links join distinct pictures: dropped without a cosine
    assert {(a, b) for a, b, c in zip(low.tolist(), high.tolist(), cosines, strict=True) if c >= 0.85} <= kept


def _index_file(tmp_path, vectors: np.ndarray):
    matrix_path = tmp_path / "m.matrix"
    matrix_path.write_bytes(b"")
    return ann_module.build_index(matrix_path, "base", vectors.astype(np.float16))


def test_links_are_the_graphs_nearest_neighbours(tmp_path):
    rng = np.random.default_rng(5)
    vectors = _unit(rng.standard_normal((3000, DIM)))
    index = _index_file(tmp_path, vectors)
    links = index.links()
    assert links is not None
    low, high = links
    assert (low < high).all() and (high < len(vectors)).all()
    codes = low * len(vectors) + high
    assert (np.diff(codes) > 0).all()  # sorted, each link once
    linked = np.bincount(np.concatenate([low, high]), minlength=len(vectors))
    assert (linked > 0).all() and linked.max() <= 2 * 2 * ann_module.CONNECTIVITY
    cosines = vectors @ vectors.T
    np.fill_diagonal(cosines, -2)
    nearest = cosines.argmax(axis=1)
    pairs = set(codes.tolist())
    found = [min(i, j) * len(vectors) + max(i, j) in pairs for i, j in enumerate(nearest.tolist())]
    assert np.mean(found) >= 0.97  # HNSW keeps each vector's nearest one among its links


@pytest.mark.parametrize("damage", ["truncated", "grown", "not-usearch", "other-rows"])
def test_links_of_a_file_in_another_layout_are_none(tmp_path, damage):
    index = _index_file(tmp_path, _unit(np.random.default_rng(6).standard_normal((600, DIM))))
    data = bytearray(index.path.read_bytes())
    rows = 600
    if damage == "truncated":
        data = data[:-7]
    elif damage == "grown":
        data += b"\0" * 16
    elif damage == "not-usearch":
        start = 8 + 600 * DIM  # the 64-byte head follows the int8 vectors
        data[start : start + 7] = b"xsearch"
    else:
        rows = 601
    index.path.write_bytes(bytes(data))
    assert ann_module.AnnIndex(index.path, rows).links() is None


def test_one_row_appended_after_the_index_was_built(catalog, monkeypatch):
    """One appended row asks the index a single query (usearch then answers a plain Matches)."""
    db, vectors, planted = catalog
    matrix_module.load_matrix(db, "fake")
    with db.conn:
        _insert(db, "/p/f1/one-more-copy-of-9.jpg", _unit(vectors[9] + 0.03 * np.ones(DIM)))
        db.bump_generation()
    assert len(matrix_module.load_matrix(db, "fake").tail_ids) == 1
    ann = _groups(db, monkeypatch, exact=False)
    assert any({"/p/f1/00009.jpg", "/p/f1/one-more-copy-of-9.jpg"} <= set(group) for group in ann)
