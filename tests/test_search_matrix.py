"""The memory-mapped search matrix: rebuilt only when the catalog changes, scoped by folder,
paged, thresholded, date-filtered, written atomically, and queried without reading every row."""

from __future__ import annotations

import os

import numpy as np
import pytest
from searchkit import add_image, remove_image, top, unit

from pixgrep.catalog.db import CatalogDB
from pixgrep.search import matrix_file
from pixgrep.search import matrix_store as matrix_module
from pixgrep.search.matrix_store import build_matrix, load_matrix, open_matrix, sidecar_path
from pixgrep.search.scope import Exclusions

DIM = 8


@pytest.fixture
def db(tmp_path):
    database = CatalogDB(tmp_path / "catalog.db")
    yield database
    database.close()


def axis(i: int, dim: int = DIM) -> np.ndarray:
    vector = np.zeros(dim, np.float32)
    vector[i] = 1.0
    return vector


def fill(db, paths, seed=0):
    rng = np.random.default_rng(seed)
    return {path: add_image(db, path, rng.standard_normal(DIM)) for path in paths}


def test_built_once_then_reused_until_the_generation_moves(db, monkeypatch):
    fill(db, ["/p/a.jpg", "/p/b.jpg"])
    builds = []
    real_build = matrix_module.build_matrix
    monkeypatch.setattr(
        matrix_module, "build_matrix", lambda *a, **k: builds.append(1) or real_build(*a, **k)
    )
    matrix_module._cache.clear()

    first = load_matrix(db, "fake")
    assert first.rows == 2 and first.generation == db.generation()
    assert load_matrix(db, "fake") is first  # same process: cached
    matrix_module._cache.clear()
    reopened = load_matrix(db, "fake")  # a new process: read from disk, not rebuilt
    assert reopened.rows == 2
    assert len(builds) == 1

    add_image(db, "/p/c.jpg", np.ones(DIM))
    third = load_matrix(db, "fake")
    assert len(builds) == 1  # one new image is appended to the journal, not a rebuild
    assert third.live == 3 and third.generation == db.generation()
    assert third.path_at(2) == "/p/c.jpg"


def test_each_model_has_its_own_matrix(db):
    add_image(db, "/p/a.jpg", axis(0), model="m1")
    add_image(db, "/p/b.jpg", axis(1), model="m2/with:odd chars")
    one, two = load_matrix(db, "m1"), load_matrix(db, "m2/with:odd chars")
    assert one.source != two.source and one.source.parent == two.source.parent
    assert one.source.parent == db.path.with_name("catalog.db.vectors")
    assert [one.path_at(0), two.path_at(0)] == ["/p/a.jpg", "/p/b.jpg"]


def test_rows_hold_the_stored_vectors_sorted_by_path(db):
    ids = {}
    for i, path in enumerate(["/z/last.jpg", "/a/first.jpg", "/m/mid.jpg"]):
        ids[path] = add_image(db, path, axis(i))
    m = load_matrix(db, "fake")
    assert [m.path_at(r) for r in range(m.rows)] == ["/a/first.jpg", "/m/mid.jpg", "/z/last.jpg"]
    assert [int(i) for i in m.ids] == [ids["/a/first.jpg"], ids["/m/mid.jpg"], ids["/z/last.jpg"]]
    assert m.vectors.dtype == np.float16
    np.testing.assert_array_equal(m.vectors[0], axis(1).astype(np.float16))


def test_images_with_errors_are_not_searchable(db):
    add_image(db, "/p/ok.jpg", axis(0))
    add_image(db, "/p/broken.jpg", axis(1), error="cannot decode")
    assert load_matrix(db, "fake").rows == 1


def test_scoping_is_by_folder_not_by_string_prefix(db):
    fill(db, ["/a/b/1.jpg", "/a/b/sub/2.jpg", "/a/bc/3.jpg", "/a/b.jpg", "/a/c/4.jpg", "/x/5.jpg"])
    m = load_matrix(db, "fake")
    q = unit(np.ones(DIM))

    def paths(roots):
        return sorted(hit.path for hit in top(m, q, 100, roots=roots))

    assert paths(["/a/b"]) == ["/a/b/1.jpg", "/a/b/sub/2.jpg"]
    assert paths(["/a/b/"]) == ["/a/b/1.jpg", "/a/b/sub/2.jpg"]
    assert paths(["/a/b", "/x"]) == ["/a/b/1.jpg", "/a/b/sub/2.jpg", "/x/5.jpg"]
    assert paths(["/a", "/a/b"]) == paths(["/a"])  # nested roots: each image once
    assert len(paths(["/a"])) == 5
    assert paths(["/nowhere"]) == []
    assert len(paths(None)) == 6


