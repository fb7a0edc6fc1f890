"""Slow and odd image URLs: a peer on 127.0.0.1 that sends one byte per second is cut off at the
total deadline (CLI and server), downloads are capped in number, and every reason is one line."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest
from reliability_kit import DripServer, cli_env, make_images, one_line_error, pixgrep, start_server, stop

from pixgrep.errors import PixgrepError
from pixgrep.search import fetch

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture(params=[False, True], ids=["body-drip", "header-drip"])
def drip(request):
    server = DripServer(drip_headers=request.param)
    yield server
    server.close()


def outcome_within(
    seconds: float, work, stall: str = "still downloading after {} s: the deadline is per read, not total"
) -> BaseException | object:
    """Run `work` in a thread; fail the test with `stall` if it is still running after `seconds`."""
    box: list = []

    def run() -> None:
        try:
            box.append(work())
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), stall.format(seconds)
    return box[0]


def test_total_deadline_cuts_off_a_one_byte_per_second_peer(drip):
    result = outcome_within(30, lambda: fetch.fetch_image_bytes(drip.url, timeout=2))
    assert isinstance(result, PixgrepError) and str(result) == f"{drip.url}: timed out after 2 s"


@contextlib.contextmanager
def every_download_slot_taken():
    taken = [fetch._slots.acquire(timeout=1) for _ in range(fetch.MAX_DOWNLOADS)]
    try:
        assert all(taken)
        yield
    finally:
        for _ in taken:
            fetch._slots.release()


def test_downloads_are_capped_in_number():
    with every_download_slot_taken():
        with pytest.raises(fetch.DownloadsBusy, match="other image downloads are running"):
            fetch.fetch_image_bytes("http://127.0.0.1:9/x.jpg", timeout=0.2)


def test_a_url_search_with_every_slot_taken_is_refused_at_once_not_after_its_deadline(monkeypatch, tmp_path):
    """A URL search used to wait for a slot up to its download deadline (15 s), holding one of the
    server's worker threads: 45 searches naming a slow host took them all, and /api/stats waited."""
    from fakes import FakeEncoder
    from fastapi.testclient import TestClient

    from pixgrep.server.app import create_app

    monkeypatch.setenv("PIXGREP_URL_TIMEOUT", "600")  # waiting out this deadline would be the bug
    app = create_app(tmp_path / "c.db", encoder=FakeEncoder())
    with TestClient(app, base_url="http://localhost") as client, every_download_slot_taken():
        answer = outcome_within(
            30,
            lambda: client.get("/api/search", params={"image_url": "http://example.com/a.jpg"}),
            "still waiting for a download slot after {} s",
        )
    assert answer.status_code == 503 and "other image downloads are running" in answer.json()["error"]


