"""The results table keeps one result on one line: a newline or a tab in a file name is printed
escaped there, while `-f` (paths for pipes) keeps the name exact."""

from __future__ import annotations

import sys

import pytest
from test_search_cli import make_images, pixgrep


@pytest.mark.skipif(sys.platform == "win32", reason="newlines in file names are POSIX only")
def test_newline_and_tab_in_names_are_escaped_in_the_table(tmp_path, tiny_model_dir):
    photos = tmp_path / "photos"
    first, second = make_images(photos, 2, seed=3)
    first.rename(photos / "two\nlines.jpg")
    second.rename(photos / "a\ttab.jpg")
    common = ("--in", photos, "--catalog", tmp_path / "c.db", "--model", tiny_model_dir)
    table = pixgrep("a picture", *common, check_rc=0).stdout.splitlines()
    assert table[0].split() == ["score", "path"] and len(table) == 3
    shown = sorted(line.split("  ", 1)[1] for line in table[1:])
    assert shown == sorted([str(photos / "two\\nlines.jpg"), str(photos / "a\\ttab.jpg")])
    exact = pixgrep("a picture", "-n", "-f", *common, check_rc=0).stdout
    assert str(photos / "two\nlines.jpg") in exact and str(photos / "a\ttab.jpg") in exact
