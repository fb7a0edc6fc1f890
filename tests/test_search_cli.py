"""End to end: the real `pixgrep` command in a subprocess, with the tiny random-weight model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

JSON_KEYS = ["height", "path", "score", "size", "taken_at", "width"]


def pixgrep(*args, cwd=None, check_rc=None):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for name in ("PIXGREP_CATALOG", "PIXGREP_MODEL", "TERM_PROGRAM", "LC_TERMINAL", "TMUX"):
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-m", "pixgrep.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )
    if check_rc is not None:
        assert proc.returncode == check_rc, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def make_images(folder: Path, count: int, seed: int) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        image = Image.new("RGB", (64, 48), tuple(int(c) for c in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(4):
            x, y = (int(v) for v in rng.integers(0, 48, 2))
            draw.rectangle([x, y, x + 16, y + 12], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        path = folder / f"img{i:02d}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_model_dir):
    """Two folders, indexed by the first (default) search, and the catalog holding them."""
    root = tmp_path_factory.mktemp("library")
    a = make_images(root / "trips", 8, seed=1)
    b = make_images(root / "pets", 4, seed=2)
    catalog = root / "catalog.db"
    common = ["--catalog", catalog, "--model", tiny_model_dir]
    first = pixgrep("search", "a beach", "--in", root / "trips", "--in", root / "pets", *common, "--json")
    assert first.returncode == 0, first.stderr
    return {"root": root, "trips": a, "pets": b, "common": common, "first": first}


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_default_search_indexes_then_prints_json_lines(library):
    rows = json_lines(library["first"].stdout)
    assert len(rows) == 10  # default top 10 of the 12 images
    for row in rows:
        assert sorted(row) == JSON_KEYS
        assert os.path.isfile(row["path"]) and row["size"] == os.path.getsize(row["path"])
        assert (row["width"], row["height"]) == (64, 48)
        assert -1.0 <= row["score"] <= 1.0
    scores = [row["score"] for row in rows]
    assert scores == sorted(scores, reverse=True)
    assert library["first"].stderr == ""  # not a terminal: no progress bar, no summary


def test_an_unchanged_folder_does_not_rebuild_the_matrix(library):
    [matrix] = (library["root"] / "catalog.db.vectors").glob("*.matrix")
    before = matrix.stat()
    again = pixgrep(
        "search",
        "a beach",
        "--in",
        library["root"] / "trips",
        "--in",
        library["root"] / "pets",
        *library["common"],
        "--json",
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout == library["first"].stdout  # indexing found nothing new, same answer
    after = matrix.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_results_are_scoped_to_the_searched_folder(library):
    proc = pixgrep("search", "-n", "a beach", "--in", library["root"] / "pets", *library["common"], "--json")
    assert proc.returncode == 0, proc.stderr
    paths = sorted(row["path"] for row in json_lines(proc.stdout))
    assert paths == sorted(str(p) for p in library["pets"])


def test_short_form_in_the_current_folder_with_paths_only(library):
    proc = pixgrep("a beach", "-n", "-f", "-k", "3", *library["common"], cwd=library["root"] / "trips")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3
    assert all(line in {str(p) for p in library["trips"]} for line in lines)
    # The same ranking as the long form's JSON, restricted to that folder.
    long_form = pixgrep(
        "search", "-n", "a beach", "--in", library["root"] / "trips", "-k", "3", *library["common"], "--json"
    )
    assert [row["path"] for row in json_lines(long_form.stdout)] == lines


def test_table_output(library):
    proc = pixgrep("-n", "a beach", "--in", library["root"] / "pets", "-k", "2", *library["common"])
    assert proc.returncode == 0, proc.stderr
    header, *lines = proc.stdout.splitlines()
    assert header.split() == ["score", "path"]
    assert len(lines) == 2
    score, path = lines[0].split("  ", 1)
    assert float(score) >= float(lines[1].split("  ", 1)[0]) and Path(path).is_file()


def test_preview_draws_each_result(library):
    proc = pixgrep(
        "-n", "-p", "-H", "40", "-k", "2", "a beach", "--in", library["root"] / "pets", *library["common"]
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\033_Ga=T,f=100") == 2  # Kitty graphics protocol, one image per result


def test_query_arithmetic_matches_the_weighted_sum(library, tiny_model_dir):
    """`"horse" + "0.5:stars" - "day"` ranks by cos(image, unit(t1 + 0.5 t2 - t3)), computed
    here from the catalog's own vectors and the same model."""
    from pixgrep.catalog.db import CatalogDB
    from pixgrep.models import load_encoder

    folder = library["root"] / "trips"
    proc = pixgrep(
        "-n", "horse", "+", "0.5:stars", "-", "day", "--in", folder, "-k", "8", *library["common"], "--json"
    )
    assert proc.returncode == 0, proc.stderr
    got = [(row["path"], row["score"]) for row in json_lines(proc.stdout)]

    encoder = load_encoder(str(tiny_model_dir))
    horse, stars, day = encoder.encode_texts(["horse", "stars", "day"])
    query = horse + 0.5 * stars - day
    query /= np.linalg.norm(query)
    db = CatalogDB(library["common"][1])
    try:
        records = db.images_by_path([str(p) for p in library["trips"]])
        expected = []
        for path, record in records.items():
            vector = db.vector_for_hash(record.content_hash, encoder.model_id).astype(np.float32)
            expected.append((path, float(vector @ query / np.linalg.norm(vector))))
    finally:
        db.close()
    expected.sort(key=lambda item: -item[1])
    assert [p for p, _ in got] == [p for p, _ in expected]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], atol=1e-3)


