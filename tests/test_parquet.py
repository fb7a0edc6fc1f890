"""Parquet export and import (pixgrep export --parquet / pixgrep import), with the tiny test model
and real Flickr8k photos: round trips, clip-retrieval's output layout, refusals, resume."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data

pa = pytest.importorskip("pyarrow", reason="needs the parquet extra (pip install 'pixgrep[parquet]')")
pq = pytest.importorskip("pyarrow.parquet")

import pixgrep  # noqa: E402
from pixgrep.catalog.db import SYNTHETIC_PREFIX, CatalogDB  # noqa: E402
from pixgrep.catalog.parquet import find_sources, import_sources  # noqa: E402
from pixgrep.errors import PixgrepError  # noqa: E402
from pixgrep.models import load_encoder  # noqa: E402

QUERIES = ["a dog running on grass", "two children at the beach", "a man on a bike"]


def pixgrep_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PIXGREP_CATALOG", None)
    done = subprocess.run(
        [sys.executable, "-m", "pixgrep.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """40 real photos copied to a folder of their own."""
    source = shared_data("flickr8k") / "images"
    folder = tmp_path_factory.mktemp("photos")
    for path in sorted(source.glob("*.jpg"))[:40]:
        shutil.copy2(path, folder / path.name)
    return folder


@pytest.fixture(scope="module")
def indexed(photos, tiny_model_dir, tmp_path_factory) -> Path:
    catalog = tmp_path_factory.mktemp("indexed") / "catalog.db"
    with pixgrep.open_catalog(catalog, str(tiny_model_dir)) as cat:
        summary = cat.index([photos])
    assert summary.encoded == 40
    return catalog


def results(catalog: Path, model: Path, query: str | list) -> list[dict]:
    with pixgrep.open_catalog(catalog, str(model)) as cat:
        return [r.to_json() for r in cat.search(query, k=15)]


def test_export_then_import_gives_identical_search_results(indexed, photos, tiny_model_dir, tmp_path):
    out = tmp_path / "vectors.parquet"
    pixgrep_cli("export", "--parquet", str(out), "--catalog", str(indexed))
    table = pq.read_table(out)
    assert table.num_rows == 40
    for column in ("path", "content_hash", "model", "vector", "width", "height", "taken_at"):
        assert column in table.column_names
    assert table.schema.field("vector").type.list_size == 32

    fresh = tmp_path / "fresh.db"
    done = pixgrep_cli("import", str(out), "--catalog", str(fresh), "--model", str(tiny_model_dir), "--json")
    assert json.loads(done.stdout)["rows"] == 40
    reference = sorted(photos.glob("*.jpg"))[3]
    for query in [*QUERIES, str(reference)]:
        assert results(fresh, tiny_model_dir, query) == results(indexed, tiny_model_dir, query)

    # The imported rows carry the real hash, size and mtime: a local index has nothing to do.
    with pixgrep.open_catalog(fresh, str(tiny_model_dir)) as cat:
        again = cat.index([photos])
    assert (again.encoded, again.reused, again.removed) == (0, 0, 0)


def write_clip_retrieval(folder: Path, paths: list[str], vectors: np.ndarray, parts: int = 2) -> None:
    """clip-retrieval's inference output: img_emb/img_emb_N.npy (float16) + metadata/metadata_N.parquet."""
    (folder / "img_emb").mkdir(parents=True)
    (folder / "metadata").mkdir()
    for n, (names, emb) in enumerate(
        zip(np.array_split(np.array(paths), parts), np.array_split(vectors, parts), strict=True)
    ):
        np.save(folder / "img_emb" / f"img_emb_{n}.npy", emb.astype(np.float16))
        table = pa.table({"image_path": list(names), "caption": [None] * len(names)})
        pq.write_table(table, folder / "metadata" / f"metadata_{n}.parquet")


def test_clip_retrieval_folder_imports_and_searches(photos, tiny_model_dir, tmp_path):
    encoder = load_encoder(str(tiny_model_dir))
    files = sorted(photos.glob("*.jpg"))[:12]
    from pixgrep.images.decode import open_image

    vectors = encoder.encode_images([open_image(f) for f in files])
    # Files that live on another machine: searchable here, not readable.
    remote = [f"/mnt/cluster/flickr/{f.name}" for f in files]
    out = tmp_path / "clip-out"
    write_clip_retrieval(out, remote, vectors)
    catalog = tmp_path / "catalog.db"
    done = pixgrep_cli(
        "import", str(out), "--catalog", str(catalog), "--model", str(tiny_model_dir), "--json"
    )
    assert json.loads(done.stdout) | {"seconds": 0} == {"files": 2, "rows": 12, "resumed": 0, "seconds": 0}

    # A query by one of the images finds its remote copy first (CLI, -n, scoped to /).
    found = pixgrep_cli(
        "-n",
        "-f",
        "-k",
        "3",
        "--in",
        "/",
        str(files[5]),
        "--catalog",
        str(catalog),
        "--model",
        str(tiny_model_dir),
    )
    assert found.stdout.splitlines()[0] == remote[5]
    # ... and through the HTTP API; the thumbnail of a file not on this machine is a 404.
    from fastapi.testclient import TestClient

    from pixgrep.server.app import create_app

    with TestClient(create_app(catalog, encoder=encoder), base_url="http://localhost") as client:
        hits = client.get("/api/search", params={"q": "a dog", "k": 20}).json()["results"]
        assert sorted(h["path"] for h in hits) == sorted(remote)
        assert client.get(f"/api/images/{hits[0]['id']}/thumb").status_code == 404


