"""The metadata endpoints (facets, one image's metadata), the favicon and the offline /docs page."""

from __future__ import annotations

import os

import pytest
from fastapi.testclient import TestClient
from metadata_samples import build_photo_folder

import pixgrep
from pixgrep.server.app import create_app


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from fakes import FakeEncoder

    base = tmp_path_factory.mktemp("server-meta")
    root = build_photo_folder(base / "photos")
    with pixgrep.open_catalog(base / "c.db", encoder=FakeEncoder()) as catalog:
        catalog.index([root])
        found = catalog.images_at(str(p) for p in root.iterdir())
        ids = {os.path.basename(p): r.id for p, r in found.items()}
    return {"catalog": base / "c.db", "ids": ids}


@pytest.fixture(scope="module")
def client(world):
    from fakes import FakeEncoder

    with TestClient(create_app(world["catalog"], encoder=FakeEncoder())) as c:
        yield c


def ok(response, status=200):
    assert response.status_code == status, response.text
    return response.json()


def test_facets_count_and_narrow(client):
    facets = ok(client.get("/api/facets"))
    places = {f["value"]: f["count"] for f in facets["places"]}
    assert places["Arezzo"] == 2 and places["Florence"] == 1
    assert {f["label"] for f in facets["cameras"]} >= {"Canon EOS 40D", "NIKON D70s", "Apple iPhone 6"}
    assert {f["value"] for f in facets["tags"]} >= {"bridge", "Anna", "Blue Square"}
    assert all(f["count"] >= 1 for group in facets.values() for f in group)
    narrowed = ok(client.get("/api/facets", params={"camera": "nikon"}))
    assert {f["value"] for f in narrowed["countries"]} == {"Italy"}
    assert narrowed["tags"] == []
    assert "unknown place" in ok(client.get("/api/facets", params={"near": "Xyzzyville"}), 400)["error"]


def test_image_meta(client, world):
    meta = ok(client.get(f"/api/images/{world['ids']['87_OSError.jpg']}/meta"))
    assert meta["camera"] == "NIKON D70s" and meta["lens"] == "18.0-70.0 mm f/3.5-4.5"
    assert meta["place"] == "Florence, Tuscany, Italy"
    assert meta["latitude"] == pytest.approx(43.7856, abs=1e-3) and meta["altitude"] == pytest.approx(42.123)
    bridge = ok(client.get(f"/api/images/{world['ids']['bridge.jpg']}/meta"))
    assert bridge["keywords"] == ["bridge", "darktable|format|jpg", "Places|Italy|Florence"]
    assert bridge["title"] == "Ponte Vecchio at dusk" and bridge["camera"] is None
    ok(client.get("/api/images/999999/meta"), 404)


def test_favicon_is_an_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response.headers["content-type"] == "image/x-icon"
    assert response.content[:4] == b"\x00\x00\x01\x00"  # the ICO signature


def test_docs_page_uses_local_assets_only(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower() and "https://" not in page.text.split("<body>")[0]
    assert "/docs-assets/swagger-ui-bundle.js" in page.text
    script = client.get("/docs-assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000
    assert client.get("/docs-assets/swagger-ui.css").status_code == 200
    assert ok(client.get("/openapi.json"))["paths"]["/api/facets"]