class _OddStatus:
    """A peer whose status line has carriage returns and other line breaks in its reason phrase."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/x.jpg"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 502 Bad\rGateway\x0bfrom\x0cthe proxy\r\nContent-Length: 0\r\n\r\n")


def test_multi_line_reasons_become_one_line():
    peer = _OddStatus()
    with pytest.raises(PixgrepError) as info:
        fetch.fetch_image_bytes(peer.url, timeout=5)
    assert str(info.value) == f"{peer.url}: HTTP 502 Bad Gateway from the proxy"
    assert len(str(info.value).splitlines()) == 1
    peer.listener.close()


def _empty_catalog(tmp_path, model) -> None:
    """An indexed (empty) catalog: `-n` searches only an existing one."""
    (tmp_path / "empty").mkdir(exist_ok=True)
    made = pixgrep("index", tmp_path / "empty", "--catalog", tmp_path / "c.db", "--model", model)
    assert made.returncode == 0, made.stderr


def test_cli_slow_url_ends_at_the_deadline_in_one_line(tmp_path, tiny_model_dir):
    _empty_catalog(tmp_path, tiny_model_dir)
    server = DripServer()
    try:
        done = pixgrep(
            "-n",
            server.url,
            "--catalog",
            tmp_path / "c.db",
            "--model",
            tiny_model_dir,
            env=cli_env(PIXGREP_URL_TIMEOUT="2"),
            timeout=90,  # a per-read timeout would run for 100000 s here
        )
    finally:
        server.close()
    assert one_line_error(done) == f"pixgrep: error: {server.url}: timed out after 2 s"


def test_server_one_line_error_for_odd_status(tmp_path, tiny_model_dir):
    import httpx

    peer = _OddStatus()
    args = ("--catalog", tmp_path / "c.db", "--model", tiny_model_dir, "--allow-private-urls")
    process, url = start_server(*args)  # the peer is on 127.0.0.1
    try:
        response = httpx.get(url + "/api/search", params={"image_url": peer.url}, timeout=60)
        assert response.status_code == 400 and set(response.json()) == {"error"}
        assert len(response.json()["error"].splitlines()) == 1
    finally:
        stop(process)
        peer.listener.close()


def test_server_answers_stats_while_a_slow_url_search_runs(tmp_path, tiny_model_dir):
    """Needs both the total deadline (fetch.py) and the download outside the catalog lock
    (server/querying.run_search, from main's SearchOptions change)."""
    import httpx

    make_images(tmp_path / "photos", 4)
    server = DripServer()
    env = cli_env(PIXGREP_URL_TIMEOUT="10")
    args = ("--catalog", tmp_path / "c.db", "--model", tiny_model_dir, "--allow-private-urls")
    process, url = start_server(*args, env=env)
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            http.post("/api/index", json={"folder": str(tmp_path / "photos")})
            slow: list = []

            def slow_search() -> None:
                try:
                    slow.append(httpx.get(url + "/api/search", params={"image_url": server.url}, timeout=60))
                except httpx.HTTPError as exc:
                    slow.append(exc)

            search = threading.Thread(target=slow_search, daemon=True)
            search.start()
            time.sleep(1.5)  # the search is now inside its download
            assert search.is_alive()
            stats = httpx.get(url + "/api/stats", timeout=4)  # it would wait ~9 s behind the lock
            assert stats.status_code == 200
            search.join(30)
            # the same answer as any failed URL: a client learns nothing about what answered there
            assert slow and slow[0].status_code == 400 and "no image could be used" in slow[0].json()["error"]
    finally:
        server.close()
        stop(process)


@pytest.mark.parametrize("value", ["abc", "1e999", "0", "-1", "nan", "inf", "100000"])
def test_a_bad_url_timeout_setting_is_one_line_naming_it(value, monkeypatch):
    monkeypatch.setenv("PIXGREP_URL_TIMEOUT", value)
    with pytest.raises(PixgrepError) as info:
        fetch.fetch_image_bytes("http://127.0.0.1:9/x.jpg")
    assert str(info.value) == (
        f"PIXGREP_URL_TIMEOUT must be a number of seconds above 0 and at most 3600 (not {value!r})"
    )
    monkeypatch.setenv("PIXGREP_URL_TIMEOUT", " 2.5 ")
    assert fetch.url_timeout() == 2.5


def test_cli_and_serve_with_a_bad_url_timeout_say_so_in_one_line(tmp_path, tiny_model_dir):
    _empty_catalog(tmp_path, tiny_model_dir)
    catalog = ("--catalog", tmp_path / "c.db", "--model", tiny_model_dir)
    expected = (
        "pixgrep: error: PIXGREP_URL_TIMEOUT must be a number of seconds above 0 and at most 3600 (not 'abc')"
    )
    done = pixgrep("-n", "http://127.0.0.1:9/x.jpg", *catalog, env=cli_env(PIXGREP_URL_TIMEOUT="abc"))
    assert one_line_error(done) == expected
    done = pixgrep("serve", "--port", "9", *catalog, env=cli_env(PIXGREP_URL_TIMEOUT="abc"))
    assert one_line_error(done) == expected


@pytest.mark.parametrize(
    "name, value, accepts",
    [("PIXGREP_ANN", "yes", "must be 0 or 1"), ("PIXGREP_DEVICE", "gpu", "must be one of auto, cpu, cuda")],
)
def test_other_settings_are_checked_where_read(name, value, accepts, monkeypatch):
    from pixgrep.models import devices
    from pixgrep.models.devices import default_device
    from pixgrep.search.ann import available

    monkeypatch.setattr(devices, "_default", None)
    monkeypatch.setenv(name, value)
    with pytest.raises(PixgrepError, match=f"^{name} {accepts} \\(not '{value}'\\)$"):
        (available if name == "PIXGREP_ANN" else default_device)()
