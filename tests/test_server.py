"""HTTP API tests through FastAPI's TestClient: every endpoint and every bad input a client can send.

The catalog is filled directly (serverkit.add_to_catalog) with FakeEncoder vectors: an
image's vector comes from its pixels, so searching with a catalog file's own bytes finds it first.
"""

from __future__ import annotations

import base64
import functools
import http.server
import io
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from serverkit import add_to_catalog, draw_image, make_images

from pixgrep.catalog.db import CatalogDB
from pixgrep.server.app import create_app


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Generated photos (2 per colour folder), a catalog of them, and a secret outside the roots."""
    from fakes import FakeEncoder

    base = tmp_path_factory.mktemp("server")
    files = make_images(base / "photos", per_colour=2)
    ids = add_to_catalog(base / "catalog.db", files, FakeEncoder())
    outside = base / "outside"
    outside.mkdir()
    draw_image((1, 2, 3), 99).save(outside / "secret.png")
    (outside / "secret.txt").write_text("TOP SECRET CONTENTS\n")
    return {"base": base, "files": files, "ids": ids, "catalog": base / "catalog.db", "outside": outside}


@pytest.fixture(scope="module")
def client(world):
    from fakes import FakeEncoder

    with TestClient(create_app(world["catalog"], encoder=FakeEncoder()), base_url="http://localhost") as c:
        yield c


def ok(response, status=200):
    assert response.status_code == status, response.text
    return response.json()


def error(response, status):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"], body
    return body["error"]


# --- the page, the OpenAPI page ------------------------------------------------------------------


def test_page_static_files_and_openapi_docs(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="refine-form"' in page.text and "/static/app.js" in page.text
    for asset, kind in (("/static/app.js", "javascript"), ("/static/style.css", "text/css")):
        response = client.get(asset)
        assert response.status_code == 200 and kind in response.headers["content-type"]
    assert client.get("/docs").status_code == 200
    paths = ok(client.get("/openapi.json"))["paths"]
    for path in (
        "/api/search",
        "/api/search/image",
        "/api/images/{image_id}/thumb",
        "/api/images/{image_id}/file",
        "/api/images/{image_id}/similar",
        "/api/stats",
        "/api/models",
        "/api/index",
        "/knn-service",
        "/indices-list",
    ):
        assert path in paths, path


# --- search by text --------------------------------------------------------------------------------


def test_text_search_returns_ranked_results_with_image_urls(client, world):
    body = ok(client.get("/api/search", params={"q": "a red square", "k": 5}))
    results = body["results"]
    assert len(results) == 5 and body["next_offset"] == 5
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    first = results[0]
    assert first["id"] == world["ids"][first["path"]]
    assert first["name"] == os.path.basename(first["path"])
    assert first["thumb"] == f"/api/images/{first['id']}/thumb"
    assert set(first) >= {"width", "height", "taken_at", "size", "file"}


def test_query_arithmetic_changes_the_ranking(client):
    plain = ok(client.get("/api/search", params={"q": "sunset", "k": 20}))["results"]
    mixed = ok(client.get("/api/search", params={"q": "sunset - 2:harbour", "k": 20}))["results"]
    assert [r["id"] for r in plain] != [r["id"] for r in mixed]


def test_paging_by_offset_walks_through_all_results(client, world):
    everything = ok(client.get("/api/search", params={"q": "boat", "k": 100}))
    assert everything["next_offset"] is None  # a short page is the last one
    all_ids = [r["id"] for r in everything["results"]]
    assert len(all_ids) == len(world["files"])
    paged = []
    offset = 0
    while offset is not None:
        page = ok(client.get("/api/search", params={"q": "boat", "k": 7, "offset": offset}))
        paged += [r["id"] for r in page["results"]]
        offset = page["next_offset"]
    assert paged == all_ids


def test_threshold_drops_weaker_results(client):
    results = ok(client.get("/api/search", params={"q": "boat", "k": 100}))["results"]
    cut = results[4]["score"]
    kept = ok(client.get("/api/search", params={"q": "boat", "k": 100, "threshold": cut}))["results"]
    assert 5 <= len(kept) < len(results)
    assert all(r["score"] >= cut - 1e-6 for r in kept)


def test_folder_scope_keeps_only_images_under_the_folder(client, world):
    red = world["base"] / "photos" / "red"
    results = ok(client.get("/api/search", params={"q": "boat", "k": 50, "root": str(red)}))["results"]
    assert len(results) == 2 and all(r["path"].startswith(str(red) + os.sep) for r in results)
    two = [str(red), str(world["base"] / "photos" / "blue")]
    results = ok(client.get("/api/search", params=[("q", "boat"), ("k", 50)] + [("root", r) for r in two]))
    assert len(results["results"]) == 4
    error(client.get("/api/search", params={"q": "boat", "root": "photos/red"}), 400)


# --- search by uploaded image, URL, catalog id, combined terms -------------------------------------


def test_upload_finds_the_same_picture_first(client, world):
    target = world["files"][5]
    body = ok(
        client.post("/api/search/image", files={"file": (target.name, target.read_bytes())}, data={"k": 3})
    )
    assert body["results"][0]["path"] == str(target)
    assert body["results"][0]["score"] > 0.99


def test_upload_with_text_is_one_composed_query(client, world):
    target = world["files"][5]
    alone = ok(
        client.post("/api/search/image", files={"file": ("a.png", target.read_bytes())}, data={"k": 20})
    )
    both = ok(
        client.post(
            "/api/search/image",
            files={"file": ("a.png", target.read_bytes())},
            data={"k": 20, "q": "3:at night"},
        )
    )
    assert [r["score"] for r in alone["results"]] != [r["score"] for r in both["results"]]


def test_upload_bad_inputs(client):
    assert "cannot use the image" in error(
        client.post("/api/search/image", files={"file": ("x.jpg", b"this is plain text, not a JPEG")}), 415
    )
    error(client.post("/api/search/image", files={"file": ("x.jpg", b"")}), 400)
    error(client.post("/api/search/image", data={"q": "no file"}), 415)  # a form, not multipart
    error(client.post("/api/search/image", data={"q": "no file"}, files={"other": ("a", b"x")}), 422)
    # A truncated PNG: the header is fine, the pixels are missing.
    buffer = io.BytesIO()
    draw_image((9, 9, 9), 1).save(buffer, "PNG")
    error(client.post("/api/search/image", files={"file": ("t.png", buffer.getvalue()[:80])}), 415)
    # ... and the same file as a base64 term of a JSON search: the same answer
    term = {"kind": "bytes", "value": base64.b64encode(buffer.getvalue()[:80]).decode()}
    error(client.post("/api/search", json={"terms": [term]}), 415)


def test_upload_over_the_cap_is_refused_with_413(world):
    from fakes import FakeEncoder

    app = create_app(world["catalog"], encoder=FakeEncoder(), max_upload=50_000)
    with TestClient(app, base_url="http://localhost") as small:
        big = os.urandom(60_000)  # over the cap, under the body limit: the upload route refuses it
        assert "upload limit" in error(small.post("/api/search/image", files={"file": ("b.jpg", big)}), 413)
        huge = os.urandom(200_000)  # over the whole-body limit: refused before it is parsed
        error(small.post("/api/search/image", files={"file": ("h.jpg", huge)}), 413)
        error(small.post("/knn-service", json={"image": base64.b64encode(big).decode()}), 413)


def test_upload_cap_default_is_20_mb(client):
    body = os.urandom(21 * 1024 * 1024)
    error(client.post("/api/search/image", files={"file": ("big.jpg", body)}), 413)


@pytest.fixture(scope="module")
def image_host(world):
    """A plain local HTTP server over the photos folder, for image URL queries."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(world["base"]))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(5)


