"""Image URLs the server is asked to fetch: a service on this machine's loopback, named through every
route and in every spelling (and through a redirect from a public address), gets no request at all
unless the server was started with --allow-private-urls."""

from __future__ import annotations

import http.server
import io
import socket
import threading

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pixgrep.search import fetch
from pixgrep.server.app import create_app


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 30, 30)).save(out, "JPEG")
    return out.getvalue()


class _Service:
    """A local HTTP server that answers every GET with `answer(handler)` and counts the requests."""

    def __init__(self, answer):
        self.requests = 0
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 - http.server's name
                service.requests += 1
                answer(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _send_jpeg(handler) -> None:
    body = jpeg()
    handler.send_response(200)
    handler.send_header("Content-Type", "image/jpeg")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


PUBLIC = "public.test"  # a made-up public host: the redirecting service, let through in the test


@pytest.fixture(scope="module")
def services():
    target = _Service(_send_jpeg)

    def redirect(handler) -> None:
        handler.send_response(302)
        handler.send_header("Location", f"http://127.0.0.1:{target.port}/photo.jpg")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    redirector = _Service(redirect)
    yield target, redirector
    target.close()
    redirector.close()


@pytest.fixture
def public_redirector(services, monkeypatch):
    """PUBLIC resolves to the redirecting service as if it were a public address; every other host
    goes through the real check (so the redirect's loopback hop is checked for real)."""
    _, redirector = services
    real = fetch.checked_addresses

    def resolve(host: str, port: int):
        if host == PUBLIC:
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, ("127.0.0.1", redirector.port))]
        return real(host, port)

    monkeypatch.setattr(fetch, "checked_addresses", resolve)


def _ipv6_mapped_works() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::ffff:127.0.0.1", 0))
        return True
    except OSError:
        return False


def urls(target_port: int, redirector_port: int, redirector_host: str = PUBLIC) -> list[str]:
    forms = ["127.0.0.1", "localhost", "2130706433"]
    if _ipv6_mapped_works():
        forms.append("[::ffff:127.0.0.1]")
    return [f"http://{host}:{target_port}/photo.jpg" for host in forms] + [
        f"http://{redirector_host}:{redirector_port}/go.jpg"
    ]


def ask_every_route(client, url: str) -> list:
    return [
        client.get("/api/search", params={"q": url}),
        client.get("/api/search", params={"image_url": url}),
        client.post("/api/search", json={"terms": [{"kind": "url", "value": url}]}),
        client.post("/api/search", json={"q": f"{url} + red"}),
        client.post("/knn-service", json={"image_url": url, "num_images": 2}),
    ]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    from fakes import FakeEncoder
    from serverkit import add_to_catalog, make_images

    base = tmp_path_factory.mktemp("urls")
    add_to_catalog(base / "c.db", make_images(base / "photos", per_colour=1), FakeEncoder())
    return base / "c.db"


def _client(catalog, **app_args) -> TestClient:
    from fakes import FakeEncoder

    return TestClient(create_app(catalog, encoder=FakeEncoder(), **app_args), base_url="http://localhost")


def test_loopback_is_never_asked_through_any_route_or_spelling(catalog, services, public_redirector):
    target, redirector = services
    before_target, before_redirector = target.requests, redirector.requests
    answers = []
    with _client(catalog) as client:
        for url in urls(target.port, redirector.port):
            for response in ask_every_route(client, url):
                assert response.status_code == 400, (url, response.text)
                answers.append(response.json()["error"].replace(url, "URL"))
    assert target.requests == before_target  # not one request reached the loopback service
    assert redirector.requests > before_redirector  # the public hop was asked, its redirect refused
    assert len(set(answers)) == 1 and "no image could be used from this URL" in answers[0]


def test_with_allow_private_urls_the_same_fetches_work(catalog, services):
    target, redirector = services
    with _client(catalog, allow_private_urls=True) as client:
        for url in urls(target.port, redirector.port, redirector_host="127.0.0.1"):
            before = target.requests
            for response in ask_every_route(client, url):
                assert response.status_code == 200, (url, response.text)
            assert target.requests == before + 5, url


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "127.1", "2130706433", "0.0.0.0", "10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1",
     "169.254.169.254", "224.0.0.1", "240.0.0.1", "::1", "::", "fe80::1", "fc00::1", "ff02::1",
     "::ffff:127.0.0.1", "::ffff:10.0.0.1", "2002:7f00:1::"],
)  # fmt: skip
def test_private_and_special_addresses_are_not_fetched(address):
    import ipaddress

    resolved = socket.getaddrinfo(address, 80, type=socket.SOCK_STREAM)[0][4][0]
    assert not fetch.is_public(ipaddress.ip_address(resolved))


def test_public_addresses_are_fetched():
    import ipaddress

    for address in ("93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"):
        assert fetch.is_public(ipaddress.ip_address(address)), address


def test_the_cli_may_fetch_from_this_machine_the_refusing_fetch_may_not(services):
    target, _ = services
    url = f"http://localhost:{target.port}/photo.jpg"
    assert fetch.fetch_image_bytes(url, timeout=10) == jpeg()  # the CLI's default
    before = target.requests
    with pytest.raises(fetch.AddressRefused, match=r"localhost is not a public address \(127.0.0.1\)"):
        fetch.fetch_image_bytes(url, timeout=10, allow_private=False)
    assert target.requests == before
