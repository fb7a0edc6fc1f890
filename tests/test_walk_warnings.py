"""What an index run and a search say on stderr: the walk's unreadable entries once per catalog and
short, an --offset past the end with the count of results."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from pixgrep.cli import main


@pytest.fixture
def looped(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.delenv("PIXGREP_MODEL", raising=False)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.full((30, 40, 3), 90, np.uint8)).save(photos / "ok.png")
    os.symlink("loop.jpg", photos / "loop.jpg")  # a symlink loop with an image's name
    return photos, ["--catalog", str(tmp_path / "c.db"), "--model", str(tiny_model_dir)]


def _loop_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "loop.jpg" in line]


def test_an_unreadable_entry_is_said_by_the_first_walk_only(looped, capsys):
    photos, common = looped
    capsys.readouterr()
    assert main(["a cat", "--in", str(photos), *common, "-f"]) == 0
    first = _loop_lines(capsys.readouterr().err)
    assert len(first) == 1 and "warning" in first[0]
    for _ in range(2):  # searches that index again: the same problem is not said again
        assert main(["a cat", "--in", str(photos), *common, "-f"]) == 0
        assert _loop_lines(capsys.readouterr().err) == []


def test_a_problem_that_went_away_and_came_back_is_said_again(looped, capsys):
    photos, common = looped
    assert main(["index", str(photos), *common]) == 0
    (photos / "loop.jpg").unlink()
    assert main(["index", str(photos), *common]) == 0
    os.symlink("loop.jpg", photos / "loop.jpg")
    capsys.readouterr()
    assert main(["index", str(photos), *common]) == 0
    assert len(_loop_lines(capsys.readouterr().err)) == 1


def test_a_very_long_path_is_shortened_in_its_warning(cli_logging, capsys):
    from pixgrep.catalog.ingest import default_warn

    long_path = "/photos/" + "a" * 5000 + "/end.jpg"
    default_warn(long_path, "cannot read: File name too long")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and len(err[0]) < 300, err
    assert "end.jpg" in err[0] and "5016 characters" in err[0]


def test_an_offset_past_the_end_says_how_many_results_there_are(looped, capsys):
    photos, common = looped
    assert main(["index", str(photos), *common]) == 0
    capsys.readouterr()
    assert main(["-n", "a cat", "--in", str(photos), "--offset", "5", *common]) == 1
    err = capsys.readouterr().err
    assert "no results past offset 5 (1 in all)" in err and "without -n" not in err


def test_an_offset_past_the_end_of_a_served_search_says_so(tmp_path, tiny_model_dir):
    from reliability_kit import make_images, pixgrep, start_server, stop

    photos, catalog = tmp_path / "photos", tmp_path / "catalog.db"
    make_images(photos, 3, size=48)
    common = ("--catalog", catalog, "--model", tiny_model_dir)
    assert pixgrep("index", photos, *common).returncode == 0
    process, _ = start_server(*common)
    try:
        done = pixgrep("-n", "a cat", "--in", photos, "--offset", "9", *common)
    finally:
        stop(process)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip() == "pixgrep: no results past offset 9"
