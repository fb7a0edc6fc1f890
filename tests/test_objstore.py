"""Catalog rows whose path is an object-store URI, against a real (local) S3 server: moto's, on
127.0.0.1 (tests/objectstore.py). Rows come in as Parquet (pixgrep's export with the paths moved to
s3://), are searched, served by the thumbnail and file routes, and go out and in again as Parquet.
GCS cannot be faked cheaply here: its dispatch is checked with a stand-in store. Indexing from S3
on a Ray cluster is in tests/test_ray_index.py."""

from __future__ import annotations

import io
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data

pa = pytest.importorskip("pyarrow", reason="needs the parquet extra (pip install 'pixgrep[parquet]')")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("fastapi", reason="needs the serve extra (pip install 'pixgrep[serve]')")

from fakes import FakeEncoder  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from objectstore import s3_server  # noqa: E402
from PIL import Image  # noqa: E402

import pixgrep  # noqa: E402
from pixgrep.images import storage  # noqa: E402
from pixgrep.server import images as image_routes  # noqa: E402
from pixgrep.server.app import create_app  # noqa: E402
from pixgrep.server.thumbnails import make_thumbnail  # noqa: E402

COUNT = 24
PREFIX = "photos/flickr"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    source = shared_data("flickr8k") / "images"
    return sorted(source.glob("*.jpg"))[:COUNT]


@pytest.fixture(scope="module")
def store(photos):
    with s3_server() as server:
        server.uris = server.upload(photos, PREFIX)
        yield server


def with_paths(parquet: Path, out: Path, paths: dict[str, str]) -> Path:
    """The Parquet file with its path column mapped through `paths` (by file name)."""
    table = pq.read_table(parquet)
    moved = [paths[Path(p).name] for p in table.column("path").to_pylist()]
    pq.write_table(table.set_column(table.schema.get_field_index("path"), "path", pa.array(moved)), out)
    return out


@pytest.fixture(scope="module")
def catalog(store, photos, tmp_path_factory) -> Path:
    """A catalog of the bucket's objects: a local index of the same files, exported, the paths
    turned into the objects' URIs, imported (what a cluster's or another tool's Parquet brings)."""
    base = tmp_path_factory.mktemp("objstore")
    folder = base / "photos"
    folder.mkdir()
    for path in photos:  # copies: the walk skips links to files outside the folders it indexes
        shutil.copyfile(path, folder / path.name)
    with pixgrep.open_catalog(base / "local.db", encoder=FakeEncoder()) as local:
        assert local.index([folder]).encoded == COUNT
        local.export_parquet(base / "local.parquet", "fake")
    uris = {uri.rsplit("/", 1)[1]: uri for uri in store.uris}
    moved = with_paths(base / "local.parquet", base / "s3.parquet", uris)
    with pixgrep.open_catalog(base / "s3.db", encoder=FakeEncoder()) as cat:
        assert cat.import_parquet([moved]).rows == COUNT
    return base / "s3.db"


@pytest.fixture(scope="module")
def client(catalog):
    with TestClient(create_app(catalog, encoder=FakeEncoder()), base_url="http://localhost") as c:
        yield c


def id_of(catalog: Path, path: str) -> int:
    with pixgrep.open_catalog(catalog, encoder=FakeEncoder()) as cat:
        return cat.images_at([path])[path].id


def error(response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]
    return body["error"]


def test_storage_reads_objects_and_says_why_not(store, photos, tmp_path):
    assert storage.read_bytes(store.uris[0]) == photos[0].read_bytes()
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(f"s3://{PREFIX}/no-such-object.jpg")
    with pytest.raises(storage.TooLarge, match="byte cap"):
        storage.read_bytes(store.uris[0], max_bytes=1000)
    local = tmp_path / "x.bin"
    local.write_bytes(b"x" * 5000)
    with pytest.raises(storage.TooLarge):
        storage.read_bytes(str(local), max_bytes=4999)
    assert storage.read_bytes(local.as_uri(), max_bytes=5000) == local.read_bytes()
    with pytest.raises(OSError, match="not a location pyarrow can open"):
        storage.read_bytes("nosuchscheme://bucket/key.jpg")
    assert storage.local_path(local.as_uri()) == str(local)
    assert storage.local_path(store.uris[0]) is None