@pytest.fixture(scope="module")
def lan_client(world):
    """A server started with --allow-private-urls: it may fetch the image host on 127.0.0.1."""
    from fakes import FakeEncoder

    app = create_app(world["catalog"], encoder=FakeEncoder(), allow_private_urls=True)
    with TestClient(app, base_url="http://localhost") as c:
        yield c


def test_search_by_image_url(lan_client, world, image_host):
    client = lan_client
    target = world["files"][7]
    relative = target.relative_to(world["base"]).as_posix()
    body = ok(client.get("/api/search", params={"image_url": f"{image_host}/{relative}", "k": 3}))
    assert body["results"][0]["path"] == str(target)
    # The same URL written in the query language.
    body = ok(client.get("/api/search", params={"q": f"{image_host}/{relative}", "k": 3}))
    assert body["results"][0]["path"] == str(target)


def test_image_url_bad_inputs_all_get_the_same_answer(lan_client, image_host, world):
    """A text file, a 404, a closed port: one answer, which tells nothing about what was there."""
    from serverkit import free_port

    client = lan_client
    error(client.get("/api/search", params={"image_url": "ftp://example.com/a.jpg"}), 400)
    urls = [
        f"{image_host}/outside/secret.txt",
        f"{image_host}/no-such-file.jpg",
        f"http://127.0.0.1:{free_port()}/a.jpg",
    ]
    answers = [
        error(client.get("/api/search", params={"image_url": url}), 400).replace(url, "URL") for url in urls
    ]
    assert answers[0] == answers[1] == answers[2] and "no image could be used from this URL" in answers[0]


def test_more_like_this_by_catalog_id(client, world):
    target = world["files"][0]
    image_id = world["ids"][str(target)]
    body = ok(client.get("/api/search", params={"like": image_id, "k": 5}))
    ids = [r["id"] for r in body["results"]]
    assert image_id not in ids  # the picture itself is left out
    assert body["results"][0]["path"].startswith(str(target.parent))  # its sibling: same colour
    assert ok(client.get(f"/api/images/{image_id}/similar", params={"k": 5}))["results"] == body["results"]
    error(client.get("/api/search", params={"like": 99999}), 404)
    error(client.get("/api/images/99999/similar"), 404)
    error(client.get("/api/search", params={"like": "abc"}), 422)


def test_refine_loop_combines_image_text_and_rejections(client, world):
    chosen = world["ids"][str(world["files"][0])]
    rejected = world["ids"][str(world["files"][1])]
    base = {"k": 30}
    step = {"terms": [{"kind": "image_id", "value": chosen}, {"kind": "text", "value": "in red"}], **base}
    refined = ok(client.post("/api/search", json=step))["results"]
    step["terms"].append({"kind": "image_id", "value": rejected, "weight": -0.5})
    without = ok(client.post("/api/search", json=step))["results"]
    assert chosen not in [r["id"] for r in refined]
    assert rejected in [r["id"] for r in refined] and rejected not in [r["id"] for r in without]
    assert [r["score"] for r in refined] != [r["score"] for r in without]
    # A text term in POST and the same text as a GET query give the same ranking.
    post = ok(client.post("/api/search", json={"terms": [{"kind": "text", "value": "boat"}], "k": 10}))
    get = ok(client.get("/api/search", params={"q": "boat", "k": 10}))
    assert post["results"] == get["results"]
    # q and terms together: a query string plus terms.
    mixed = ok(
        client.post("/api/search", json={"q": "boat", "terms": [{"kind": "image_id", "value": chosen}]})
    )
    assert mixed["results"]


