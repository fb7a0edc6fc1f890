"""Image URLs in queries: downloaded from a local server (127.0.0.1 only) with a cap and a deadline."""

from __future__ import annotations

import http.server
import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from pixgrep.catalog.db import CatalogDB
from pixgrep.errors import PixgrepError
from pixgrep.search.engine import plan_for
from pixgrep.search.fetch import fetch_image_bytes
from pixgrep.search.options import SearchOptions
from pixgrep.search.query import parse_query


def png_bytes(color=(255, 0, 0)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), color).save(buffer, "PNG")
    return buffer.getvalue()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path == "/cat.png":
            self._send(200, png_bytes(), "image/png")
        elif self.path == "/page":
            self._send(200, b"<html>hello</html>", "text/html; charset=utf-8")
        elif self.path == "/big-declared":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(50 * 1024 * 1024))
            self.end_headers()
        elif self.path == "/big-streamed":  # no Content-Length: the cap is enforced while reading
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            try:
                for _ in range(64):
                    self.wfile.write(b"\0" * 65536)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif self.path == "/slow":
            time.sleep(3)
            self._send(200, png_bytes(), "image/png")
        elif self.path == "/garbage":
            self._send(200, b"\x00\x01 definitely not an image", "application/octet-stream")
        else:
            self._send(404, b"no", "text/plain")

    def _send(self, status, body, kind):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_downloads_an_image(server):
    assert fetch_image_bytes(server + "/cat.png") == png_bytes()


@pytest.mark.parametrize(
    "path, kwargs, message",
    [
        ("/missing.jpg", {}, "HTTP 404"),
        ("/page", {}, "not an image (the server sent text/html)"),
        ("/big-declared", {}, "50 MB is over the 20 MB download cap"),
        ("/big-streamed", {"max_bytes": 1024 * 1024}, "more than the 1.0 MB download cap"),
        ("/slow", {"timeout": 0.5}, "timed out after 0.5 s"),
    ],
)
def test_download_errors_are_one_line(server, path, kwargs, message):
    with pytest.raises(PixgrepError) as info:
        fetch_image_bytes(server + path, **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith(server + path)


def test_unreachable_host_is_one_line():
    # Port 9 on localhost: nothing listens there in a test environment, so the connection is refused.
    with pytest.raises(PixgrepError, match="cannot download"):
        fetch_image_bytes("http://127.0.0.1:9/x.jpg", timeout=2)


def test_url_term_is_encoded_by_the_image_tower(server, tmp_path, fake_encoder):
    db = CatalogDB(tmp_path / "c.db")
    vector = plan_for(db, fake_encoder, parse_query(server + "/cat.png"), SearchOptions())[0].vectors[0]
    expected = fake_encoder.encode_images([Image.open(io.BytesIO(png_bytes()))])[0]
    np.testing.assert_allclose(vector, expected, atol=1e-6)
    assert fake_encoder.texts_encoded == 0
    with pytest.raises(PixgrepError, match="garbage: not an image pixgrep can read"):
        plan_for(db, fake_encoder, parse_query(server + "/garbage"), SearchOptions())
    db.close()
