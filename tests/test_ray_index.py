"""`pixgrep index --ray` on a real three-node Ray cluster on this machine (tests/raycluster.py):
the same catalog as a local run, a worker node killed mid-run, Ctrl-C of the driver and resume,
objects read from a local S3 server (tests/objectstore.py).

300 real Flickr8k photos and the tiny test model keep it to about two minutes, most of it the
cluster and actor start-ups. Without the ray extra every test here skips with the reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data
from reliability_kit import start_interruptible_cli

pytest.importorskip("ray", reason="needs the ray extra (pip install 'pixgrep[ray]')")

import pixgrep  # noqa: E402
from pixgrep.catalog.db import CatalogDB  # noqa: E402
from pixgrep.catalog.searchable import searchable_rows, vector_rows  # noqa: E402

COUNT = 300
ROW = "path, size, mtime_ns, content_hash, width, height, format, taken_at, error"

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """300 real photos, copied into a folder of their own (a link out of the folder is not indexed)."""
    source = shared_data("flickr8k") / "images"
    folder = tmp_path_factory.mktemp("photos")
    for path in sorted(source.glob("*.jpg"))[:COUNT]:
        shutil.copyfile(path, folder / path.name)
    return folder


@pytest.fixture(scope="module")
def cluster():
    from raycluster import Cluster

    src = str(Path(__file__).resolve().parents[1] / "src")
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    started = Cluster(workers=2, env={"PYTHONPATH": path, "OMP_NUM_THREADS": "1"})
    yield started
    started.stop()


@pytest.fixture(scope="module")
def local(photos, tiny_model_dir, tmp_path_factory) -> Path:
    catalog = tmp_path_factory.mktemp("local") / "catalog.db"
    with pixgrep.open_catalog(catalog, str(tiny_model_dir)) as cat:
        assert cat.index([photos]).encoded == COUNT
    return catalog


def rows(catalog: Path) -> list[tuple]:
    conn = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True)
    try:
        return conn.execute(f"SELECT {ROW} FROM images ORDER BY path").fetchall()
    finally:
        conn.close()


def vectors(catalog: Path) -> dict[str, np.ndarray]:
    db = CatalogDB(catalog)
    try:
        model = next(iter(db.stats()["vectors"]))
        paths = {row[0]: row[1] for row in searchable_rows(db, model)}
        return {
            os.fsdecode(paths[image_id]): np.frombuffer(blob, "<f2").astype(np.float32)
            for image_id, blob in vector_rows(db, model)
        }
    finally:
        db.close()


def assert_same_catalog(got: Path, reference: Path) -> None:
    mine, theirs = rows(got), rows(reference)
    assert len(mine) == COUNT and len({r[0] for r in mine}) == COUNT  # none missing, none twice
    assert mine == theirs
    a, b = vectors(got), vectors(reference)
    assert a.keys() == b.keys()
    cosines = [float(a[p] @ b[p] / np.linalg.norm(a[p]) / np.linalg.norm(b[p])) for p in a]
    assert min(cosines) >= 0.9999


def test_cluster_run_gives_the_same_catalog_as_a_local_run(cluster, photos, local, tiny_model_dir, tmp_path):
    catalog = tmp_path / "catalog.db"
    with pixgrep.open_catalog(catalog, str(tiny_model_dir)) as cat:
        summary = cat.index([photos], ray=cluster.address, batch_size=32)
    assert (summary.found, summary.encoded, summary.skipped) == (COUNT, COUNT, 0)
    assert_same_catalog(catalog, local)

    # Renamed files are found by content on the driver and never sent to the cluster.
    first, second = sorted(photos.iterdir())[:2]
    first.rename(photos / "renamed-a.jpg")
    second.rename(photos / "renamed-b.jpg")
    try:
        with pixgrep.open_catalog(catalog, str(tiny_model_dir)) as cat:
            again = cat.index([photos], ray=cluster.address)
        assert (again.encoded, again.reused, again.removed) == (0, 2, 2)
    finally:
        (photos / "renamed-a.jpg").rename(first)
        (photos / "renamed-b.jpg").rename(second)


def test_killing_a_worker_node_mid_run_still_completes(cluster, photos, local, tiny_model_dir, tmp_path):
    catalog = tmp_path / "catalog.db"
    victim = cluster.workers[0]
    killed = threading.Event()

    def kill_once(summary) -> None:
        if summary.encoded >= 48 and not killed.is_set():
            victim.kill()  # SIGKILL to the node's raylet and its workers: a crashed machine
            killed.set()

    with pixgrep.open_catalog(catalog, str(tiny_model_dir)) as cat:
        summary = cat.index([photos], ray=cluster.address, batch_size=16, progress=kill_once)
    assert killed.is_set(), "the run ended before the node could be killed"
    assert summary.encoded == COUNT
    assert_same_catalog(catalog, local)
    cluster.nodes.remove(victim)
    victim.stop()
    # The GCS marks a killed node dead only after its health checks fail: until then it still counts
    # it alive, so a node count taken then would also be met before the new worker joined, and the
    # next test would start on a cluster still in flux (the Ctrl-C run once exited 1 that way).
    cluster.wait_for_nodes(len(cluster.nodes))
    cluster.add_worker()  # back to two workers for the next test


def test_ctrl_c_of_the_driver_resumes(cluster, photos, local, tiny_model_dir, tmp_path):
    catalog = tmp_path / "catalog.db"
    command = ["index", photos, "--catalog", catalog, "--model", tiny_model_dir, "--batch-size", 16, "--json"]
    run = start_interruptible_cli(*command, "--ray", cluster.address)
    deadline = time.monotonic() + 180
    stored = 0
    while time.monotonic() < deadline and run.poll() is None:
        if catalog.exists():
            try:
                stored = len(rows(catalog))
            except sqlite3.OperationalError:  # the schema is being created
                stored = 0
        if stored >= 32:
            run.send_signal(signal.SIGINT)
            break
        time.sleep(0.2)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130, err
    assert "interrupted; the catalog is consistent" in err
    first = len(rows(catalog))
    assert 32 <= first < COUNT

    with pixgrep.open_catalog(catalog, str(tiny_model_dir)) as cat:
        summary = cat.index([photos], ray=cluster.address)
    assert summary.encoded == COUNT - first  # what was committed is not done again
    assert_same_catalog(catalog, local)


def test_stopping_the_stream_waits_for_ray_datas_threads():
    """What the driver does before ray.shutdown(), interrupted or not: close the batch generator
    (Ray Data's finally shuts its executor down) and wait for the executor and prefetch threads,
    which Ray Data itself waits for 2 s at most, and not at all, respectively. A thread that calls
    into a shut-down Ray ends the process at once with status 1 and no message, or starts a local
    Ray instance: the Ctrl-C test exited 1 that way under load."""
    from pixgrep.catalog.ray_ingest import _stop_streaming

    closed = threading.Event()

    def generator():
        try:
            yield 1
            yield 2
        finally:
            closed.set()

    slow = threading.Thread(target=closed.wait, name="iter_threaded", daemon=True)  # ends once closed
    late = threading.Thread(target=time.sleep, args=(0.5,), name="iter_threaded", daemon=True)
    batches = generator()
    next(batches)  # suspended mid-stream, as an interrupt in the loop body leaves it
    slow.start()
    late.start()
    _stop_streaming(batches)
    assert closed.is_set() and not slow.is_alive() and not late.is_alive()


def test_without_a_reachable_cluster_one_line(photos, tiny_model_dir, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pixgrep.cli", "index", str(photos), "--catalog", str(tmp_path / "c.db")]
        + ["--model", str(tiny_model_dir), "--ray", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("pixgrep: error: cannot reach the Ray cluster at 127.0.0.1:1")
    assert done.stderr.count("\n") == 1


def test_workers_read_files_through_pyarrow_uris_with_the_same_hash(tmp_path):
    """What a worker does for an object-store URI, checked with pyarrow's file:// filesystem."""
    from pixgrep.catalog.prepare import content_hash, hash_bytes
    from pixgrep.images.storage import read_bytes

    rng = np.random.default_rng(3)
    for size in (5_000, 3 << 20):  # below and above the hash's head + tail window
        path = tmp_path / f"blob-{size}.jpg"
        path.write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        data = read_bytes(path.as_uri())
        assert data == path.read_bytes()
        assert hash_bytes(data, size) == content_hash(str(path), size)


def test_actor_plan_follows_the_cluster_resources():
    from pixgrep.catalog.ray_ingest import actor_plan
    from pixgrep.errors import PixgrepError

    class FakeRay:
        def __init__(self, resources):
            self.resources = resources

        def cluster_resources(self):
            return self.resources

    gpu = actor_plan(FakeRay({"CPU": 32.0, "GPU": 4.0}))
    assert gpu == (4, {"num_gpus": 1, "num_cpus": 8}, True, 8)  # decode threads share the cores
    assert actor_plan(FakeRay({"CPU": 2.0})) == (2, {"num_cpus": 0.5}, False, 1)
    with pytest.raises(PixgrepError, match="no CPU or GPU"):
        actor_plan(FakeRay({"CPU": 0.0}))


def test_the_actor_encodes_like_a_local_run_and_reports_bad_files(photos, tiny_model_dir, tmp_path):
    """EncodeActor called directly (no cluster): vectors, hashes and errors as a local run has them."""
    from pixgrep.catalog.prepare import content_hash
    from pixgrep.catalog.ray_ingest import EncodeActor
    from pixgrep.images.decode import decode_file
    from pixgrep.models import load_encoder

    encoder = load_encoder(str(tiny_model_dir))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    files = [*sorted(photos.iterdir())[:5], broken, tmp_path / "gone.jpg"]
    batch = {
        "path": np.array([str(f) for f in files], dtype=object),
        "size": np.array([f.stat().st_size if f.exists() else 0 for f in files]),
        "hash": np.array([""] * len(files), dtype=object),
    }
    actor = EncodeActor(str(tiny_model_dir), encoder.model_id, draft_size=96, threads=2)
    out = actor(batch)
    for i, f in enumerate(files[:5]):
        image, _ = decode_file(str(f), draft_size=96)
        local = encoder.encode_pixels(encoder.preprocess(image)[None])[0]
        assert float(out["vector"][i] @ local) >= 0.9999
        assert out["hash"][i] == content_hash(str(f), f.stat().st_size)
        assert out["skip"][i] == "" and out["width"][i] > 0
    assert out["skip"][5] and out["recorded"][5]  # recorded: not retried until it changes
    assert out["skip"][6] == "vanished while indexing" and not out["recorded"][6]  # retried next run
    assert out["width"][5] == out["width"][6] == -1 and not out["vector"][5:].any()


def test_s3_objects_are_listed_on_the_driver_and_read_by_the_workers(
    cluster, photos, local, tiny_model_dir, tmp_path
):
    """`index s3://bucket/prefix --ray` against a real S3 server (moto's, on 127.0.0.1: the driver
    lists, the actors read with the settings the driver hands them): the catalog stores the URIs,
    with the rows and vectors of a local run of the same files; search finds them; a Parquet export
    and import keep the URIs."""
    from objectstore import s3_server

    files = sorted(photos.iterdir())[:40]
    hidden = tmp_path / ".hidden.jpg"
    hidden.symlink_to(files[0])
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    root = "s3://bucket/2024"
    catalog = tmp_path / "catalog.db"
    with s3_server() as s3:
        uris = s3.upload(files, "bucket/2024")
        s3.upload([hidden, notes], "bucket/2024")
        with pixgrep.open_catalog(catalog, str(tiny_model_dir)) as cat:
            summary = cat.index([root], ray=cluster.address)
            hits = cat.search(str(files[3]), k=1)  # an image query: the local copy of one object
        assert (summary.found, summary.encoded, summary.skipped) == (40, 40, 0)
        assert hits[0].path == f"{root}/{files[3].name}"

        reference = {Path(r[0]).name: r for r in rows(local)}
        got = rows(catalog)
        assert [r[0] for r in got] == sorted(uris)
        for row in got:  # all but the mtime (an object's is its upload time) as a local run has it
            theirs = reference[row[0].rsplit("/", 1)[1]]
            assert (row[1], *row[3:]) == (theirs[1], *theirs[3:])
        theirs_vectors = {Path(p).name: v for p, v in vectors(local).items()}
        cosines = [
            float(v @ w / np.linalg.norm(v) / np.linalg.norm(w))
            for p, v in vectors(catalog).items()
            for w in [theirs_vectors[p.rsplit("/", 1)[1]]]
        ]
        assert len(cosines) == 40 and min(cosines) >= 0.9999

        with pixgrep.open_catalog(catalog, str(tiny_model_dir)) as cat:  # unchanged: nothing to do
            again = cat.index([root], ray=cluster.address)
            cat.export_parquet(tmp_path / "out.parquet", cat.vector_models()[0])
        assert (again.found, again.encoded, again.removed) == (40, 0, 0)

    with pixgrep.open_catalog(tmp_path / "imported.db", str(tiny_model_dir)) as cat:
        assert cat.import_parquet([tmp_path / "out.parquet"]).rows == 40
    assert rows(tmp_path / "imported.db") == got  # the same URIs, hashes, sizes and mtimes
