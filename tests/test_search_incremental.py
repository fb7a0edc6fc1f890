"""The search matrix follows the catalog incrementally: appended rows, tombstones, compaction, and
recovery from a torn or killed update. Checked against a brute-force search of the catalog itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from searchkit import add_image, remove_image, top, unit

from pixgrep.catalog.db import CatalogDB, blob_to_vector
from pixgrep.search import matrix_store as matrix_module
from pixgrep.search.matrix_store import delta_path, load_matrix, sidecar_path

DIM = 16


@pytest.fixture
def db(tmp_path):
    matrix_module._cache.clear()
    database = CatalogDB(tmp_path / "catalog.db")
    yield database
    database.close()
    matrix_module._cache.clear()


def brute_force(db: CatalogDB, query: np.ndarray, k: int, root: str | None = None) -> list[str]:
    """The top-k paths straight from SQLite: what any index must agree with."""
    rows = db.conn.execute(
        "SELECT images.path, embeddings.vector FROM images JOIN embeddings "
        "ON embeddings.content_hash = images.content_hash "
        "WHERE embeddings.model = 'fake' AND images.error IS NULL"
    ).fetchall()
    scored = [
        (-float(np.asarray(blob_to_vector(blob), np.float32) @ query), path)
        for path, blob in rows
        if root is None or path.startswith(root + "/")
    ]
    return [path for _, path in sorted(scored)[:k]]


def write(db: CatalogDB, path: str, vector, *, error: str | None = None, model: str = "fake") -> None:
    """Index (or re-index) one file the way the indexer does: one write_batch."""
    digest = f"{path}-{time.time_ns()}"
    row = (path, 1000, time.time_ns(), digest, 64, 48, "JPEG", None, error)
    db.write_batch([row], {} if error else {digest: unit(vector)}, model)


@pytest.mark.parametrize("seed", range(5))
def test_random_appends_deletes_and_changes_match_exact_search(db, monkeypatch, seed):
    monkeypatch.setattr(matrix_module, "COMPACT_MIN_ROWS", 12)  # compactions happen mid-sequence too
    rng = np.random.default_rng(seed)
    paths: list[str] = []
    builds = []
    real_build = matrix_module.build_matrix
    monkeypatch.setattr(
        matrix_module, "build_matrix", lambda *a, **k: builds.append(1) or real_build(*a, **k)
    )
    for step in range(60):
        op = rng.choice(["add", "add", "add", "remove", "change", "error", "other-model", "reopen"])
        if op == "add" or not paths:
            path = f"/p/{rng.integers(0, 3)}/{step:03d}.jpg"
            write(db, path, rng.standard_normal(DIM))
            paths.append(path)
        elif op == "remove":
            path = paths.pop(int(rng.integers(0, len(paths))))
            db.remove_images([path])
        elif op == "change":  # same path, new content
            write(db, paths[int(rng.integers(0, len(paths)))], rng.standard_normal(DIM))
        elif op == "error":  # the file became undecodable: it leaves the results
            write(db, paths[int(rng.integers(0, len(paths)))], None, error="cannot decode")
        elif op == "other-model":  # a second model's vectors never show in this one's results
            write(db, f"/p/other/{step:03d}.jpg", rng.standard_normal(DIM), model="other")
        else:
            matrix_module._cache.clear()  # a new process: base + journal read from disk
        m = load_matrix(db, "fake")
        assert m.generation == db.generation()
        query = unit(rng.standard_normal(DIM))
        root = f"/p/{rng.integers(0, 3)}"
        assert [h.path for h in top(m, query, 5)] == brute_force(db, query, 5), (step, op)
        assert [h.path for h in top(m, query, 5, roots=[root])] == brute_force(db, query, 5, root), (step, op)
        assert m.live == len(brute_force(db, query, 10_000))
        # the metadata-filter mask (binary search in the base, the tail directly) marks the rows
        # np.isin over every id would, dead rows and ids not in the matrix included
        stored = [row[0] for row in db.conn.execute("SELECT id FROM images").fetchall()]
        allowed = {int(i) for i in rng.choice(stored, len(stored) // 2 + 1)} | {10**9, -1}
        assert np.array_equal(m.mask_of_ids(allowed), np.isin(m.ids, list(allowed))), (step, op)
        assert m.mask_of_ids(None) is None and not m.mask_of_ids(set()).any()
    assert 1 <= len(builds) < 30  # most steps appended; compaction rebuilt now and then


def test_one_new_image_is_appended_not_rebuilt(db, monkeypatch):
    rng = np.random.default_rng(1)
    for i in range(50):
        add_image(db, f"/p/{i:02d}.jpg", rng.standard_normal(DIM))
    first = load_matrix(db, "fake")
    base_file = sidecar_path(db.path, "fake").stat()
    monkeypatch.setattr(matrix_module, "build_matrix", lambda *a, **k: pytest.fail("rebuilt"))
    add_image(db, "/p/new.jpg", np.ones(DIM))
    second = load_matrix(db, "fake")
    assert second.base is first.base  # the same mapping, float32 copy and ANN handle
    assert second.live == 51 and top(second, unit(np.ones(DIM)), 1)[0].path == "/p/new.jpg"
    after = sidecar_path(db.path, "fake").stat()
    assert (after.st_ino, after.st_mtime_ns) == (base_file.st_ino, base_file.st_mtime_ns)
    assert first.live == 50  # views handed out earlier do not change under their users


def test_filtered_queries_follow_the_journal_and_each_view_keeps_its_ids(db):
    rng = np.random.default_rng(3)
    ids = [add_image(db, f"/p/{i:02d}.jpg", rng.standard_normal(DIM)) for i in range(30)]
    first = load_matrix(db, "fake")
    first_ids = first.ids
    assert first.ids is first_ids  # derived once per view, not per query
    new = add_image(db, "/p/new.jpg", np.ones(DIM))
    second = load_matrix(db, "fake")
    assert second is not first and second.generation != first.generation
    allowed = {ids[0], new}
    hits = top(second, unit(np.ones(DIM)), 5, allowed=allowed)
    assert {h.image_id for h in hits} == allowed and hits[0].image_id == new
    assert len(second.ids) == 31 and int(second.ids[-1]) == new
    assert len(first.ids) == 30 and first.ids is first_ids  # the older view is unchanged
    assert [h.image_id for h in top(first, unit(np.ones(DIM)), 5, allowed=allowed)] == [ids[0]]


def test_compaction_happens_when_the_dead_share_passes_the_threshold(db, monkeypatch):
    monkeypatch.setattr(matrix_module, "COMPACT_MIN_ROWS", 5)
    rng = np.random.default_rng(2)
    ids = [add_image(db, f"/p/{i:02d}.jpg", rng.standard_normal(DIM)) for i in range(40)]
    base_id = load_matrix(db, "fake").base.base_id
    for image_id in ids[:4]:  # 4 dead of 40: under both thresholds
        remove_image(db, image_id)
        assert load_matrix(db, "fake").base.base_id == base_id
    remove_image(db, ids[4])  # 5 dead: >= COMPACT_MIN_ROWS and > 10% of 40
    m = load_matrix(db, "fake")
    assert m.base.base_id != base_id and m.dead == 0 and m.live == 35


def test_a_torn_journal_batch_is_ignored_then_overwritten(db):
    rng = np.random.default_rng(3)
    for i in range(20):
        add_image(db, f"/p/{i:02d}.jpg", rng.standard_normal(DIM))
    load_matrix(db, "fake")
    add_image(db, "/p/x.jpg", rng.standard_normal(DIM))
    good = load_matrix(db, "fake")
    journal = delta_path(sidecar_path(db.path, "fake"))
    whole = journal.read_bytes()
    add_image(db, "/p/y.jpg", rng.standard_normal(DIM))
    load_matrix(db, "fake")
    full = journal.read_bytes()
    journal.write_bytes(full[: len(whole) + (len(full) - len(whole)) // 2])  # a crash mid-append
    matrix_module._cache.clear()
    reopened = matrix_module.open_matrix(sidecar_path(db.path, "fake"))
    assert reopened is not None and reopened.generation == good.generation and reopened.live == 21
    m = load_matrix(db, "fake")  # stale by one generation: caught up again from the catalog
    assert m.generation == db.generation() and m.live == 22
    q = unit(rng.standard_normal(DIM))
    assert [h.path for h in top(m, q, 22)] == brute_force(db, q, 22)
    matrix_module._cache.clear()
    assert load_matrix(db, "fake").live == 22  # the torn bytes were truncated away, not kept


def test_a_journal_from_an_older_base_is_ignored(db):
    rng = np.random.default_rng(4)
    for i in range(10):
        add_image(db, f"/p/{i}.jpg", rng.standard_normal(DIM))
    load_matrix(db, "fake")
    add_image(db, "/p/new.jpg", rng.standard_normal(DIM))
    load_matrix(db, "fake")
    journal = delta_path(sidecar_path(db.path, "fake"))
    old_journal = journal.read_bytes()
    matrix_module.build_matrix(db, "fake")  # a new base (a compaction); then the old journal is back
    journal.write_bytes(old_journal)
    matrix_module._cache.clear()
    m = load_matrix(db, "fake")
    assert m.live == 11 and len(m.tail_ids) == 0  # the base has all 11, the stale journal added none


def test_a_killed_update_recovers(db, tmp_path):
    """A process appending images and updating the index is SIGKILLed at a random moment, over
    and over; each time the next reader sees an index that agrees with the catalog."""
    rng = np.random.default_rng(5)
    for i in range(30):
        add_image(db, f"/p/{i:02d}.jpg", rng.standard_normal(DIM))
    load_matrix(db, "fake")
    script = (
        "import sys, numpy as np; sys.path.insert(0, sys.argv[2]);"
        "from searchkit import add_image; from pixgrep.catalog.db import CatalogDB;"
        "from pixgrep.search.matrix_store import load_matrix;"
        "db = CatalogDB(sys.argv[1]); rng = np.random.default_rng(int(sys.argv[3]));"
        "print('ready', flush=True);"
        "[(add_image(db, f'/p/k{sys.argv[3]}-{i}.jpg', rng.standard_normal(16)), load_matrix(db, 'fake'))"
        " for i in range(100000)]"
    )
    tests = os.path.dirname(__file__)
    for round_ in range(4):
        child = subprocess.Popen(
            [sys.executable, "-c", script, str(db.path), tests, str(round_)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.3 + 0.2 * rng.random())
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        matrix_module._cache.clear()
        m = load_matrix(db, "fake")
        q = unit(rng.standard_normal(DIM))
        everything = brute_force(db, q, 100_000)
        assert m.live == len(everything) and len(everything) > 30
        assert [h.path for h in top(m, q, 10)] == everything[:10]
