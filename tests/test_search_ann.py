"""The ANN index behind large catalogs: recall against exact search on a fixed seed, and scope,
dates, threshold, paging and exclusions that stay correct (filtered over-fetch, exact fallback)."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest
from searchkit import top

from pixgrep.catalog.db import CatalogDB, vector_to_blob
from pixgrep.search import ann as ann_module
from pixgrep.search import matrix_store as matrix_module
from pixgrep.search import topk
from pixgrep.search.matrix_store import load_matrix
from pixgrep.search.scope import Exclusions

if not ann_module.available():  # imports onnxruntime before usearch (see ann._usearch_index_class)
    pytest.skip("the ann extra (usearch) is not installed", allow_module_level=True)

DIM = 32
ROWS = 3000
FOLDERS = 10


@pytest.fixture
def catalog(tmp_path, monkeypatch):
    """3000 clustered unit vectors in 10 folders (300 each), dated over 10 years; ANN from 1000 rows."""
    monkeypatch.setattr(ann_module, "ANN_MIN_ROWS", 1000)
    monkeypatch.setattr(topk, "ANN_MIN_SCOPE", 200)
    matrix_module._cache.clear()
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((40, DIM))
    vectors = centres[rng.integers(0, 40, ROWS)] + 0.35 * rng.standard_normal((ROWS, DIM))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    db = CatalogDB(tmp_path / "catalog.db")
    with db.conn:
        for i, vector in enumerate(vectors):
            path = f"/p/f{i % FOLDERS}/{i:05d}.jpg"
            digest = hashlib.sha1(path.encode()).hexdigest()
            taken = f"{2010 + (i // 10) % 10}-06-01T12:00:00"
            db.conn.execute(
                "INSERT INTO images (path, size, mtime_ns, content_hash, width, height, format, taken_at,"
                " error, indexed_at) VALUES (?, 1, 1, ?, 1, 1, 'JPEG', ?, NULL, ?)",
                (path, digest, taken, time.time()),
            )
            db.conn.execute("INSERT INTO embeddings VALUES (?, 'fake', ?)", (digest, vector_to_blob(vector)))
        db.bump_generation()
    queries = centres[rng.integers(0, 40, 40)] + 0.5 * rng.standard_normal((40, DIM))
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    yield db, queries
    db.close()
    matrix_module._cache.clear()


def overlap(a, b) -> float:
    return len({h.image_id for h in a} & {h.image_id for h in b}) / max(len(b), 1)


def test_the_index_is_built_and_used_above_the_threshold(catalog):
    db, queries = catalog
    m = load_matrix(db, "fake")
    assert m.describe()["ann"] is not None
    top(m, queries[0], 10)
    assert m.last_method == "ann"
    top(m, queries[0], 10, exact=True)
    assert m.last_method == "exact"
    matrix_module._cache.clear()
    reopened = load_matrix(db, "fake")  # a new process maps the saved index instead of building
    assert reopened.base.ann_index() is not None
    matrix_file = matrix_module.sidecar_path(db.path, "fake")
    for written in (ann_module.index_path(matrix_file), ann_module._meta_path(matrix_file)):
        assert written.stat().st_mode & 0o777 == matrix_file.stat().st_mode & 0o777  # not 0600


def test_recall_against_exact_search(catalog):
    db, queries = catalog
    m = load_matrix(db, "fake")
    recalls = [overlap(top(m, q, 10), top(m, q, 10, exact=True)) for q in queries]
    assert np.mean(recalls) >= 0.97  # measured 1.0 on this seed: a clear margin
    for q in queries[:5]:  # scores are exact re-scores: the same numbers for the same image
        exact = {h.image_id: h.score for h in top(m, q, 50, exact=True)}
        for hit in top(m, q, 10):
            if hit.image_id in exact:
                assert hit.score == pytest.approx(exact[hit.image_id], abs=1e-6)


def test_folder_scope_dates_threshold_paging_and_exclusions_stay_correct(catalog):
    from pixgrep.search.filters import date_bound

    db, queries = catalog
    m = load_matrix(db, "fake")
    after, before = date_bound("2013", "--after"), date_bound("2015", "--before")
    for q in queries[:10]:
        scoped = top(m, q, 10, roots=["/p/f3"])  # 300 rows: over-fetch through the index
        assert m.last_method == "ann" and len(scoped) == 10
        assert all(h.path.startswith("/p/f3/") for h in scoped)
        assert overlap(scoped, top(m, q, 10, roots=["/p/f3"], exact=True)) >= 0.8

        dated = top(m, q, 10, after=after, before=before)
        assert len(dated) == 10 and all(2013 <= 2010 + (int(h.path[-9:-4]) // 10) % 10 < 2015 for h in dated)

        both = top(m, q, 10, roots=["/p/f3"], after=after, before=before)  # 60 rows: exact
        assert m.last_method == "exact"
        assert both == top(m, q, 10, roots=["/p/f3"], after=after, before=before, exact=True)

        cut = top(m, q, 1000, threshold=0.6)
        assert all(h.score >= 0.6 for h in cut)
        exact_cut = top(m, q, 1000, threshold=0.6, exact=True)
        assert len(cut) <= len(exact_cut) and overlap(cut, exact_cut) >= 0.9

        page1, page2 = top(m, q, 10), top(m, q, 10, offset=10)
        assert not {h.image_id for h in page1} & {h.image_id for h in page2}
        assert page1[-1].score >= page2[0].score

        banned = {h.image_id for h in page1[:5]}
        kept = top(m, q, 10, exclusions=Exclusions(own_ids=frozenset(banned)))
        assert len(kept) == 10 and not banned & {h.image_id for h in kept}


def test_appended_and_removed_rows_after_the_build(catalog):
    from searchkit import add_image

    db, queries = catalog
    m = load_matrix(db, "fake")
    best = top(m, queries[0], 3)
    db.remove_images([best[0].path])
    new_id = add_image(db, "/p/f3/new.jpg", queries[0])  # the best possible match, in the journal
    m = load_matrix(db, "fake")
    assert m.describe()["ann"] is not None and len(m.tail_ids) == 1
    hits = top(m, queries[0], 3)
    assert m.last_method == "ann"
    assert hits[0].image_id == new_id and best[0].image_id not in {h.image_id for h in hits}
    assert [h.image_id for h in top(m, queries[0], 3, roots=["/p/f3"])][0] == new_id


def test_the_api_option_and_what_stats_show(catalog):
    import pixgrep

    db, queries = catalog
    vector = queries[0]
    with pixgrep.open_catalog(db.path, encoder=_Fake32()) as cat:
        cat.search_vector(vector, k=5)
        assert cat.search_index()["last_method"] == "ann"
        exact = cat.search_vector(vector, k=5, exact=True)
        assert cat.search_index()["last_method"] == "exact"
        assert len(exact) == 5
        index = cat.stats()["search_index"]["fake"]
        assert index["rows"] == ROWS and index["ann"].startswith("usearch HNSW")


class _Fake32:
    """An encoder of this catalog's 32-d space (only search_vector is used)."""

    model_id = "fake"
    dim = DIM


def test_a_text_can_be_encoded_after_a_search_used_the_index(catalog, tmp_path):
    """onnxruntime must load before usearch's native module: the other order crashes the process."""
    import subprocess
    import sys

    script = "from pixgrep.search import ann; assert ann.available();import onnxruntime; print('ok')"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-500:]
