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

    with TestClient(create_app(world["catalog"], encoder=FakeEncoder()), base_url="http://localhost") as c:
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


@pytest.mark.parametrize("near", ["nan,nan", "nan,nan,5", "inf,-inf", "1e999,0"])
def test_coordinates_that_are_not_finite_numbers_are_400(client, near):
    """ "nan,nan" used to be looked up as a place name (the town of Nan, Thailand) and answered 200."""
    for route, params in (("/api/search", {"q": "x", "near": near}), ("/api/facets", {"near": near})):
        assert "latitude must be in" in ok(client.get(route, params=params), 400)["error"], (route, near)


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


def names(body) -> list[str]:
    return [r["name"] for r in body["results"]]


def test_search_filters_over_http(client, world):
    listed = ok(client.get("/api/search", params={"place": "italy"}))
    assert sorted(names(listed)) == ["87_OSError.jpg", "DSCN0010.jpg", "DSCN0012.jpg"]
    times = [r["taken_at"] for r in listed["results"]]
    assert times == sorted(times, reverse=True) and all(r["score"] == 0 for r in listed["results"])
    ranked = ok(client.get("/api/search", params={"q": "a photo", "camera": "nikon", "k": 2}))
    assert len(ranked["results"]) == 2
    assert set(names(ranked)) <= {"87_OSError.jpg", "DSCN0010.jpg", "DSCN0012.jpg", "Nikon_D70.jpg"}
    assert names(ok(client.get("/api/search", params={"near": "Florence"}))) == ["87_OSError.jpg"]
    posted = ok(client.post("/api/search", json={"q": "a bridge", "tag": "places"}))
    assert names(posted) == ["bridge.jpg"]
    anna = {"kind": "image_id", "value": world["ids"]["anna.jpg"]}
    like = ok(client.post("/api/search", json={"terms": [anna], "place": "italy", "k": 5}))
    assert sorted(names(like)) == ["87_OSError.jpg", "DSCN0010.jpg", "DSCN0012.jpg"]
    from metadata_samples import plain_jpeg

    upload = plain_jpeg(world["catalog"].parent / "query.jpg", 7).read_bytes()
    found = ok(client.post("/api/search/image", files={"file": ("q.jpg", upload)}, data={"camera": "canon"}))
    assert names(found) == ["Canon_40D.jpg"]
    assert "nothing to search for" in ok(client.get("/api/search"), 400)["error"]
    assert "unknown place" in ok(client.get("/api/search", params={"q": "x", "near": "Narnia"}), 400)["error"]
    assert "--camera needs some text" in ok(client.get("/api/search", params={"camera": " "}), 400)["error"]


def test_stats_over_http_count_metadata(client):
    stats = ok(client.get("/api/stats"))
    assert (stats["with_gps"], stats["with_camera"], stats["with_keywords"]) == (5, 6, 3)