def test_combined_terms_with_base64_image_and_vector(client, world):
    target = world["files"][3]
    encoded = base64.b64encode(target.read_bytes()).decode()
    body = ok(client.post("/api/search", json={"terms": [{"kind": "bytes", "value": encoded}], "k": 2}))
    assert body["results"][0]["path"] == str(target)
    db = CatalogDB(world["catalog"])
    try:
        record = db.images_by_id([world["ids"][str(target)]])[world["ids"][str(target)]]
        vector = db.vector_for_hash(record.content_hash, "fake").astype(float).tolist()
    finally:
        db.close()
    body = ok(client.post("/api/search", json={"terms": [{"kind": "vector", "value": vector}], "k": 1}))
    assert body["results"][0]["path"] == str(target)
    error(client.post("/api/search", json={"terms": [{"kind": "vector", "value": [1.0, 2.0]}]}), 400)


@pytest.mark.parametrize(
    "query",
    ["cat + + dog", 'cat + "unclosed quote', "cat -", "0.5.3:cat", "+", "dog cat - "],
)
def test_malformed_query_syntax_is_400(client, query):
    assert error(client.get("/api/search", params={"q": query}), 400)


def test_bad_search_requests(client):
    error(client.get("/api/search"), 400)  # nothing to search for
    error(client.get("/api/search", params={"q": "/etc/passwd"}), 400)  # no server file paths
    error(client.get("/api/search", params={"q": "cat", "k": 0}), 422)
    error(client.get("/api/search", params={"q": "cat", "k": "many"}), 422)
    error(client.get("/api/search", params={"q": "cat", "offset": -1}), 422)
    error(client.get("/api/search", params={"q": "cat", "threshold": 2}), 422)
    error(client.post("/api/search", json={"terms": [{"kind": "path", "value": "/etc/passwd"}]}), 422)
    error(client.post("/api/search", json={"terms": [{"kind": "text", "value": "   "}]}), 400)
    error(client.post("/api/search", json={"terms": [{"kind": "image_id", "value": "x"}]}), 400)
    error(client.post("/api/search", json={"terms": [{"kind": "bytes", "value": "@@@"}]}), 415)
    error(client.post("/api/search", content=b"{not json", headers={"content-type": "application/json"}), 422)
    error(client.post("/api/search", json={"terms": []}), 400)
    # Weights that cancel out leave nothing to search for.
    error(client.get("/api/search", params={"q": "cat - cat"}), 400)


def test_a_query_does_not_probe_the_servers_files(client, world, monkeypatch):
    """A term spelled like a path gets one answer whatever is there (an image, a folder, nothing,
    a home-relative name), and a word that names a file in the server's working directory is text."""
    outside = world["outside"]
    queries = [str(outside / "secret.png"), str(outside / "none.png"), str(outside), "~/.bashrc", "/dev/null"]
    for query in queries:
        message = error(client.get("/api/search", params={"q": f"cat + {query}"}), 400)
        assert message == (
            f"term 2: image paths are not accepted over HTTP ({query}): "
            "upload the image or use its catalog id"
        )
    monkeypatch.chdir(outside)
    for query in ("secret.png", "secret.txt - secret.png"):
        assert ok(client.get("/api/search", params={"q": query}))["results"]
        assert ok(client.post("/api/search", json={"q": query}))["results"]


def test_a_query_string_combines_at_most_64_terms(client):
    words = [f"w{i}" for i in range(3000)]
    assert ok(client.get("/api/search", params={"q": " + ".join(words[:64])}))["results"]
    message = error(client.get("/api/search", params={"q": " + ".join(words)}), 400)
    assert message == "the query has more than 64 terms: combine at most 64"
    error(client.post("/api/search", json={"q": " + ".join(words[:65])}), 400)


def test_the_towers_run_outside_the_catalog_lock(world, monkeypatch):
    """While one request encodes (many terms, a large upload), the others must get the catalog:
    each tower call checks, from another thread, that the catalog lock is free."""
    from fakes import FakeEncoder

    from pixgrep.search import words

    monkeypatch.setattr(words, "CLIP_DEPTH", 1)  # word hits beyond CLIP's few: their cosines are asked

    held: list[bool] = []

    def lock_is_taken() -> bool:
        taken: list[bool] = []

        def try_it():
            got = state.lock.acquire(blocking=False)
            if got:
                state.lock.release()
            taken.append(not got)

        probe = threading.Thread(target=try_it)
        probe.start()
        probe.join()
        return taken[0]

    class Watched(FakeEncoder):
        def encode_texts(self, texts):
            held.append(lock_is_taken())
            return super().encode_texts(texts)

        def encode_pixels(self, pixels):
            held.append(lock_is_taken())
            return super().encode_pixels(pixels)

    app = create_app(world["catalog"], encoder=Watched())
    state = app.state.pixgrep
    picture = world["files"][0].read_bytes()
    with TestClient(app, base_url="http://localhost") as client:
        ok(client.get("/api/search", params={"q": "red + 0.5:a cat - dog", "all_parts": True}))
        ok(client.post("/api/search/image", files={"file": ("a.png", picture)}, data={"q": "in blue"}))
        ok(client.post("/knn-service", json={"text": "red", "num_images": 3}))
        before = len(held)
        assert ok(client.get("/api/search", params={"q": "red", "k": 1}))["results"][0]["words"]
        assert len(held) == before + 2  # the CLIP search, then the cosines of the other word hits
    assert not any(held), held