def test_search_finds_the_objects(catalog, photos):
    with pixgrep.open_catalog(catalog, encoder=FakeEncoder()) as cat:
        hits = cat.search(str(photos[3]), k=3)  # an image query: the local copy of one object
    assert hits[0].path == f"s3://{PREFIX}/{photos[3].name}"
    assert all(hit.path.startswith(f"s3://{PREFIX}/") for hit in hits)


def test_thumbnails_and_files_of_s3_rows_are_served(client, catalog, photos):
    image_id = id_of(catalog, f"s3://{PREFIX}/{photos[5].name}")
    info = client.get(f"/api/images/{image_id}").json()
    assert info["path"] == f"s3://{PREFIX}/{photos[5].name}" and info["name"] == photos[5].name
    thumb = client.get(f"/api/images/{image_id}/thumb")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(thumb.content)) as picture, Image.open(photos[5]) as original:
        assert picture.format == "JPEG" and max(picture.size) == min(256, max(original.size))
    assert thumb.content == make_thumbnail(str(photos[5]), 256)  # the very preview of the local file
    again = client.get(f"/api/images/{image_id}/thumb", headers={"If-None-Match": thumb.headers["etag"]})
    assert again.status_code == 304
    full = client.get(f"/api/images/{image_id}/file")
    assert full.status_code == 200 and full.headers["content-type"] == "image/jpeg"
    assert full.content == photos[5].read_bytes()


def test_a_missing_object_is_a_404(client, catalog, store, photos):
    uri = f"s3://{PREFIX}/{photos[7].name}"
    image_id = id_of(catalog, uri)
    store.delete(uri)
    assert "is gone" in error(client.get(f"/api/images/{image_id}/thumb?size=128"), 404)
    assert "is gone" in error(client.get(f"/api/images/{image_id}/file"), 404)


def test_an_object_over_the_cap_is_a_413(client, catalog, photos, monkeypatch):
    monkeypatch.setattr(image_routes, "REMOTE_MAX_BYTES", 1000)
    image_id = id_of(catalog, f"s3://{PREFIX}/{photos[8].name}")
    assert "byte cap" in error(client.get(f"/api/images/{image_id}/file"), 413)
    assert "byte cap" in error(client.get(f"/api/images/{image_id}/thumb?size=1024"), 413)


def test_an_unreachable_store_is_a_404(client, catalog, photos, monkeypatch):
    image_id = id_of(catalog, f"s3://{PREFIX}/{photos[9].name}")
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    assert "cannot be read from its store" in error(client.get(f"/api/images/{image_id}/thumb?size=512"), 404)


def test_a_store_that_never_answers_is_a_404_not_a_hang(client, catalog, photos, monkeypatch):
    image_id = id_of(catalog, f"s3://{PREFIX}/{photos[10].name}")
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.setattr(image_routes, "REMOTE_TIMEOUT_S", 0.5)
        monkeypatch.setattr(storage, "S3_REQUEST_TIMEOUT_S", 2.0)  # so the pool thread ends soon after
        monkeypatch.setattr(storage, "S3_ATTEMPTS", 1)
        assert "did not answer in 0.5 s" in error(client.get(f"/api/images/{image_id}/file"), 404)


def test_parquet_round_trip_keeps_the_uris(catalog, tmp_path):
    with pixgrep.open_catalog(catalog, encoder=FakeEncoder()) as cat:
        assert cat.export_parquet(tmp_path / "out.parquet", "fake") == COUNT
        before = [(h.path, round(h.score, 4)) for h in cat.search("a dog", k=COUNT)]
    paths = pq.read_table(tmp_path / "out.parquet").column("path").to_pylist()
    assert sorted(paths) == sorted(p for p, _ in before) and all(p.startswith("s3://") for p in paths)
    with pixgrep.open_catalog(tmp_path / "again.db", encoder=FakeEncoder()) as again:
        assert again.import_parquet([tmp_path / "out.parquet"]).rows == COUNT
        assert [(h.path, round(h.score, 4)) for h in again.search("a dog", k=COUNT)] == before