def test_synthetic_rows_are_replaced_by_a_local_index(photos, tiny_model_dir, tmp_path):
    encoder = load_encoder(str(tiny_model_dir))
    files = sorted(photos.glob("*.jpg"))[:10]
    from pixgrep.images.decode import open_image

    out = tmp_path / "clip-out"
    write_clip_retrieval(out, [str(f) for f in files], encoder.encode_images([open_image(f) for f in files]))
    catalog = tmp_path / "catalog.db"
    db = CatalogDB(catalog)
    import_sources(db, find_sources([out]), encoder.model_id, encoder.dim)
    before = db.images_by_path()
    assert len(before) == 10 and all(r.content_hash.startswith(SYNTHETIC_PREFIX) for r in before.values())
    db.close()

    with pixgrep.open_catalog(catalog, encoder=encoder) as cat:
        summary = cat.index([photos])
        stats = cat.stats()
    db = CatalogDB(catalog)
    after = db.images_by_path()
    db.close()
    assert summary.found == 40 and summary.encoded == 40  # the 10 imported files are re-read, not doubled
    assert len(after) == 40 and not any(r.content_hash.startswith(SYNTHETIC_PREFIX) for r in after.values())
    assert stats["vectors"] == {encoder.model_id: 40}  # the synthetic vectors are gone


def test_wrong_dimension_or_model_is_refused_with_one_line(indexed, tiny_model_dir, tmp_path):
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"path": ["/x/a.jpg"], "vector": [[0.1] * 16]}), bad)
    catalog = tmp_path / "catalog.db"
    done = pixgrep_cli(
        "import", str(bad), "--catalog", str(catalog), "--model", str(tiny_model_dir), check=False
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "16 numbers" in done.stderr and "32" in done.stderr

    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"path": ["/x/a.jpg"], "model": ["ViT-H-14"], "vector": [[0.1] * 32]}), other)
    done = pixgrep_cli(
        "import", str(other), "--catalog", str(catalog), "--model", str(tiny_model_dir), check=False
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "ViT-H-14" in done.stderr

    missing = tmp_path / "nopath.parquet"
    pq.write_table(pa.table({"file": ["/x/a.jpg"], "vector": [[0.1] * 32]}), missing)
    done = pixgrep_cli(
        "import", str(missing), "--catalog", str(catalog), "--model", str(tiny_model_dir), check=False
    )
    assert done.returncode == 2 and "no path column" in done.stderr
    db = CatalogDB(catalog)
    assert db.stats()["images"] == 0  # nothing was written by any refused import
    db.close()


def test_interrupted_import_resumes_without_duplicates(tiny_model_dir, tmp_path):
    encoder = load_encoder(str(tiny_model_dir))
    rng = np.random.default_rng(7)
    n = 50
    paths = [f"/remote/set/{i:03}.jpg" for i in range(n)]
    vectors = rng.standard_normal((n, 32)).astype(np.float32)
    source = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"path": paths, "vector": list(vectors)}), source)
    db = CatalogDB(tmp_path / "catalog.db")

    def stop_after_two(summary) -> None:
        if summary.rows >= 14:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_sources(db, find_sources([source]), encoder.model_id, 32, batch=7, progress=stop_after_two)
    assert len(db.images_by_path()) == 14
    summary = import_sources(db, find_sources([source]), encoder.model_id, 32, batch=7)
    assert (summary.resumed, summary.rows) == (14, 36)
    stored = db.images_by_path()
    assert sorted(stored) == paths
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    got = np.stack([db.vector_for_hash(stored[p].content_hash, encoder.model_id) for p in paths])
    assert np.allclose(got.astype(np.float32), unit, atol=2e-3)
    db.close()


def test_unreadable_input_is_one_line(tmp_path):
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    with pytest.raises(PixgrepError, match="not a readable Parquet file"):
        find_sources([junk])
    with pytest.raises(PixgrepError, match="no such file or folder"):
        find_sources([tmp_path / "absent"])


def test_clip_retrieval_parts_that_do_not_pair_up_are_refused(tmp_path):
    out = tmp_path / "clip-out"
    write_clip_retrieval(out, [f"/x/{i}.jpg" for i in range(6)], np.ones((6, 32), np.float32))
    np.save(out / "img_emb" / "img_emb_1.npy", np.ones((2, 32), np.float16))  # 2 vectors for 3 rows
    with pytest.raises(PixgrepError, match=r"holds \(2, 32\) vectors for 3 metadata rows"):
        find_sources([out])
    (out / "metadata" / "metadata_1.parquet").unlink()
    with pytest.raises(PixgrepError, match="do not pair up"):
        find_sources([out])