def test_unknown_model_is_refused(client):
    assert "unknown model" in error(client.get("/api/search", params={"q": "cat", "model": "ViT-H-99"}), 400)
    error(client.post("/api/search", json={"q": "cat", "model": "nope"}), 400)
    assert ok(client.get("/api/search", params={"q": "cat", "model": "fake"}))["results"]
    error(client.get("/api/models/ViT-H-99"), 404)
    assert "not loaded here" in error(
        client.get("/api/search", params={"q": "cat", "model": "ViT-B-32__openai"}), 400
    )
    assert ok(client.get("/api/models/fake"))["dim"] == 192


def test_range_requests_of_a_file_and_bad_range_headers(client, world):
    """Bad Range headers used to get Starlette's plain-text answers, not the JSON error shape."""
    path = next(p for p in world["files"] if p.suffix == ".jpg")
    url, data = f"/api/images/{world['ids'][str(path)]}/file", path.read_bytes()
    part = client.get(url, headers={"Range": "bytes=2-9"})
    assert part.status_code == 206 and part.content == data[2:10]
    for bad in ("bytes=abc", "bytes=9-2", "items=0-1", "bytes"):
        assert "Range" in error(client.get(url, headers={"Range": bad}), 400), bad
    past = client.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert "Range" in error(past, 416) and past.headers["content-range"] == f"bytes */{len(data)}"


def test_unknown_routes_and_methods_are_json_errors(client):
    error(client.get("/api/nothing-here"), 404)
    error(client.delete("/api/search"), 405)


# --- images by id ----------------------------------------------------------------------------------


def test_thumbnails_are_small_jpegs_and_cached(client, world):
    image_id = world["ids"][str(world["files"][2])]
    first = client.get(f"/api/images/{image_id}/thumb")
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    thumb = Image.open(io.BytesIO(first.content))
    assert thumb.format == "JPEG" and max(thumb.size) <= 256
    small = Image.open(io.BytesIO(client.get(f"/api/images/{image_id}/thumb", params={"size": 128}).content))
    assert max(small.size) == 128
    state = client.app.state.pixgrep
    assert any(key[1] == 256 for key in state.thumbs._items)
    assert client.get(f"/api/images/{image_id}/thumb").content == first.content
    again = client.get(f"/api/images/{image_id}/thumb", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and not again.content
    error(client.get(f"/api/images/{image_id}/thumb", params={"size": 77}), 422)
    error(client.get("/api/images/99999/thumb"), 404)


def test_full_image_is_the_file_itself(client, world):
    for file in world["files"][:2]:  # one JPEG, one PNG
        response = client.get(f"/api/images/{world['ids'][str(file)]}/file")
        assert response.status_code == 200
        assert response.content == file.read_bytes()
        assert response.headers["content-type"] == f"image/{Image.open(file).format.lower()}"
    info = ok(client.get(f"/api/images/{world['ids'][str(world['files'][0])]}"))
    assert info["path"] == str(world["files"][0]) and info["width"] == 160
    error(client.get("/api/images/424242"), 404)


def test_non_browser_formats_are_sent_as_jpeg(tmp_path):
    from fakes import FakeEncoder

    tiff = tmp_path / "scan.tiff"
    draw_image((10, 120, 200), 3).save(tiff)
    ids = add_to_catalog(tmp_path / "c.db", [tiff], FakeEncoder())
    with TestClient(create_app(tmp_path / "c.db", encoder=FakeEncoder()), base_url="http://localhost") as c:
        response = c.get(f"/api/images/{ids[str(tiff)]}/file")
        assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(response.content)).size == (160, 120)


@pytest.fixture(scope="module")
def planted(world, tmp_path_factory):
    """A catalog with hostile rows: links out of the roots, a `..` path, a non-image, a gone file."""
    from fakes import FakeEncoder

    base = tmp_path_factory.mktemp("planted")
    root = base / "root"
    root.mkdir()
    good = root / "good.png"
    draw_image((200, 100, 50), 5).save(good)
    link = root / "link.png"
    link.symlink_to(world["outside"] / "secret.png")
    text_link = root / "notes.png"
    text_link.symlink_to(world["outside"] / "secret.txt")
    (root / "sub").symlink_to(world["outside"], target_is_directory=True)
    dotted = root / ".." / ".." / world["outside"].parent.name / "outside" / "secret.png"
    gone = root / "gone.png"
    draw_image((5, 5, 5), 6).save(gone)
    rows = [good, link, text_link, root / "sub" / "secret.png", dotted, gone]
    ids = add_to_catalog(base / "c.db", rows, FakeEncoder())
    # A row whose stored path is a text file that was an image when indexed (swapped afterwards).
    swapped = root / "swapped.png"
    draw_image((1, 1, 1), 7).save(swapped)
    ids.update(add_to_catalog(base / "c.db", [swapped], FakeEncoder()))
    swapped.write_text("TOP SECRET CONTENTS\n")
    gone.unlink()
    app = create_app(base / "c.db", encoder=FakeEncoder())
    with TestClient(app, base_url="http://localhost") as c:
        yield {"client": c, "ids": ids, "root": root, "good": good, "rows": rows, "swapped": swapped}


