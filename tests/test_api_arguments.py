"""The Python API given arguments of the wrong kind: one PixgrepError naming what is wrong (never
a raw ValueError, an SQLite error, or a query made of the letters of a name), and a Catalog that
can be closed twice."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from fakes import FakeEncoder
from PIL import Image

import pixgrep
from pixgrep.errors import PixgrepError


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "pics"
    root.mkdir()
    for n in range(3):
        pixels = np.random.default_rng(n).integers(0, 255, (24, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"beach_{n}.png")
    return root


def test_one_folder_given_as_a_string_is_one_root(tmp_path, folder):
    with pixgrep.open_catalog(tmp_path / "c.db", encoder=FakeEncoder()) as cat:
        assert cat.index(str(folder)).found == 3
        assert len(cat.search("beach", roots=str(folder))) == 3
        assert cat.duplicates(str(folder)) == []
        image = folder / "beach_0.png"  # an image file as a Path, alone or among strings
        assert [r.path for r in cat.search(image)] == [r.path for r in cat.search([str(image)])]
        assert str(image) not in [r.path for r in cat.search(["beach", "+", image])]


@pytest.mark.parametrize(
    "query, fields, message",
    [
        (b"beach", {}, "not bytes"),
        ({"a": 1}, {}, "not dict"),
        (["beach", 3], {}, "a list of strings"),
        ("beach", {"threshold": "x"}, "threshold must be a cosine score"),
        ("beach", {"threshold": True}, "threshold must be a cosine score"),
        ("beach", {"k": 0}, "k must be a whole number, at least 1"),
        ("beach", {"roots": ["/tmp/\x00"]}, "NUL character"),
    ],
)
def test_arguments_of_the_wrong_kind_are_one_pixgrep_error(tmp_path, folder, query, fields, message):
    with pixgrep.open_catalog(tmp_path / "c.db", encoder=FakeEncoder()) as cat:
        cat.index([folder])
        with pytest.raises(PixgrepError, match=message):
            cat.search(query, **fields)


def test_facets_refuse_a_limit_past_any_table(tmp_path, folder):
    with pixgrep.open_catalog(tmp_path / "c.db", encoder=FakeEncoder()) as cat:
        cat.index([folder])
        assert cat.facets(limit=5)["places"] == []
        for limit in (10**20, 0, "5"):
            with pytest.raises(PixgrepError, match="limit must be"):
                cat.facets(limit=limit)


def test_a_catalog_closed_inside_its_with_block_closes_quietly_and_says_so_when_used(tmp_path, folder):
    with pixgrep.open_catalog(tmp_path / "c.db", encoder=FakeEncoder()) as cat:
        cat.index([folder])
        cat.close()
    cat.close()
    for use in (lambda: cat.search("beach"), lambda: cat.index([folder]), lambda: cat.stats()):
        with pytest.raises(PixgrepError, match="was closed"):
            use()


@pytest.mark.parametrize("roots", [5, [5], {"a": 1}, [None]])
def test_folders_of_the_wrong_kind_are_one_pixgrep_error(tmp_path, folder, roots):
    with pixgrep.open_catalog(tmp_path / "c.db", encoder=FakeEncoder()) as cat:
        cat.index(os.fsencode(folder))  # bytes: a folder name as the kernel has it
        assert len(cat.search("beach", roots=os.fsencode(folder))) == 3
        with pytest.raises(PixgrepError):
            cat.index(roots)
        with pytest.raises(PixgrepError):
            cat.search("beach", roots=roots)