def test_image_query_leaves_the_image_itself_out(library):
    ref = library["trips"][0]
    proc = pixgrep("-n", "-f", "-k", "20", f"./{ref.name}", *library["common"], cwd=ref.parent)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert str(ref) not in lines and len(lines) == 7


def test_threshold(library):
    common = ["-n", "a beach", "--in", library["root"], *library["common"], "--json"]
    everything = json_lines(pixgrep(*common, "-k", "12").stdout)
    assert len(everything) == 12
    cut = (everything[4]["score"] + everything[5]["score"]) / 2  # halfway between 5th and 6th
    above = json_lines(pixgrep(*common, "-k", "12", "--threshold", f"{cut:.7f}").stdout)
    assert [row["path"] for row in above] == [row["path"] for row in everything[:5]]
    none = pixgrep(*common, "--threshold", "1")
    assert none.returncode == 1 and none.stdout == "" and "no matching images" in none.stderr


def test_capture_date_filters_end_to_end(tmp_path, tiny_model_dir):
    folder = tmp_path / "dated"
    folder.mkdir()
    for name, when in [
        ("may.jpg", "2019:05:04 12:30:00"),
        ("june.jpg", "2019:06:02 08:00:00"),
        ("old.jpg", "2015:01:01 00:00:00"),
        ("undated.jpg", None),
    ]:
        image = Image.new("RGB", (40, 30), (len(name) * 20, 90, 150))
        exif = Image.Exif()
        if when:
            exif[0x0132] = when  # DateTime, as cameras write it
        image.save(folder / name, exif=exif)
    common = ["--catalog", tmp_path / "c.db", "--model", tiny_model_dir, "--in", folder, "-f", "-k", "10"]
    everything = pixgrep("a photo", *common, check_rc=0).stdout.splitlines()
    assert len(everything) == 4

    def names(*dates):
        proc = pixgrep("-n", "a photo", *common, *dates)
        return sorted(Path(line).name for line in proc.stdout.splitlines())

    assert names("--after", "2019") == ["june.jpg", "may.jpg"]
    assert names("--after", "2019-05", "--before", "2019-06") == ["may.jpg"]
    assert names("--before", "2019") == ["old.jpg"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["horse", "+"], "dangling '+'"),
        (["0.5.3:horse"], "cannot read the weight"),
        (["./missing.jpg"], "no such image file: ./missing.jpg"),
        (["cat", "--in", "/no/such/folder"], "--in /no/such/folder: no such folder"),
        (["cat", "--after", "someday"], "--after 'someday' is not a date"),
        (["w0", *[t for i in range(1, 65) for t in ("+", f"w{i}")]], "more than 64 terms"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(library, tmp_path, args, message):
    proc = pixgrep(*args, "-n", *library["common"], cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pixgrep: error: ") and message in lines[0]


def test_unreadable_catalog_is_one_line_and_exit_2(tmp_path, tiny_model_dir):
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"this is not an sqlite database at all" * 100)
    before = broken.read_bytes()
    proc = pixgrep("-n", "cat", "--in", tmp_path, "--catalog", broken, "--model", tiny_model_dir)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pixgrep: error: ") and "broken.db" in lines[0]
    assert broken.read_bytes() == before  # never damaged


def test_help_lists_the_grammar_and_options():
    proc = pixgrep("search", "--help", check_rc=0)
    for text in [
        "--in DIR",
        "-k N",
        "--no-index",
        "--paths-only",
        "--json",
        "--threshold",
        "--after",
        "--exclude",
        "--include-hidden",
        "--preview",
        "1:3:10 to yuma",
        "exit status",
    ]:
        assert text in proc.stdout, text


def test_paths_that_are_not_utf8_come_out_as_their_bytes(monkeypatch):
    import argparse
    import io

    from pixgrep.cli.search import _render
    from pixgrep.records import SearchResult

    path = os.fsdecode(b"/photos/caf\xe9.jpg")  # Latin-1 name on disk: a lone surrogate in Python
    results = [SearchResult(1, path, 0.5, 10, 4, 3, None)]
    for flags, expected in [
        ({"paths_only": True, "json": False}, b"/photos/caf\xe9.jpg\n"),
        # the table is for people: the name shown escaped; -f keeps the bytes for pipes
        ({"paths_only": False, "json": False}, b"score  path\n0.500  /photos/caf\\xe9.jpg\n"),
    ]:
        out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
        monkeypatch.setattr(sys, "stdout", out)
        _render(results, argparse.Namespace(preview=False, **flags))
        assert out.buffer.getvalue() == expected
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    monkeypatch.setattr(sys, "stdout", out)
    _render(results, argparse.Namespace(preview=False, paths_only=False, json=True))
    line = out.buffer.getvalue().decode("utf-8")  # valid UTF-8 JSON
    assert json.loads(line)["path"] == path