def test_only_catalog_files_are_served(planted, world):
    c, ids = planted["client"], planted["ids"]
    secret_png = (world["outside"] / "secret.png").read_bytes()
    good_id = ids[str(planted["good"])]
    assert c.get(f"/api/images/{good_id}/file").content == planted["good"].read_bytes()
    for path in planted["rows"][1:] + [planted["swapped"]]:
        image_id = ids[str(path)]
        for kind in ("file", "thumb"):
            response = c.get(f"/api/images/{image_id}/{kind}")
            assert 400 <= response.status_code < 500, (path, kind, response.status_code)
            assert response.content != secret_png and b"TOP SECRET" not in response.content
            assert set(response.json()) == {"error"}


@pytest.mark.parametrize(
    "url",
    [
        "/api/images/../../../etc/passwd",
        "/api/images/..%2F..%2F..%2Fetc%2Fpasswd/file",
        "/api/images/%2e%2e%2f%2e%2e%2fetc%2fpasswd/thumb",
        "/api/images/%2Fetc%2Fpasswd/file",
        "/api/images//etc/passwd/file",
        "/api/images/1%2F..%2F..%2Fetc%2Fpasswd/file",
        "/api/images/1/../../../etc/passwd",
        "/api/images/1/file/../../../../etc/passwd",
        "/api/images/%252e%252e%252fetc%252fpasswd/file",
        "/static/../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/static/%2fetc%2fpasswd",
        "/static//etc/passwd",
        "/static/..%5c..%5c..%5cetc%5cpasswd",
        "/api/images/1/file?path=/etc/passwd",
        "/api/images/1/thumb?path=..%2F..%2Fetc%2Fpasswd",
        "/api/images/-1/file",
        "/api/images/1e3/file",
    ],
)
def test_path_traversal_attempts_get_nothing_outside(planted, url):
    c = planted["client"]
    response = c.get(url)
    if response.status_code == 200:  # only image 1's own picture may come back for a stray query param
        assert url.startswith("/api/images/1/")
        own = c.get(url.split("?")[0]).content
        assert response.content == own
        assert own == planted["good"].read_bytes() or Image.open(io.BytesIO(own)).format == "JPEG"
    else:
        assert 400 <= response.status_code < 500, (url, response.status_code)
    assert b"root:" not in response.content


def test_raw_paths_are_not_normalised_into_files(planted):
    """Send the `..` segments as they are (no client-side normalisation) over a raw HTTP request."""
    import socket

    from serverkit import LiveServer

    with LiveServer(planted["client"].app) as live:
        for target in ("/static/../../../../etc/passwd", "/api/images/../../etc/passwd", "/static/%2e%2e/x"):
            with socket.create_connection(("127.0.0.1", live.port), timeout=10) as s:
                s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                reply = b""
                while chunk := s.recv(65536):
                    reply += chunk
            status = int(reply.split(b" ", 2)[1])
            assert 400 <= status < 500 and b"root:" not in reply, (target, reply[:200])


# --- stats, models, folders -----------------------------------------------------------------------


def test_stats_models_and_folders(client, world):
    stats = ok(client.get("/api/stats"))
    assert stats["images"] == len(world["files"]) and stats["searchable"] == len(world["files"])
    assert stats["model"] == "fake"
    models = ok(client.get("/api/models"))
    assert models["served"] == {
        "name": "fake",
        "model_id": "fake",
        "dim": 192,
        "languages": "en",
        "multilingual": False,
        "query_language": None,
    }
    assert any(m.get("default") for m in models["known"])
    folders = ok(client.get("/api/folders"))["folders"]
    assert {f["folder"] for f in folders} == {str(p.parent) for p in world["files"]}
    assert all(f["images"] == 2 for f in folders)


# --- the token -----------------------------------------------------------------------------------


def test_token_is_required_on_every_request(world):
    from fakes import FakeEncoder

    app = create_app(world["catalog"], encoder=FakeEncoder(), token="s3cret")
    with TestClient(app, base_url="http://localhost") as c:
        for url in ("/", "/static/app.js", "/api/stats", "/api/images/1/thumb", "/docs", "/openapi.json"):
            assert "token" in error(c.get(url), 401)
        error(c.post("/knn-service", json={"text": "x"}), 401)
        assert error(c.get("/api/stats", headers={"Authorization": "Bearer wrong"}), 401) == "wrong token"
        error(c.get("/api/stats", params={"token": "s3cre"}), 401)
        error(c.get("/api/stats", headers={"Authorization": "Basic czNjcmV0"}), 401)
        assert ok(c.get("/api/stats", headers={"Authorization": "Bearer s3cret"}))["images"] > 0
        thumb = c.get("/api/images/1/thumb", params={"token": "s3cret"})
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        # ?token= on the page sets a cookie, so the page's scripts and images load without it.
        c.cookies.clear()
        error(c.get("/static/app.js"), 401)
        page = c.get("/", params={"token": "s3cret"})
        assert page.status_code == 200 and "HttpOnly" in page.headers["set-cookie"]
        assert c.get("/static/app.js").status_code == 200
        c.cookies.clear()
        error(c.get("/static/app.js"), 401)
        c.cookies.set("pixgrep_token", "wrong")
        error(c.get("/static/app.js"), 401)


# --- index runs ----------------------------------------------------------------------------------


