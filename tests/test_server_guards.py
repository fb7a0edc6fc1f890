"""What keeps other web sites and cheap expensive requests out: the host names the server answers,
the Origin and Content-Type of posts, the page's security headers, the query-image pixel cap and
the 413 for an over-limit body however it is sent."""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pixgrep.server.app import create_app


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    from fakes import FakeEncoder
    from serverkit import add_to_catalog, make_images

    base = tmp_path_factory.mktemp("guards")
    add_to_catalog(base / "c.db", make_images(base / "photos", per_colour=1), FakeEncoder())
    return base / "c.db"


def client_for(catalog, host: str = "localhost", **app_args) -> TestClient:
    from fakes import FakeEncoder

    return TestClient(create_app(catalog, encoder=FakeEncoder(), **app_args), base_url=f"http://{host}")


@pytest.fixture(scope="module")
def client(catalog):
    with client_for(catalog) as c:
        yield c


def png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, "PNG")
    return out.getvalue()


def every_route(app) -> list[tuple[str, str]]:
    """(method, path) of every route in the app's schema, with 1 for path parameters, plus the page,
    the schema, static files and a route that does not exist."""
    pairs = [("GET", "/"), ("GET", "/openapi.json"), ("GET", "/static/app.js"), ("GET", "/no-such-route")]
    for path, operations in app.openapi()["paths"].items():
        for method in operations:
            pairs.append((method.upper(), path.replace("{image_id}", "1").replace("{name}", "x")))
    return pairs


def test_another_host_name_gets_a_4xx_on_every_route(client):
    routes = every_route(client.app)
    assert len(routes) > 20
    for method, path in routes:
        response = client.request(method, path, headers={"Host": "attacker.example"}, json={})
        assert response.status_code == 400, (method, path, response.status_code)
        assert "attacker.example" in response.json()["error"]
    for name in ("localhost", "127.0.0.1:8000", "[::1]:8000", "LOCALHOST."):
        assert client.get("/api/stats", headers={"Host": name}).status_code == 200, name


def test_allowed_host_names_and_the_bind_address(catalog):
    with client_for(catalog, "photos.lan", allowed_hosts=["photos.lan"], bind_host="192.168.1.5") as c:
        assert c.get("/api/stats").status_code == 200
        assert c.get("/api/stats", headers={"Host": "192.168.1.5:8000"}).status_code == 200
        assert c.get("/api/stats", headers={"Host": "192.168.1.6:8000"}).status_code == 400
    with client_for(catalog, "10.0.0.7:8000", bind_host="0.0.0.0") as c:  # any address of the machine
        assert c.get("/api/stats").status_code == 200
        assert c.get("/api/stats", headers={"Host": "attacker.example"}).status_code == 400


def test_posts_need_json_and_a_same_origin(client):
    search = {"q": "red", "k": 2}
    assert client.post("/api/search", json=search, headers={"Origin": "http://localhost"}).status_code == 200
    refused = client.post("/api/search", json=search, headers={"Origin": "http://evil.example"})
    assert refused.status_code == 403 and "another site" in refused.json()["error"]
    assert (
        client.post("/api/search", json=search, headers={"Origin": "http://localhost:9999"}).status_code
        == 403
    )
    assert client.post("/api/search", json=search, headers={"Origin": "null"}).status_code == 403
    plain = {"content": b'{"text": "red"}', "headers": {"Content-Type": "text/plain"}}
    assert client.post("/knn-service", **plain).status_code == 415
    assert client.post("/api/search", **plain).status_code == 415
    form = client.post("/api/index", data={"folder": "/tmp"})
    assert form.status_code == 415 and "application/json" in form.json()["error"]
    # clip-retrieval's ClipClient posts JSON without a Content-Type: still answered
    assert client.post("/knn-service", content=b'{"text": "red", "num_images": 2}').status_code == 200
    # an <img> on another site cannot start a search (and so no URL fetch)
    cross = client.get("/api/search", params={"q": "red"}, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403


def test_a_cors_origin_may_post(catalog):
    with client_for(catalog, cors_origins=["https://front.example"]) as c:
        answer = c.post("/knn-service", json={"text": "red"}, headers={"Origin": "https://front.example"})
        assert answer.status_code == 200


def test_security_headers(client):
    page = client.get("/")
    policy = page.headers["content-security-policy"]
    for part in ("default-src 'self'", "img-src 'self' data: blob:", "frame-ancestors 'none'"):
        assert part in policy
    for response in (page, client.get("/api/stats"), client.get("/api/images/1/thumb")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"


def test_the_page_uses_no_inline_script_or_style(client):
    """The CSP allows no inline code: the page must not need any."""
    html = client.get("/").text
    assert "<script>" not in html and "<style" not in html and " style=" not in html and "onclick" not in html


def test_query_images_over_the_pixel_cap_are_refused_from_the_header(catalog):
    big = png((9000, 8000), "1")  # 72 Mpx declared in a small file
    assert len(big) < 2 * 1024 * 1024
    with client_for(catalog) as c:
        answer = c.post("/api/search/image", files={"file": ("big.png", big, "image/png")})
        assert answer.status_code == 413 and "9000x8000 pixels" in answer.json()["error"]
        import base64

        b64 = base64.b64encode(big).decode()
        assert c.post("/knn-service", json={"image": b64}).status_code == 413
        assert c.post("/api/search", json={"terms": [{"kind": "bytes", "value": b64}]}).status_code == 413
    with client_for(catalog, max_pixels=1_000_000) as c:
        answer = c.post("/api/search/image", files={"file": ("two.png", png((2000, 1000)), "image/png")})
        assert answer.status_code == 413 and "1,000,000 pixel cap" in answer.json()["error"]
        assert c.post(
            "/api/search/image", files={"file": ("ok.png", png((100, 100)), "image/png")}
        ).is_success


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height and holds almost nothing: a decompression bomb."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("size", [(100_000, 100_000), (20_000, 15_000)], ids=["10-gpx", "300-mpx"])
def test_images_over_pixgreps_own_pixel_cap_are_413_too(client, size):
    """Over 256 Mpx, Pillow's bomb check (or pixgrep's) refused the header first, and that was a
    415 where the docs promise a 413 for an image over the pixel cap."""
    import base64

    bomb = png_header(*size)
    b64 = base64.b64encode(bomb).decode()
    answers = [
        client.post("/api/search/image", files={"file": ("bomb.png", bomb, "image/png")}),
        client.post("/knn-service", json={"image": b64}),
        client.post("/api/search", json={"terms": [{"kind": "bytes", "value": b64}]}),
    ]
    for answer in answers:
        assert answer.status_code == 413 and "256,000,000 pixel cap" in answer.json()["error"], answer.text


def test_an_over_limit_body_is_a_413_however_it_is_sent(catalog):
    def chunks():
        yield b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
        for _ in range(160):  # 2.6 MB: over the body cap (the upload's 4/3 plus 1 MB of form)
            yield b"\0" * 16384

    with client_for(catalog, max_upload=50_000) as c:
        multipart = {"Content-Type": "multipart/form-data; boundary=x"}
        streamed = c.post("/api/search/image", content=chunks(), headers=multipart)  # chunked
        assert streamed.status_code == 413, streamed.text
        sized = c.post("/api/search/image", files={"file": ("a.jpg", b"\0" * 2_600_000)})
        assert sized.status_code == 413
        json_body = c.post(
            "/api/search",
            content=b'{"q": "' + b"a" * 2_600_000 + b'"}',
            headers={"Content-Type": "application/json"},
        )
        assert json_body.status_code == 413
