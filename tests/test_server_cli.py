"""`pixgrep serve` as a user runs it: the real command in a subprocess, with the tiny test model."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_kit import free_port, start_server, stop
from serverkit import make_images

from pixgrep.cli.serve import is_loopback

PIXGREP = str(Path(sys.executable).with_name("pixgrep"))


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PIXGREP_TOKEN", "PIXGREP_MODEL")}
    return subprocess.run([PIXGREP, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_serve_help():
    result = run("serve", "--help")
    assert result.returncode == 0
    for option in ("--host", "--port", "--catalog", "--model", "--token", "--cors-origin"):
        assert option in result.stdout


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("127.1.2.3", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.com", False),
    ],
)
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_other_hosts_need_a_token(tmp_path):
    result = run("serve", "--host", "0.0.0.0", "--catalog", str(tmp_path / "c.db"))
    assert result.returncode == 2
    assert result.stderr.startswith("pixgrep: error: serving on 0.0.0.0") and "--token" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--max-pixels", "0"],
            "argument --max-pixels: must be a number of megapixels above 0 and at most 256",
        ),
        (["--max-pixels", "nan"], "argument --max-pixels: must be a number of megapixels"),
        (["--token", "a b"], "the token (--token or PIXGREP_TOKEN) must be printable ASCII"),
    ],
)
def test_bad_serve_options_fail_in_one_line(tmp_path, args, message):
    result = run("serve", "--catalog", str(tmp_path / "c.db"), "--port", str(free_port()), *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_serve_answers_its_allowed_host_names_only(tmp_path, tiny_model_dir):
    import httpx

    args = ("--catalog", tmp_path / "c.db", "--model", tiny_model_dir, "--allowed-host", "photos.lan")
    process, url = start_server(*args)
    try:
        assert httpx.get(url + "/api/stats").status_code == 200
        assert httpx.get(url + "/api/stats", headers={"Host": "photos.lan:8000"}).status_code == 200
        assert httpx.get(url + "/", headers={"Host": "attacker.example"}).status_code == 400
    finally:
        stop(process)


def test_unknown_model_and_bad_port_fail_in_one_line(tmp_path):
    result = run(
        "serve", "--catalog", str(tmp_path / "c.db"), "--model", "no-such-model", "--port", str(free_port())
    )
    assert result.returncode == 2 and "unknown model" in result.stderr and "Traceback" not in result.stderr
    result = run("serve", "--catalog", str(tmp_path / "c.db"), "--port", "70000")
    assert result.returncode == 2 and "--port" in result.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve", "--catalog", str(tmp_path / "c.db"), "--port", str(port))
    assert result.returncode == 2 and "cannot listen" in result.stderr and "Traceback" not in result.stderr


def test_serve_with_a_real_model_index_search_upload(tmp_path, tiny_model_dir):
    """The whole loop over HTTP with the tiny ONNX model: index a folder, search, refine, upload."""
    import httpx

    photos = tmp_path / "photos"
    files = make_images(photos, per_colour=1)
    process, url = start_server("--catalog", tmp_path / "c.db", "--model", tiny_model_dir)
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            assert http.get("/api/models").json()["served"]["dim"] == 32
            assert http.post("/api/index", json={"folder": str(photos)}).status_code == 202
            deadline = time.time() + 120
            while (status := http.get("/api/index").json())["state"] == "running" and time.time() < deadline:
                time.sleep(0.2)
            assert status["state"] == "done" and status["summary"]["encoded"] == len(files), status
            results = http.get("/api/search", params={"q": "a red square", "k": 5}).json()["results"]
            assert len(results) == 5
            thumb = http.get(results[0]["thumb"])
            assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
            refine = {
                "terms": [
                    {"kind": "image_id", "value": results[0]["id"]},
                    {"kind": "text", "value": "at night"},
                ]
            }
            refined = http.post("/api/search", json=refine).json()["results"]
            assert refined and results[0]["id"] not in [r["id"] for r in refined]
            target = files[3]
            hits = http.post("/api/search/image", files={"file": (target.name, target.read_bytes())}).json()
            assert hits["results"][0]["path"] == str(target) and hits["results"][0]["score"] > 0.99
            assert http.get("/api/search", params={"q": "cat + + dog"}).status_code == 400
    finally:
        stop(process)


def test_serve_with_a_token(tmp_path, tiny_model_dir):
    import httpx

    process, url = start_server(
        "--catalog", tmp_path / "c.db", "--model", tiny_model_dir, "--token", "t0ken", keep_stdout=True
    )
    try:
        assert httpx.get(url + "/api/stats").status_code == 401
        response = httpx.get(url + "/api/stats", headers={"Authorization": "Bearer t0ken"})
        assert response.status_code == 200 and response.json()["images"] == 0
    finally:
        out, _ = stop(process)
    assert "token" in out


# The server, with the second batch of an index run held until the server asks the run to stop
# (IndexRunner.stop), so that SIGTERM always lands in the middle of the run.
HELD_RUN = """
import sys, threading
from pixgrep.catalog import ingest
from pixgrep.cli import main
from pixgrep.server.indexing import IndexRunner
gate, commits, real_commit = threading.Event(), [], ingest.BatchWriter.commit
def commit(self, *args):
    commits.append(1)
    if len(commits) == 2:
        gate.wait(60)
    real_commit(self, *args)
ingest.BatchWriter.commit = commit
real_stop = getattr(IndexRunner, "stop", None)
if real_stop is not None:
    IndexRunner.stop = lambda self: gate.set() or real_stop(self)
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_during_an_index_run_stops_it_after_a_commit_and_exits_0(tmp_path, tiny_model_dir):
    """The run used to go on in a daemon thread while the interpreter exited: killed inside ONNX
    Runtime, the process aborted ("terminate called without an active exception", status 134)."""
    import httpx
    from reliability_kit import cli_env, pixgrep
    from reliability_kit import make_images as make_pngs

    photos, catalog = tmp_path / "photos", tmp_path / "c.db"
    make_pngs(photos, 80, size=48)  # batches of 32: the run is held before its second commit
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", HELD_RUN, "serve", "--port", str(port), "--catalog", str(catalog)]
        + ["--model", str(tiny_model_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    http.get("/indices-list")
                    break
                except httpx.TransportError:
                    assert process.poll() is None and time.monotonic() < deadline, "server did not start"
                    time.sleep(0.1)
            assert http.post("/api/index", json={"folder": str(photos)}).status_code == 202
            while (http.get("/api/index").json()["summary"] or {}).get("encoded", 0) < 32:
                assert time.monotonic() < deadline, "the first batch was not committed"
                time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "terminate called" not in err and "Traceback" not in err, err
    assert not Path(f"{catalog}.serve.json").exists()
    # The held batch was committed before the run stopped; the next run does the rest, once each.
    done = pixgrep("index", photos, "--catalog", catalog, "--model", tiny_model_dir, "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["found"], summary["encoded"]) == (80, 16), summary