def test_index_run_in_the_background_with_progress(tmp_path):
    from fakes import FakeEncoder

    gate = threading.Event()

    class SlowEncoder(FakeEncoder):
        def encode_pixels(self, pixels):
            gate.wait(20)  # hold the run until the test has seen it running
            return super().encode_pixels(pixels)

    folder = tmp_path / "new"
    make_images(folder, per_colour=1)
    with TestClient(create_app(tmp_path / "c.db", encoder=SlowEncoder()), base_url="http://localhost") as c:
        assert ok(c.get("/api/index"))["state"] == "idle"
        started = ok(c.post("/api/index", json={"folder": str(folder)}), 202)
        assert started["state"] == "running" and started["folder"] == str(folder)
        assert ok(c.get("/api/index"))["state"] == "running"
        assert "still going" in error(c.post("/api/index", json={"folder": str(folder)}), 409)
        gate.set()
        final = c.app.state.pixgrep.runner.wait(60)
        assert final["state"] == "done", final
        assert final["summary"]["found"] == 10 and final["summary"]["encoded"] == 10
        polled = ok(c.get("/api/index"))
        assert polled["state"] == "done" and polled["finished_at"] >= polled["started_at"]
        assert ok(c.get("/api/stats"))["searchable"] == 10
        assert len(ok(c.get("/api/search", params={"q": "x", "k": 50}))["results"]) == 10


def test_index_bad_folders(client, world):
    error(client.post("/api/index", json={"folder": "relative/folder"}), 400)
    error(client.post("/api/index", json={"folder": str(world["base"] / "missing")}), 400)
    error(client.post("/api/index", json={"folder": str(world["files"][0])}), 400)
    error(client.post("/api/index", json={}), 422)


def test_index_run_failure_is_reported(tmp_path, monkeypatch):
    from fakes import FakeEncoder

    import pixgrep.api

    def broken(self, *a, **k):
        raise pixgrep.PixgrepError("disk on fire")

    monkeypatch.setattr(pixgrep.api.Catalog, "index", broken)
    with TestClient(create_app(tmp_path / "c.db", encoder=FakeEncoder()), base_url="http://localhost") as c:
        ok(c.post("/api/index", json={"folder": str(tmp_path)}), 202)
        final = c.app.state.pixgrep.runner.wait(20)
        assert final["state"] == "failed" and final["error"] == "disk on fire"


# --- concurrency ---------------------------------------------------------------------------------


def test_concurrent_requests_give_the_same_answers(client, world):
    from concurrent.futures import ThreadPoolExecutor

    queries = ["boat", "a red car", "night - day", "cat + 0.5:hat"]
    expected = {q: ok(client.get("/api/search", params={"q": q, "k": 8}))["results"] for q in queries}
    image_id = world["ids"][str(world["files"][4])]

    def one(i):
        q = queries[i % len(queries)]
        got = client.get("/api/search", params={"q": q, "k": 8}).json()["results"]
        thumb = client.get(f"/api/images/{image_id}/thumb", params={"size": 128})
        return got == expected[q] and thumb.status_code == 200

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(one, range(64)))


# --- clip-retrieval compatible endpoints -----------------------------------------------------------


def knn(client, **fields):
    request = {"modality": "image", "num_images": 5, "indice_name": "pixgrep", "deduplicate": True, **fields}
    return client.post("/knn-service", json=request)


def test_knn_service_text_answers_in_clip_retrieval_shape(client, world):
    rows = ok(knn(client, text="a red car", num_images=3, num_result_ids=6))
    assert len(rows) == 6
    for row in rows[:3]:
        assert set(row) == {"url", "image_path", "caption", "id", "similarity"}
        assert row["url"] == f"http://localhost/api/images/{row['id']}/file"
        assert row["caption"] == os.path.basename(row["image_path"])
        assert isinstance(row["similarity"], float)
    for row in rows[3:]:
        assert set(row) == {"id", "similarity"}
    assert [r["similarity"] for r in rows] == sorted((r["similarity"] for r in rows), reverse=True)
    api = ok(client.get("/api/search", params={"q": "a red car", "k": 6}))["results"]
    assert [r["id"] for r in rows] == [r["id"] for r in api]


def test_knn_service_image_url_and_embedding(lan_client, world, image_host):
    client = lan_client
    target = world["files"][9]
    rows = ok(knn(client, image=base64.b64encode(target.read_bytes()).decode(), num_images=2))
    assert rows[0]["image_path"] == str(target) and rows[0]["similarity"] > 0.99
    url = f"{image_host}/{target.relative_to(world['base']).as_posix()}"
    assert ok(knn(client, image_url=url, num_images=2))[0]["image_path"] == str(target)
    vector = np.random.default_rng(0).standard_normal(192)
    rows = ok(knn(client, embedding_input=vector.tolist(), num_images=4))
    assert len(rows) == 4
    # text wins over the other inputs, as in clip-retrieval
    assert ok(knn(client, text="boat", embedding_input=vector.tolist())) == ok(knn(client, text="boat"))


def test_knn_service_deduplicate(tmp_path, world):
    from fakes import FakeEncoder

    copy = tmp_path / "copy-of.png"
    copy.write_bytes(world["files"][1].read_bytes())
    near = tmp_path / "near.png"  # the same picture, one pixel changed: a near duplicate
    picture = Image.open(world["files"][1]).convert("RGB")
    picture.putpixel((0, 0), (0, 0, 0))
    picture.save(near)
    add_to_catalog(tmp_path / "c.db", [world["files"][1], copy, near, world["files"][4]], FakeEncoder())
    with TestClient(create_app(tmp_path / "c.db", encoder=FakeEncoder()), base_url="http://localhost") as c:
        query = base64.b64encode(world["files"][1].read_bytes()).decode()
        assert len(ok(knn(c, image=query, deduplicate=False))) == 4
        kept = ok(knn(c, image=query, deduplicate=True))
        assert len(kept) == 2 and kept[0]["similarity"] > 0.99


