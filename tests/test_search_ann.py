"""The ANN index behind large catalogs: recall against exact search on a fixed seed, and scope,
dates, threshold, paging and exclusions that stay correct (filtered over-fetch, exact fallback)."""

from __future__ import annotations

import hashlib
import json
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


def _bursts(seed: int, dim: int = 32):
    """60 tight bursts (20-200 near-copies each, cosine ~0.998 inside a burst) and 100 queries far
    from all of them (cosine ~0.2-0.5, like a caption against photos)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((60, dim))
    source = np.repeat(np.arange(60), rng.integers(20, 200, 60))
    vectors = centres[source] / np.linalg.norm(centres[source], axis=1, keepdims=True)
    vectors = vectors + 0.01 * rng.standard_normal(vectors.shape)
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True))[rng.permutation(len(source))]
    queries = rng.standard_normal((100, dim))
    return vectors.astype(np.float16), (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(
        np.float32
    )


def _score_aware_recall(vectors, query, found) -> float:
    """Share of the top 10 found (re-scored exactly) within 0.001 of the exact 10th score."""
    scores = vectors.astype(np.float32) @ query
    tenth = np.sort(scores)[::-1][9]
    top = np.sort(scores[found])[::-1][:10]
    return min(10, int(np.count_nonzero(top >= tenth - 0.001))) / 10


def test_the_coarse_lists_find_the_cluster_a_graph_walk_misses(tmp_path):
    vectors, queries = _bursts(4)
    index = ann_module.build_index(tmp_path / "m.matrix", "base", vectors)
    assert index is not None and index.coarse is not None
    walked, both = [], []
    for query in queries:
        index._index.expansion_search = 64
        walk = np.asarray(index._index.search(query, 64, threads=1).keys, np.int64)
        walked.append(_score_aware_recall(vectors, query, walk))
        both.append(_score_aware_recall(vectors, query, index.search(query, 64)))
    # The greedy walk alone settles in a neighbouring burst for many of these queries (measured:
    # ~30 of 100 below 0.5); the nearest lists, scored exactly, never miss the right one.
    assert sum(r < 0.5 for r in walked) >= 5
    assert min(both) >= 0.9 and np.mean(both) >= 0.99


def test_an_index_of_another_format_is_rebuilt_not_read(catalog):
    db, queries = catalog
    m = load_matrix(db, "fake")
    matrix_file = matrix_module.sidecar_path(db.path, "fake")
    meta_file = ann_module._meta_path(matrix_file)
    meta = json.loads(meta_file.read_text())
    meta.pop("format")  # what the graph-only layout (format 1) wrote
    meta_file.write_text(json.dumps(meta))
    ann_module.coarse_path(matrix_file).unlink()
    assert ann_module.open_index(matrix_file, m.base.base_id, m.base.rows, m.base.vectors) is None
    matrix_module._cache.clear()
    rebuilt = load_matrix(db, "fake")
    assert rebuilt.base.ann is not None and rebuilt.base.ann.coarse is not None
    assert json.loads(meta_file.read_text())["format"] == ann_module.FORMAT
    top(rebuilt, queries[0], 10)
    assert rebuilt.last_method == "ann"


def test_a_damaged_coarse_file_is_refused(catalog):
    db, _ = catalog
    m = load_matrix(db, "fake")
    matrix_file = matrix_module.sidecar_path(db.path, "fake")
    coarse = ann_module.coarse_path(matrix_file)
    data = bytearray(coarse.read_bytes())
    data[:4] = b"JUNK"
    coarse.write_bytes(bytes(data))  # same size: only the layer's own checks can tell
    assert ann_module.open_index(matrix_file, m.base.base_id, m.base.rows, m.base.vectors) is None


def test_the_index_is_ready_when_indexing_ends(catalog, monkeypatch):
    """`prepare(large_only=True)` (the end of `pixgrep index` / `import`) builds the index, so the
    first query maps it; a catalog too small for an index is left alone."""
    db, _ = catalog
    matrix_file = matrix_module.sidecar_path(db.path, "fake")
    monkeypatch.setattr(ann_module, "ANN_MIN_ROWS", ROWS + 1)  # ids go up to ROWS: too small
    ann_module.prepare(db, "fake", large_only=True)
    assert not matrix_file.exists()
    monkeypatch.setattr(ann_module, "ANN_MIN_ROWS", 1000)
    ann_module.prepare(db, "fake", progress=True, large_only=True)
    assert ann_module.index_path(matrix_file).exists() and ann_module.coarse_path(matrix_file).exists()
    matrix_module._cache.clear()
    built = []
    monkeypatch.setattr(ann_module, "build_index", lambda *a, **k: built.append(a))
    top(load_matrix(db, "fake"), np.ones(DIM, np.float32) / DIM**0.5, 10)
    assert not built  # the first query built nothing


def test_a_search_never_waits_for_another_process_building_the_index(catalog):
    """While another process builds the index (an index run ending), a search answers exactly
    instead of building it a second time, and picks the index up once it is there."""
    import fcntl

    from pixgrep.search.matrix_file import sidecar_path

    db, queries = catalog
    target = sidecar_path(db.path, "fake")
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{target}.ann-lock", "ab") as other:  # another process's build, in progress
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        matrix = load_matrix(db, "fake")
        assert matrix.base.ann_index() is None
        assert not ann_module.index_path(target).exists()
        exact = top(matrix, queries[0], 10)
    matrix_module._cache.clear()
    matrix = load_matrix(db, "fake")  # the lock is free: this process builds it
    assert matrix.base.ann_index() is not None
    assert overlap(top(matrix, queries[0], 10), exact) >= 0.9


def test_the_end_of_an_index_run_checks_the_index_files_without_opening_the_graph(catalog, monkeypatch):
    """Opening usearch's view reads every node (the whole file, 0.66 GB at 1M): the end of an index
    run only checks the files are there; the first search opens the graph."""
    db, queries = catalog
    monkeypatch.setattr(ann_module, "ANN_MIN_ROWS", 1000)
    ann_module.prepare(db, "fake", large_only=True)
    matrix_module._cache.clear()
    opened = []
    real_open = ann_module.open_index
    monkeypatch.setattr(ann_module, "open_index", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    monkeypatch.setattr(ann_module, "build_index", lambda *a, **k: pytest.fail("rebuilt a ready index"))
    ann_module.prepare(db, "fake", large_only=True)
    assert opened == []
    m = load_matrix(db, "fake")
    top(m, queries[0], 10)
    assert len(opened) == 1 and m.last_method == "ann"
    ann_module.coarse_path(matrix_module.sidecar_path(db.path, "fake")).unlink()  # files incomplete
    matrix_module._cache.clear()
    built = []
    monkeypatch.setattr(ann_module, "build_index", lambda *a, **k: built.append(a))
    ann_module.prepare(db, "fake", large_only=True)
    assert len(built) == 1


def test_a_list_whose_centroid_is_far_is_probed_by_its_representatives(monkeypatch):
    """A photo's copies at the edge of a list of other photos: the list's centroid ranks it low for
    a query matching them; its representatives (farthest-first rows) bring it in."""
    from pixgrep.search import ann_coarse

    dim = 8
    axes = np.eye(dim, dtype=np.float32)
    # List 0: many rows along axis 0 and two copies of an outlier photo (axis 7); lists 1-2 elsewhere.
    outlier = (axes[7] + 0.05 * axes[6]) / np.linalg.norm(axes[7] + 0.05 * axes[6])
    rows0 = np.vstack([np.repeat(axes[:1], 20, axis=0), outlier, outlier])
    vectors = np.vstack([rows0, np.repeat(axes[1:2], 5, axis=0), np.repeat(axes[2:3], 5, axis=0)])
    vectors = vectors.astype(np.float16)
    labels = np.array([0] * 22 + [1] * 5 + [2] * 5)
    centroids = np.stack([axes[0], axes[1], axes[2]]).astype(np.float32)
    order = np.argsort(labels, kind="stable").astype(np.int32)
    starts = np.array([0, 22, 27, 32], np.int64)
    reps = ann_coarse._representatives(vectors, centroids, order, starts)
    assert np.allclose(reps[0], outlier, atol=1e-3)  # the member least like the centroid comes first
    query = axes[7] * 0.9 + axes[1] * 0.1
    query /= np.linalg.norm(query)
    monkeypatch.setattr(ann_coarse, "REP_LISTS", 1)  # one list more: it must be the right one
    plain = ann_coarse.CoarseLayer(centroids, starts, order)
    with_reps = ann_coarse.CoarseLayer(centroids, starts, order, reps)
    assert not {20, 21} & set(plain.probe(query, vectors, 4, probe=1))  # the centroid picks list 1
    assert {20, 21} <= set(with_reps.probe(query, vectors, 4, probe=1))


def test_longer_lists_are_probed_fewer_at_a_time(monkeypatch):
    """A query scores about ROW_BUDGET rows: PROBE lists while they are short (up to 1M rows), fewer
    of longer lists (10M rows), never fewer than MIN_PROBE; the probe scores exactly that many."""
    from pixgrep.search import ann_coarse

    def layer(lists: int, rows: int) -> ann_coarse.CoarseLayer:
        centroids = np.eye(lists, 4, dtype=np.float32)
        starts = np.linspace(0, rows, lists + 1).astype(np.int64)
        return ann_coarse.CoarseLayer(centroids, starts, np.arange(rows, dtype=np.int32))

    budget, probe = ann_coarse.ROW_BUDGET, ann_coarse.PROBE
    assert layer(100, 100 * budget // (2 * probe)).default_probe == probe  # short lists
    assert layer(100, 100 * budget // probe).default_probe == probe  # PROBE lists fill the budget
    assert layer(100, 100 * budget // 20).default_probe == 20  # longer lists (10M)
    assert layer(100, 100 * budget).default_probe == ann_coarse.MIN_PROBE


def test_one_question_is_answered_from_the_lists_without_opening_the_graph(catalog):
    """`pixgrep search` asks one question per process: usearch's view reads every node's header when
    opened (1.96 s at 10M rows), so inside `lists_only` the lists answer alone and the graph is never
    opened; outside (the API, the server: many questions) the first walk opens it."""
    db, queries = catalog
    m = load_matrix(db, "fake")
    index = m.base.ann_index()
    assert index is not None and index._graph is None  # opening the index opened the lists only
    with ann_module.lists_only():
        recalls = [overlap(top(m, q, 10), top(m, q, 10, exact=True)) for q in queries]
        top(m, queries[0], 10)
        assert m.last_method == "ann" and index._graph is None
        assert "the graph is not opened" in index.describe()
    assert np.mean(recalls) >= 0.97  # measured 1.0 on this seed
    top(m, queries[0], 10)
    assert index._graph is not None and index.describe().startswith("usearch HNSW")


def test_a_graph_file_that_cannot_be_opened_leaves_the_lists_and_exact_duplicates(catalog, monkeypatch):
    """A graph of the size its metadata names but not a usearch file (damage the size check cannot
    see): searches answer from the lists, and `duplicates` compares pairs exactly."""
    from pixgrep.search import dedup

    db, queries = catalog
    asked = []
    real = dedup.ann_duplicate_groups
    monkeypatch.setattr(dedup, "ann_duplicate_groups", lambda *a, **k: asked.append(a) or real(*a, **k))
    dedup.catalog_duplicates(db, "fake", threshold=0.999)
    assert len(asked) == 1  # a sound graph: the ANN path
    graph = ann_module.index_path(matrix_module.sidecar_path(db.path, "fake"))
    graph.write_bytes(b"\0" * graph.stat().st_size)
    matrix_module._cache.clear()
    m = load_matrix(db, "fake")
    index = m.base.ann_index()
    assert index is not None and not index.graph_ready()
    recalls = [overlap(top(m, q, 10), top(m, q, 10, exact=True)) for q in queries]
    assert np.mean(recalls) >= 0.97
    top(m, queries[0], 10)
    assert m.last_method == "ann"
    dedup.catalog_duplicates(db, "fake", threshold=0.999)
    assert len(asked) == 1  # every pair compared exactly this time


def test_the_lists_int8_codes_find_what_gathering_the_float16_rows_finds(tmp_path):
    """A probe scores the codes stored list by list (contiguous runs) instead of gathering rows from
    the matrix; its shortlist, re-scored exactly, holds the same top 10 as the float16 rows'."""
    from pixgrep.search import ann_coarse

    vectors, queries = _bursts(5)
    ann_coarse.build(vectors, tmp_path / "m.coarse")
    layer = ann_coarse.open_layer(tmp_path / "m.coarse", len(vectors), vectors.shape[1])
    assert layer is not None and layer.codes is not None
    at = np.asarray(layer.order[:50])  # the first rows in list order, each its vector scaled
    cosine = np.sum(layer.codes[:50].astype(np.float32) * vectors[at], axis=1)
    assert np.all(cosine / np.linalg.norm(layer.codes[:50].astype(np.float32), axis=1) > 0.999)
    gathering = ann_coarse.CoarseLayer(layer.centroids, layer.starts, layer.order, layer.reps)
    exact = vectors.astype(np.float32)

    def best(rows, query):  # the top 10 of the exact re-score
        return set(rows[np.argsort(-(exact[rows] @ query))[:10]].tolist())

    for query in queries[:40]:
        coded = layer.probe(query, vectors, 64)
        assert len(coded) >= ann_coarse.SHORTLIST  # more than asked: the caller re-scores them
        assert best(coded, query) == best(gathering.probe(query, vectors, 64), query)


