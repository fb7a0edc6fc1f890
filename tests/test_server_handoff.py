"""`pixgrep -n TEXT` handed to a running `pixgrep serve` of the same catalog and model
(server/handoff.py): the same answer as searching in the process, without loading the model, and
a search in the process whenever the server cannot be trusted to give it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from reliability_kit import cli_env, make_image, make_images, pixgrep, start_server, stop

from pixgrep.server import handoff

# Runs the CLI and reports on stderr whether the server answered and whether the model runtime was
# loaded: a handed-off query must not import onnxruntime (that, and the text session, is the gain).
PROBE = """
import sys
from pixgrep.server import handoff
from pixgrep.cli import main
real, answers = handoff.ask, []
handoff.ask = lambda *args: answers.append(real(*args)) or answers[-1]
code = main(sys.argv[1:])
print("handed off" if any(a is not None for a in answers) else "searched here", file=sys.stderr)
print("onnxruntime loaded" if "onnxruntime" in sys.modules else "no runtime", file=sys.stderr)
sys.exit(code)
"""
HANDED = "handed off\nno runtime"


def probe(*args: object, env: dict[str, str] | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PROBE, *map(str, args)],
        capture_output=True,
        text=True,
        errors="surrogateescape",
        env=env or cli_env(),
        cwd=cwd,
        timeout=120,
    )


@pytest.fixture
def served(tmp_path, tiny_model_dir):
    photos, catalog = tmp_path / "photos", tmp_path / "catalog.db"
    make_images(photos, 30, size=48)
    done = pixgrep("index", photos, "--catalog", catalog, "--model", tiny_model_dir, "--json")
    assert done.returncode == 0, done.stderr
    process, _ = start_server("--catalog", catalog, "--model", tiny_model_dir)
    yield photos, catalog, process
    if process.poll() is None:
        stop(process)


def query(photos, catalog, model, *extra):
    return ("-n", "a red square", "--in", photos, "--catalog", catalog, "--model", model, "-k", "7", *extra)


def test_a_text_query_is_answered_by_the_server_exactly_as_here(served, tiny_model_dir):
    photos, catalog, _ = served
    extras = (("--json",), (), ("--threshold", "-1", "--offset", "2", "-f"), ("--all", "--json"))
    for extra in (*extras, ("--tone", "cozy, bright", "--json")):  # tone words travel as one text
        handed = probe(*query(photos, catalog, tiny_model_dir, *extra))
        local = probe(*query(photos, catalog, tiny_model_dir, *extra, "--local"))
        assert handed.returncode == local.returncode == 0, (handed.stderr, local.stderr)
        assert handed.stdout == local.stdout and handed.stdout.strip(), extra
        assert handed.stderr.strip() == HANDED and local.stderr.strip() == "searched here\nonnxruntime loaded"
    # the folder and the model folder named relative to the current directory
    here = photos.parent
    model = os.path.relpath(tiny_model_dir, here)
    relative = probe(
        "-n", "a blue circle", "--in", "photos", "--catalog", catalog, "--model", model, cwd=here
    )
    assert relative.stderr.strip() == HANDED, relative.stderr
    local = probe(
        "-n", "a blue circle", "--in", photos, "--catalog", catalog, "--model", tiny_model_dir, "--local"
    )
    assert relative.stdout == local.stdout and relative.stdout


def test_rows_indexed_by_another_process_are_in_the_servers_answer(served, tiny_model_dir):
    photos, catalog, _ = served
    (photos / "later").mkdir()
    for i in range(5):  # pictures the catalog has not seen (make_images repeats its first ones)
        make_image(photos / "later" / f"{i}.png", 5000 + i, 48)
    done = pixgrep("index", photos, "--catalog", catalog, "--model", tiny_model_dir, "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["encoded"] == 5, done.stderr
    args = ("-n", "a photo", "--in", photos / "later", "--catalog", catalog, "--model", tiny_model_dir, "-f")
    handed, local = probe(*args), probe(*args, "--local")
    assert handed.stderr.strip() == HANDED
    assert handed.stdout == local.stdout and len(handed.stdout.splitlines()) == 5


def test_no_hand_off_for_image_terms_another_model_verbose_or_a_stale_note(served, tiny_model_dir, tmp_path):
    photos, catalog, process = served
    image = sorted(photos.glob("*.png"))[0]
    other_model = tmp_path / "other-model"
    other_model.symlink_to(tiny_model_dir)  # resolves to the same folder: still the same model
    cases = {
        "image term": ("-n", image, "--in", photos, "--catalog", catalog, "--model", tiny_model_dir),
        "verbose": (*query(photos, catalog, tiny_model_dir), "-v"),
        "--local": (*query(photos, catalog, tiny_model_dir), "--local"),
        "registry default, not the served folder": ("-n", "x", "--in", photos, "--catalog", catalog),
    }
    for name, args in cases.items():
        done = probe(*args)
        assert "searched here" in done.stderr, (name, done.stderr)
    assert probe(*query(photos, catalog, other_model)).stderr.strip() == HANDED

    note = handoff.note_path(catalog)
    written = json.loads(note.read_text())
    expected = probe(*query(photos, catalog, tiny_model_dir, "--json", "--local")).stdout
    for change in ({"key": "0" * 32}, {"pid": 2**22 + 12345}, {"host": "192.0.2.7"}, {"port": 1}):
        note.write_text(json.dumps({**written, **change}))  # another server, a dead one, not this machine
        done = probe(*query(photos, catalog, tiny_model_dir, "--json"))
        assert done.returncode == 0 and done.stdout == expected, change
        assert "searched here" in done.stderr, change
    for broken in ({"port": "80"}, {"port": None}, {"pid": "1"}, {"catalog": None}):  # a hand-edited note
        note.write_text(json.dumps({**written, **broken}))
        done = probe(*query(photos, catalog, tiny_model_dir, "--json"))
        assert done.stdout == expected and "searched here" in done.stderr, (broken, done.stderr)
    note.write_text("{not json")
    assert probe(*query(photos, catalog, tiny_model_dir, "--json")).stdout == expected
    # a server on every address (tests listen on 127.0.0.1 only, so the note says it) is asked locally
    note.write_text(json.dumps({**written, "host": "0.0.0.0"}))
    assert probe(*query(photos, catalog, tiny_model_dir, "--json")).stderr.strip() == HANDED


def test_the_note_goes_when_the_server_stops(served):
    _, catalog, process = served
    note = handoff.note_path(catalog)
    assert json.loads(note.read_text())["pid"] == process.pid
    stop(process)
    assert not note.exists()


def test_a_second_server_of_the_catalog_leaves_the_running_servers_note_alone(served, tiny_model_dir):
    """The second server used to take the note over and remove it when it stopped: the first one,
    still running, was no longer found by `pixgrep -n`."""
    photos, catalog, first = served
    note = handoff.note_path(catalog)
    second, _ = start_server("--catalog", catalog, "--model", tiny_model_dir, keep_stdout=True)
    try:
        assert json.loads(note.read_text())["pid"] == first.pid
    finally:
        out, _ = stop(second)
    assert f"already running on this catalog (pid {first.pid})" in out
    assert json.loads(note.read_text())["pid"] == first.pid
    assert probe(*query(photos, catalog, tiny_model_dir)).stderr.strip() == HANDED


def test_a_server_with_a_token_gets_the_query_only_from_a_caller_that_has_it(tmp_path, tiny_model_dir):
    photos, catalog = tmp_path / "photos", tmp_path / "catalog.db"
    make_images(photos, 12, size=48)
    assert pixgrep("index", photos, "--catalog", catalog, "--model", tiny_model_dir).returncode == 0
    process, _ = start_server("--catalog", catalog, "--model", tiny_model_dir, "--token", "s3cret")
    try:
        without = probe(*query(photos, catalog, tiny_model_dir, "--json"))
        right = probe(*query(photos, catalog, tiny_model_dir, "--json"), env=cli_env(PIXGREP_TOKEN="s3cret"))
        wrong = probe(*query(photos, catalog, tiny_model_dir, "--json"), env=cli_env(PIXGREP_TOKEN="nope"))
    finally:
        stop(process)
    assert without.returncode == right.returncode == wrong.returncode == 0
    assert without.stdout == right.stdout == wrong.stdout and without.stdout
    assert "searched here" in without.stderr and "searched here" in wrong.stderr
    assert right.stderr.strip() == HANDED


def test_a_folder_and_files_named_in_no_encoding_come_back_as_the_same_bytes(served, tiny_model_dir):
    photos, catalog, _ = served
    folder = os.path.join(os.fsencode(photos), b"caf\xe9")
    os.mkdir(folder)
    for i, name in enumerate((b"\xff\xfe.png", b"r\xe9sum\xe9.png")):
        make_image(os.fsdecode(os.path.join(folder, name)), 7000 + i, 48)
    assert pixgrep("index", photos, "--catalog", catalog, "--model", tiny_model_dir).returncode == 0
    args = (
        "-n",
        "a photo",
        "--in",
        os.fsdecode(folder),
        "--catalog",
        catalog,
        "--model",
        tiny_model_dir,
        "-f",
    )
    handed, local = probe(*args), probe(*args, "--local")
    assert handed.stderr.strip() == HANDED, handed.stderr
    assert (local.returncode, handed.stdout) == (0, local.stdout), local.stderr
    assert sorted(os.fsencode(line) for line in handed.stdout.splitlines()) == sorted(
        os.path.join(folder, name) for name in (b"\xff\xfe.png", b"r\xe9sum\xe9.png")
    )


def test_a_handed_off_query_carries_this_processs_language(tmp_path, monkeypatch):
    from pixgrep.cli import main
    from pixgrep.models import languages

    sent: list[dict] = []
    monkeypatch.setattr(handoff, "ask", lambda catalog, model, body: sent.append(body) or ([], []))
    monkeypatch.setattr(languages, "_default", None)
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIXGREP_LANG", "zh-TW")  # not the server's: it may run with another
    monkeypatch.chdir(tmp_path)
    args = ["search", "-n", "ein Hund", "--catalog", str(tmp_path / "c.db")]
    assert main([*args, "--lang", "de"]) == main(args) == 1  # the stub server finds nothing
    assert [body["lang"] for body in sent] == ["de", "zho_Hant"]
    monkeypatch.setenv("PIXGREP_LANG", "klingon")  # matters only to NLLB models: the server's call
    main(args)
    assert sent[-1]["lang"] is None