def test_knn_service_ignores_clip_retrieval_only_options(client):
    # use_mclip is not ignored: tests/test_server_languages.py
    rows = ok(
        knn(
            client,
            text="boat",
            use_mclip=False,
            use_safety_model=True,
            use_violence_detector=True,
            aesthetic_score=9,
            aesthetic_weight=0.5,
            modality="text",
            image=None,
            image_url=None,
            embedding_input=None,
        )
    )
    assert len(rows) == 5


def test_knn_service_bad_inputs(client):
    assert "unknown index" in error(knn(client, text="x", indice_name="laion5B"), 400)
    error(knn(client), 400)  # no input at all
    error(knn(client, embedding_input=[0.1, 0.2]), 400)
    error(knn(client, embedding_input=[0.0] * 192), 400)
    error(knn(client, image=base64.b64encode(b"not an image at all").decode()), 415)
    error(knn(client, text="x", modality="audio"), 422)
    error(knn(client, text="x", num_images=0), 422)


def test_knn_text_is_literal_not_query_language(client):
    rows = ok(knn(client, text="cat + + dog"))  # clip-retrieval sends free text: no operators
    assert len(rows) == 5


def test_indices_list_and_metadata(client, world):
    assert ok(client.get("/indices-list")) == ["pixgrep"]
    ids = sorted(world["ids"].values())[:3]
    rows = ok(client.post("/metadata", json={"ids": ids + [99999], "indice_name": "pixgrep"}))
    assert [r["id"] for r in rows] == ids
    assert rows[0]["metadata"]["image_path"] in world["ids"]
    error(client.post("/metadata", json={"ids": ids, "indice_name": "other"}), 400)


def test_real_clip_client_against_a_live_server(world):
    """clip-retrieval's own ClipClient (pip install clip-retrieval --no-deps, plus requests)."""
    import importlib.util

    spec = importlib.util.find_spec("clip_retrieval")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("clip-retrieval is not installed (pip install clip-retrieval --no-deps requests)")
    pytest.importorskip("requests", reason="ClipClient needs requests")
    # Load clip_client.py alone: the package's __init__ imports its whole back end (flask, faiss, torch).
    path = Path(next(iter(spec.submodule_search_locations))) / "clip_client.py"
    module_spec = importlib.util.spec_from_file_location("clip_client_only", path)
    clip_client = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(clip_client)

    from fakes import FakeEncoder
    from serverkit import LiveServer

    with LiveServer(create_app(world["catalog"], encoder=FakeEncoder())) as live:
        client = clip_client.ClipClient(url=f"{live.url}/knn-service", indice_name="pixgrep", num_images=4)
        rows = client.query(text="a red car")
        assert len(rows) == 4 and {"url", "id", "similarity", "image_path"} <= set(rows[0])
        target = world["files"][6]
        rows = client.query(image=str(target))
        assert rows[0]["image_path"] == str(target) and rows[0]["similarity"] > 0.99
        rows = client.query(embedding_input=np.ones(192).tolist())
        assert len(rows) == 4
        image = Image.open(io.BytesIO(__import__("requests").get(rows[0]["url"], timeout=10).content))
        assert image.size == (160, 120)
        text_client = clip_client.ClipClient(
            url=f"{live.url}/knn-service",
            indice_name="pixgrep",
            modality=clip_client.Modality.TEXT,
            num_images=2,
            deduplicate=False,
        )
        assert len(text_client.query(text="boat")) == 2


def test_warm_up_builds_the_search_matrix(tmp_path, world):
    from fakes import FakeEncoder

    from pixgrep.search.matrix_store import sidecar_path
    from pixgrep.server.state import warm_up

    catalog = tmp_path / "c.db"
    add_to_catalog(catalog, world["files"][:3], FakeEncoder())
    app = create_app(catalog, encoder=FakeEncoder())
    assert not sidecar_path(catalog, "fake").exists()
    warm_up(app.state.pixgrep).join(30)
    assert sidecar_path(catalog, "fake").exists()
    assert app.state.pixgrep.catalog.encoder.texts_encoded == 1


@pytest.mark.parametrize("folder", ["odd-images", "exif-samples"])
def test_every_real_image_gets_a_preview_or_a_clear_4xx(tmp_path, folder):
    """Real files that break naive loaders (truncated, CMYK, 16-bit, animated, bombs, HEIC,
    orientations): indexed by the real indexer, every thumbnail and file request answers with an
    image or a JSON 4xx, never a 500."""
    from conftest import shared_data
    from fakes import FakeEncoder

    import pixgrep

    root = shared_data(folder)
    with pixgrep.open_catalog(tmp_path / "c.db", encoder=FakeEncoder()) as catalog:
        catalog.index([root])
    from pixgrep.catalog.db import CatalogDB

    rows = list(CatalogDB(tmp_path / "c.db").images_by_path().values())
    assert rows
    app = create_app(tmp_path / "c.db", encoder=FakeEncoder())
    served = 0
    with TestClient(app, raise_server_exceptions=False, base_url="http://localhost") as c:
        for record in rows:
            for kind in ("thumb", "file"):
                response = c.get(f"/api/images/{record.id}/{kind}")
                if record.error:
                    assert response.status_code == 404, (record.path, kind)
                    continue
                assert response.status_code == 200, (record.path, kind, response.text)
                served += 1
                if kind == "file" and response.content == Path(record.path).read_bytes():
                    continue  # a browser format sent as it is (a browser shows even a PNG missing its end)
                image = Image.open(io.BytesIO(response.content))
                image.load()
                assert image.format == "JPEG"
                if kind == "thumb":
                    assert image.format == "JPEG" and max(image.size) <= 256
                    if record.width and record.height:  # EXIF-rotated like the catalog's size
                        assert (image.width >= image.height) == (record.width >= record.height), record.path
    assert served == 2 * len([r for r in rows if not r.error]) > 0