def test_a_coarse_file_written_before_the_codes_still_opens_and_probes(tmp_path):
    import struct

    from pixgrep.search import ann_coarse

    vectors, queries = _bursts(6)
    path = tmp_path / "m.coarse"
    ann_coarse.build(vectors, path)
    data = path.read_bytes()
    start = len(ann_coarse.MAGIC) + 4
    (length,) = struct.unpack("<I", data[len(ann_coarse.MAGIC) : start])
    header = json.loads(data[start : start + length])
    cut = header["sections"].pop("codes")[0]  # the layout before the codes: no section, no bytes
    text = json.dumps(header).encode()
    path.write_bytes(ann_coarse.MAGIC + struct.pack("<I", len(text)) + text + data[start + len(text) : cut])
    layer = ann_coarse.open_layer(path, len(vectors), vectors.shape[1])
    assert layer is not None and layer.codes is None
    exact = vectors.astype(np.float32)
    found = layer.probe(queries[0], vectors, 64)
    assert len(found) == 64 and set(found.tolist()) >= set(np.argsort(-(exact @ queries[0]))[:10].tolist())


def test_a_server_warm_up_opens_the_graph_and_an_index_run_does_not(catalog):
    db, _ = catalog
    ann_module.prepare(db, "fake", large_only=True)  # the end of an index run
    assert load_matrix(db, "fake").base.ann_index()._graph is None
    ann_module.prepare(db, "fake", open_graph=True)  # `pixgrep serve`'s warm-up
    assert load_matrix(db, "fake").base.ann_index()._graph is not None