def test_scoping_follows_a_symlinked_root(db, tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    add_image(db, real / "a.jpg", axis(0))
    m = load_matrix(db, "fake")
    assert [hit.path for hit in top(m, axis(0), 5, roots=[link])] == [str(real / "a.jpg")]


def test_top_k_order_offset_and_threshold(db):
    # Scores against axis 0 are exactly 1.0, 0.8, 0.6, 0.4, 0.2 (float16-exact enough to rank).
    for i, score in enumerate([0.2, 1.0, 0.6, 0.4, 0.8]):
        add_image(db, f"/p/{i}.jpg", [score, np.sqrt(1 - score**2), 0, 0, 0, 0, 0, 0])
    m = load_matrix(db, "fake")
    q = axis(0)
    best = top(m, q, 5)
    assert [h.path for h in best] == ["/p/1.jpg", "/p/4.jpg", "/p/2.jpg", "/p/3.jpg", "/p/0.jpg"]
    assert [round(h.score, 2) for h in best] == [1.0, 0.8, 0.6, 0.4, 0.2]
    assert [h.path for h in top(m, q, 2, offset=2)] == ["/p/2.jpg", "/p/3.jpg"]
    assert top(m, q, 2, offset=5) == []
    assert [h.path for h in top(m, q, 10, threshold=0.5)] == ["/p/1.jpg", "/p/4.jpg", "/p/2.jpg"]
    assert top(m, q, 10, threshold=1.01) == []
    assert top(m, q, 0) == []


def test_ties_are_broken_by_path_order(db):
    for name in ["c", "a", "b"]:
        add_image(db, f"/p/{name}.jpg", axis(0))
    assert [h.path for h in top(load_matrix(db, "fake"), axis(0), 3)] == ["/p/a.jpg", "/p/b.jpg", "/p/c.jpg"]


def test_exclusions_are_asked_in_score_order_until_enough_pass(db):
    for i in range(100):
        add_image(db, f"/p/{i:03d}.jpg", [1.0, i / 10, 0, 0, 0, 0, 0, 0])  # score falls as i grows
    m = load_matrix(db, "fake")
    asked = []

    class Asked(Exclusions):
        def drops(self, image_id, path):
            asked.append(path)
            return not path.endswith(("7.jpg", "9.jpg"))  # drops most of the best ones

    hits = top(m, axis(0), 5, exclusions=Asked(patterns=("*.never",)))
    assert [h.path for h in hits] == ["/p/007.jpg", "/p/009.jpg", "/p/017.jpg", "/p/019.jpg", "/p/027.jpg"]
    assert asked[:3] == ["/p/000.jpg", "/p/001.jpg", "/p/002.jpg"]
    assert len(asked) < 100


def test_capture_date_filters(db):
    from pixgrep.search.filters import date_bound

    add_image(db, "/p/may.jpg", axis(0), taken_at="2019-05-04T12:30:00")
    add_image(db, "/p/june.jpg", axis(0), taken_at="2019-06-01T00:00:00+02:00")
    add_image(db, "/p/exif.jpg", axis(0), taken_at="2018:12:31 23:59:59")
    add_image(db, "/p/undated.jpg", axis(0))
    m = load_matrix(db, "fake")

    def paths(after=None, before=None):
        a = date_bound(after, "--after") if after else None
        b = date_bound(before, "--before") if before else None
        return sorted(h.path for h in top(m, axis(0), 10, after=a, before=b))

    assert paths() == ["/p/exif.jpg", "/p/june.jpg", "/p/may.jpg", "/p/undated.jpg"]
    assert paths(after="2019") == ["/p/june.jpg", "/p/may.jpg"]
    assert paths(before="2019-06") == ["/p/exif.jpg", "/p/may.jpg"]  # before is exclusive
    assert paths(after="2019-05", before="2019-06") == ["/p/may.jpg"]
    assert paths(after="2019-06-01") == ["/p/june.jpg"]  # wall-clock time, zone dropped


def test_unreadable_date_is_one_line_error():
    from pixgrep.errors import PixgrepError
    from pixgrep.search.filters import date_bound

    with pytest.raises(PixgrepError, match="--after 'last tuesday' is not a date"):
        date_bound("last tuesday", "--after")


def test_vectors_are_written_in_batches_into_their_path_sorted_rows(db, monkeypatch):
    """The build reads the vectors in SQLite's order and writes each into its row of the file."""
    monkeypatch.setattr(matrix_module, "FILL_BATCH", 3)
    rng = np.random.default_rng(7)
    stored = {}
    for i in rng.permutation(11):
        vector = unit(rng.standard_normal(DIM))
        add_image(db, f"/p/{i:02d}.jpg", vector)
        stored[f"/p/{i:02d}.jpg"] = vector.astype(np.float16)
    m = build_matrix(db, "fake")
    assert [m.path_at(r) for r in range(m.rows)] == sorted(stored)
    np.testing.assert_array_equal(np.asarray(m.vectors), np.stack([stored[p] for p in sorted(stored)]))
    memory = build_matrix(db, "fake", db.path.with_name("elsewhere") / "x.matrix")
    np.testing.assert_array_equal(np.asarray(memory.vectors), np.asarray(m.vectors))


def test_a_vector_of_the_wrong_length_stays_out_and_the_others_keep_their_rows(db):
    ids = fill(db, ["/p/a.jpg", "/p/b.jpg", "/p/c.jpg", "/p/d.jpg"])
    with db.conn:  # damage: one stored vector cut short
        db.conn.execute(
            "UPDATE embeddings SET vector = substr(vector, 1, 6) WHERE content_hash = "
            "(SELECT content_hash FROM images WHERE path = '/p/c.jpg')"
        )
    m = build_matrix(db, "fake")
    assert [m.path_at(r) for r in range(m.rows)] == ["/p/a.jpg", "/p/b.jpg", "/p/d.jpg"]
    assert ids["/p/c.jpg"] in m.absent
    blobs = dict(
        db.conn.execute("SELECT images.path, vector FROM images JOIN embeddings USING (content_hash)")
    )
    for row, path in enumerate(["/p/a.jpg", "/p/b.jpg", "/p/d.jpg"]):
        np.testing.assert_array_equal(m.vectors[row], np.frombuffer(blobs[path], "<f2"))


def test_empty_catalog_gives_no_results(db):
    m = load_matrix(db, "fake")
    assert m.rows == 0 and top(m, axis(0), 10) == []


def test_a_failed_write_leaves_the_old_file_whole_and_no_temporary(db, monkeypatch):
    fill(db, ["/p/a.jpg"])
    target = sidecar_path(db.path, "fake")
    load_matrix(db, "fake")
    before = target.read_bytes()
    add_image(db, "/p/b.jpg", axis(1))

    def crash(*_args):
        raise KeyboardInterrupt  # e.g. Ctrl-C between writing the temporary and renaming it

    monkeypatch.setattr(matrix_module.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        build_matrix(db, "fake", target)
    assert target.read_bytes() == before
    assert sorted(os.listdir(target.parent)) == [target.name, target.name + ".delta"]


def test_a_reader_keeps_a_valid_view_while_the_file_is_replaced(db):
    fill(db, ["/p/a.jpg", "/p/b.jpg"])
    old = load_matrix(db, "fake")
    old_vectors = np.array(old.vectors)
    for i in range(20):
        add_image(db, f"/p/new{i}.jpg", axis(i % DIM))
    new = load_matrix(db, "fake")
    assert new.rows == 22 and new.source == old.source
    np.testing.assert_array_equal(np.array(old.vectors), old_vectors)  # the old mapping is intact
    assert [old.path_at(r) for r in range(old.rows)] == ["/p/a.jpg", "/p/b.jpg"]


def test_a_damaged_sidecar_is_rebuilt(db):
    fill(db, ["/p/a.jpg"])
    target = sidecar_path(db.path, "fake")
    load_matrix(db, "fake")
    matrix_module._cache.clear()
    target.write_bytes(target.read_bytes()[:40])  # truncated: e.g. copied by a tool that failed
    assert open_matrix(target) is None
    assert load_matrix(db, "fake").rows == 1
    assert open_matrix(target).rows == 1


def test_read_only_folder_falls_back_to_memory(db, monkeypatch):
    fill(db, ["/p/a.jpg"])

    def refuse(*_a, **_k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(matrix_file.tempfile, "mkstemp", refuse)
    m = build_matrix(db, "fake")
    assert m.source is None and m.rows == 1 and m.path_at(0) == "/p/a.jpg"


def test_removed_images_leave_the_matrix(db):
    ids = fill(db, ["/p/a.jpg", "/p/b.jpg"])
    assert load_matrix(db, "fake").rows == 2
    remove_image(db, ids["/p/a.jpg"])
    m = load_matrix(db, "fake")
    assert [m.path_at(r) for r in m.live_rows()] == ["/p/b.jpg"]
    assert [h.path for h in top(m, axis(0), 5)] == ["/p/b.jpg"]


def test_a_query_reads_only_the_results_rows(db, fake_encoder):
    """Once the matrix is built, a query runs the generation check, reads what duplicate folding
    needs of its window of candidates (2k + 16 rows and their fingerprints, by key) and fetches the
    k result rows by id: it never scans the images or embeddings tables (rclip reads its whole
    table per query)."""
    from pixgrep.search.engine import search_vector
    from pixgrep.search.options import SearchOptions

    rng = np.random.default_rng(1)
    for i in range(300):
        add_image(db, f"/p/{i:03d}.jpg", rng.standard_normal(fake_encoder.dim))
    search_vector(
        db, fake_encoder, rng.standard_normal(fake_encoder.dim), SearchOptions(k=3)
    )  # builds the matrix
    statements = []
    db.conn.set_trace_callback(statements.append)
    try:
        results = search_vector(
            db, fake_encoder, rng.standard_normal(fake_encoder.dim), SearchOptions(k=3, roots=["/p"])
        )
    finally:
        db.conn.set_trace_callback(None)
    assert len(results) == 3
    assert len(statements) == 4, statements
    assert "meta" in statements[0] and "generation" in statements[0]
    window, prints, found = statements[1:]

    def keys(statement: str) -> int:
        return len(statement.split("IN (")[1].split(")")[0].split(","))

    assert "FROM images WHERE id IN (" in window and keys(window) == 2 * 3 + 16
    assert "FROM fingerprints WHERE content_hash IN (" in prints and keys(prints) == 2 * 3 + 16
    assert "FROM images WHERE id IN (" in found and keys(found) == 3  # the k result ids only


def test_repeated_queries_in_one_process_score_the_same(db):
    rng = np.random.default_rng(3)
    for i in range(50):
        add_image(db, f"/p/{i:02d}.jpg", rng.standard_normal(DIM))
    m = load_matrix(db, "fake")
    q = unit(rng.standard_normal(DIM))
    first = top(m, q, 10)  # converts float16 chunk by chunk
    second = top(m, q, 10)  # a long-lived process keeps a float32 copy from here on
    assert m._f32 is not None
    assert [h.path for h in first] == [h.path for h in second]
    np.testing.assert_allclose([h.score for h in first], [h.score for h in second], atol=1e-6)
    exact = np.asarray(m.vectors, np.float64) @ q
    np.testing.assert_allclose(sorted(exact, reverse=True)[:10], [h.score for h in first], atol=1e-5)


def test_concurrent_readers_never_see_a_partial_file(db, tmp_path):
    """Another process rebuilds the matrix over and over while this one keeps opening it: every
    open finds a whole file (old or new), never a missing, truncated or mixed one."""
    import subprocess
    import sys
    import time

    fill(db, [f"/p/{i:04d}.jpg" for i in range(2000)])
    target = sidecar_path(db.path, "fake")
    load_matrix(db, "fake")
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from pixgrep.catalog.db import CatalogDB;"
            "from pixgrep.search.matrix_store import build_matrix;"
            "db = CatalogDB(sys.argv[1]);"
            "[build_matrix(db, 'fake', Path(sys.argv[2])) for _ in range(15)]",
            str(db.path),
            str(target),
        ]
    )
    opened = 0
    try:
        while writer.poll() is None:
            m = open_matrix(target)
            assert m is not None and m.rows == 2000
            assert m.path_at(m.rows - 1) == "/p/1999.jpg"
            assert np.isfinite(np.asarray(m.vectors, np.float32)).all()
            opened += 1
            time.sleep(0.001)
    finally:
        writer.wait(timeout=120)
    assert writer.returncode == 0 and opened > 0


@pytest.mark.parametrize("spread", [1, 10**9], ids=["dense ids", "sparse ids"])
def test_the_id_mask_marks_the_rows_np_isin_would(spread):
    """Both ways mask_of_ids answers (a lookup table over dense ids, np.isin over sparse ones)."""
    import types

    rng = np.random.default_rng(spread)
    base_ids = (rng.permutation(500) * spread + 1).astype("<i8")
    base = types.SimpleNamespace(rows=500, ids=base_ids, id_order=np.argsort(base_ids))
    view = matrix_module.VectorMatrix.__new__(matrix_module.VectorMatrix)
    view.base, view.tail_ids, view._ids = base, np.asarray([7, 3, 500 * spread + 2], "<i8"), None
    for allowed in ({int(i) for i in rng.choice(view.ids, 40)} | {-5, 10**15}, {3}, set()):
        mask = view.mask_of_ids(allowed)
        assert mask is not None and np.array_equal(mask, np.isin(view.ids, list(allowed)))
    assert view.mask_of_ids(None) is None