def stand_in_rows(tmp_path: Path, paths: list[str]) -> Path:
    """A catalog with one imported row per path (vectors of no consequence)."""
    rng = np.random.default_rng(0)
    table = pa.table(
        {
            "path": paths,
            "vector": pa.array(
                list(rng.standard_normal((len(paths), FakeEncoder.dim)).astype(np.float32)),
                pa.list_(pa.float32(), FakeEncoder.dim),
            ),
        }
    )
    pq.write_table(table, tmp_path / "rows.parquet")
    with pixgrep.open_catalog(tmp_path / "rows.db", encoder=FakeEncoder()) as cat:
        cat.import_parquet([tmp_path / "rows.parquet"])
    return tmp_path / "rows.db"


def test_gcs_and_other_pyarrow_uris_go_through_pyarrows_dispatch(tmp_path, photos, monkeypatch):
    """gs:// (no fake GCS server here): storage hands the URI to pyarrow's from_uri; a stand-in
    store answers it as GcsFileSystem would, and the server serves the object."""
    from pyarrow import fs

    bucket = tmp_path / "store" / "bucket"
    bucket.mkdir(parents=True)
    (bucket / "a.jpg").write_bytes(photos[0].read_bytes())
    asked = []

    def from_uri(uri: str):
        asked.append(uri)
        scheme, _, rest = uri.partition("://")
        assert scheme == "gs"
        return fs.SubTreeFileSystem(str(tmp_path / "store"), fs.LocalFileSystem()), rest

    monkeypatch.setattr(storage, "_from_uri", from_uri)
    catalog = stand_in_rows(tmp_path, ["gs://bucket/a.jpg", "gs://bucket/gone.jpg"])
    ids = {path: id_of(catalog, path) for path in ("gs://bucket/a.jpg", "gs://bucket/gone.jpg")}
    with TestClient(create_app(catalog, encoder=FakeEncoder()), base_url="http://localhost") as c:
        assert c.get(f"/api/images/{ids['gs://bucket/a.jpg']}/file").content == photos[0].read_bytes()
        assert "is gone" in error(c.get(f"/api/images/{ids['gs://bucket/gone.jpg']}/thumb"), 404)
    assert asked == ["gs://bucket/a.jpg", "gs://bucket/gone.jpg"]