def test_searches_keep_answering_during_an_index_run(tmp_path, world):
    """The run writes through its own connection while searches read through the shared one."""
    from concurrent.futures import ThreadPoolExecutor

    from fakes import FakeEncoder

    class SlowImages(FakeEncoder):
        def encode_pixels(self, pixels):
            time.sleep(0.3)  # the run lasts long enough for searches to overlap it
            return super().encode_pixels(pixels)

    catalog = tmp_path / "c.db"
    add_to_catalog(catalog, world["files"], FakeEncoder())
    folder = tmp_path / "more"
    make_images(folder, per_colour=6)
    with TestClient(create_app(catalog, encoder=SlowImages()), base_url="http://localhost") as c:
        ok(c.post("/api/index", json={"folder": str(folder)}), 202)
        runner = c.app.state.pixgrep.runner

        def search_while_running(i: int) -> list[int]:
            statuses = []
            while runner.status()["state"] == "running" or not statuses:
                response = c.get("/api/search", params={"q": f"query {i}", "k": 5})
                statuses.append(response.status_code)
                assert len(response.json()["results"]) == 5
            return statuses

        with ThreadPoolExecutor(4) as pool:
            chunks = list(pool.map(search_while_running, range(4)))
        assert all(len(chunk) > 1 for chunk in chunks)  # every thread searched during the run
        assert {s for chunk in chunks for s in chunk} == {200}
        assert runner.wait(60)["state"] == "done"
        assert ok(c.get("/api/stats"))["searchable"] == len(world["files"]) + 60


def test_knn_embedding_past_float32_is_a_400_without_a_runtime_warning(client):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the overflow warning used to reach the log
        assert "non-zero vector" in error(knn(client, embedding_input=[1e300] * 192), 400)


def test_a_link_out_of_the_indexed_folders_is_not_indexed(tmp_path):
    """A link inside an indexed folder that points to a photo elsewhere: nothing of that photo (its
    vector, its EXIF and GPS, its name) enters the catalog, so no route can serve it; a link to a
    file inside the folders is indexed as usual."""
    from fakes import FakeEncoder

    import pixgrep

    outside, root = tmp_path / "private", tmp_path / "shared"
    outside.mkdir()
    root.mkdir()
    draw_image((200, 10, 10), 1).save(outside / "home.png")
    (root / "leak.png").symlink_to(outside / "home.png")
    draw_image((10, 200, 10), 2).save(root / "own.png")
    (root / "alias.png").symlink_to(root / "own.png")
    names = [str(root / n) for n in ("leak.png", "own.png", "alias.png")] + [str(outside / "home.png")]
    with pixgrep.open_catalog(tmp_path / "c.db", encoder=FakeEncoder()) as catalog:
        catalog.index([root])
        indexed = sorted(os.path.basename(path) for path in catalog.images_at(names))
    assert indexed == ["alias.png", "own.png"]


def test_an_sqlite_failure_no_layer_caught_is_one_json_line_and_a_bug_a_plain_500(world, monkeypatch):
    import sqlite3

    from fakes import FakeEncoder

    from pixgrep.search import engine

    def malformed(*args, **kwargs):
        raise sqlite3.DatabaseError("database disk image is malformed")

    app = create_app(world["catalog"], encoder=FakeEncoder())
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as c:
        monkeypatch.setattr(engine, "_facts", malformed)
        line = error(c.get("/api/search", params={"q": "red"}), 503)
        assert line.startswith("catalog ") and "damaged" in line
        monkeypatch.setattr(engine, "_facts", lambda *a, **k: 1 / 0)
        assert error(c.get("/api/search", params={"q": "red"}), 500) == "internal error"


def test_a_damaged_catalog_read_by_a_storage_layer_is_a_503_not_the_requests_fault(world, monkeypatch):
    import sqlite3

    from fakes import FakeEncoder

    from pixgrep.catalog.db import sqlite_errors
    from pixgrep.search import engine

    def damaged_page(*args, **kwargs):  # as every CatalogDB read reports one
        with sqlite_errors(world["catalog"]):
            raise sqlite3.DatabaseError("database disk image is malformed")

    app = create_app(world["catalog"], encoder=FakeEncoder())
    with TestClient(app, base_url="http://localhost") as c:
        monkeypatch.setattr(engine, "_facts", damaged_page)
        line = error(c.get("/api/search", params={"q": "red"}), 503)
        assert line.startswith("catalog ") and "it is damaged" in line


def test_an_index_run_on_a_read_only_catalog_is_refused_at_once(tmp_path, world):
    from fakes import FakeEncoder
    from reliability_kit import read_only

    import pixgrep

    home, photos = tmp_path / "home", world["base"] / "photos"
    home.mkdir()
    with pixgrep.open_catalog(home / "c.db", encoder=FakeEncoder()) as catalog:
        catalog.index([photos])
    with read_only(home):
        app = create_app(home / "c.db", encoder=FakeEncoder())
        try:
            with TestClient(app, base_url="http://localhost") as c:
                assert "it is read-only" in error(c.post("/api/index", json={"folder": str(photos)}), 503)
                assert c.get("/api/index").json()["state"] == "idle"  # no run started
                assert c.get("/api/search", params={"q": "red"}).status_code == 200
        finally:
            app.state.pixgrep.catalog.close()  # the read-only mount can then go