def test_uri_rows_never_get_around_the_local_guards(tmp_path, photos):
    """A file:// row is a local path with the same guards; schemes that are not stores are refused."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.jpg"
    secret.write_bytes(photos[1].read_bytes())
    served = tmp_path / "served"
    served.mkdir()
    good = served / "good.jpg"
    good.write_bytes(photos[2].read_bytes())
    (served / "link.jpg").symlink_to(secret)
    rows = {
        "good": good.as_uri(),
        "link": (served / "link.jpg").as_uri(),
        "dotted": f"file://{served}/../outside/secret.jpg",
        "local": f"local://{served}/link.jpg",
        "mock": "mock://bucket/secret.jpg",
        "http": "http://127.0.0.1:1/secret.jpg",
    }
    catalog = stand_in_rows(tmp_path, list(rows.values()))
    ids = {path: id_of(catalog, path) for path in rows.values()}
    with TestClient(create_app(catalog, encoder=FakeEncoder()), base_url="http://localhost") as c:
        assert c.get(f"/api/images/{ids[rows['good']]}/file").content == good.read_bytes()
        for name in ("link", "dotted", "local", "mock", "http"):
            for kind in ("file", "thumb"):
                response = c.get(f"/api/images/{ids[rows[name]]}/{kind}")
                assert response.status_code == 403, (name, kind, response.text)
                assert response.content != secret.read_bytes()


def test_terminal_previews_of_s3_results(store, photos, monkeypatch):
    """`pixgrep -p` on an object-store result draws it (fetched with a cap and a deadline), or says
    in one line why not."""
    import base64

    from pixgrep.cli.search import _preview_of

    monkeypatch.delenv("TERM_PROGRAM", raising=False)
    monkeypatch.delenv("LC_TERMINAL", raising=False)
    monkeypatch.delenv("TMUX", raising=False)
    monkeypatch.setenv("TERM", "xterm-kitty")
    drawn = _preview_of(store.uris[11], 100)
    assert drawn.startswith("\033_Ga=T,f=100")  # the Kitty graphics protocol
    payload = "".join(part.split(";", 1)[1] for part in drawn.strip().split("\033\\") if part)
    with Image.open(io.BytesIO(base64.b64decode(payload))) as png, Image.open(photos[11]) as original:
        assert png.format == "PNG" and png.height == min(100, original.height)
    assert _preview_of(f"s3://{PREFIX}/no-such.jpg", 100) == "       (no preview: the object is gone)\n"
    monkeypatch.setattr("pixgrep.cli.search.PREVIEW_MAX_BYTES", 1000)
    assert "byte cap" in _preview_of(store.uris[11], 100)


def test_a_uri_prefix_scopes_a_search(catalog, store):
    with pixgrep.open_catalog(catalog, encoder=FakeEncoder()) as cat:
        inside = cat.search("a dog", k=COUNT, roots=[f"s3://{PREFIX}"], dedup=False)
        assert len(inside) == COUNT and all(r.path.startswith(f"s3://{PREFIX}/") for r in inside)
        assert cat.search("a dog", roots=[f"s3://{PREFIX}-other"]) == []


def test_the_cli_takes_a_uri_scope_without_walking_it(tmp_path, tiny_model_dir):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "pixgrep.cli", "--in", "s3://bucket/photos", "a dog"]
        + ["--catalog", str(tmp_path / "c.db"), "--model", str(tiny_model_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr  # searched (nothing is there), not refused, not walked
    assert done.stderr.startswith("pixgrep: no matching images")


def test_uri_listing_follows_the_walks_rules(store, photos, tmp_path):
    """What `index URI --ray` lists on the driver: images only, no hidden names, --exclude, one
    object as a root; every URI spelled from the root as given (file:// and s3:// alike)."""
    from pixgrep.catalog.ray_ingest import scan_uri

    folder = tmp_path / "store"
    (folder / "skip").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(photos[0].read_bytes())
    (folder / ".hidden.jpg").write_bytes(photos[1].read_bytes())
    (folder / "notes.txt").write_text("no image")
    (folder / "skip" / "b.jpg").write_bytes(photos[2].read_bytes())
    root = folder.as_uri()
    listed = scan_uri(root)
    assert [e.path for e in listed] == [f"{root}/a.jpg", f"{root}/skip/b.jpg"]
    assert [e.size for e in listed] == [photos[0].stat().st_size, photos[2].stat().st_size]
    assert [e.path for e in scan_uri(root, exclude=["skip"])] == [f"{root}/a.jpg"]
    assert len(scan_uri(root, include_hidden=True)) == 3
    in_s3 = scan_uri(f"s3://{PREFIX}/")
    there = [u for u in store.uris if store.filesystem.get_file_info(u[5:]).size]  # one may be deleted
    assert [e.path for e in in_s3] == sorted(there) and len(there) >= COUNT - 1
    assert [e.path for e in scan_uri(store.uris[4])] == [store.uris[4]]


def test_without_pyarrow_uri_rows_are_4xx_not_500(tmp_path, photos, monkeypatch):
    """A catalog taken to a server without pyarrow: URI rows answer with the reason, never a 500."""
    import sys

    good = tmp_path / "good.jpg"
    good.write_bytes(photos[0].read_bytes())
    catalog = stand_in_rows(tmp_path, ["s3://elsewhere/x.jpg", good.as_uri()])
    ids = {path: id_of(catalog, path) for path in ("s3://elsewhere/x.jpg", good.as_uri())}
    monkeypatch.delattr(pa, "fs")
    monkeypatch.setitem(sys.modules, "pyarrow.fs", None)  # `from pyarrow import fs` fails now
    with TestClient(create_app(catalog, encoder=FakeEncoder()), base_url="http://localhost") as c:
        assert "needs pyarrow" in error(c.get(f"/api/images/{ids['s3://elsewhere/x.jpg']}/thumb"), 404)
        error(c.get(f"/api/images/{ids[good.as_uri()]}/file"), 403)  # not parsed: not served
