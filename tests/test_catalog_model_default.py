"""Without --model (and $PIXGREP_MODEL), a command uses the model the catalog holds vectors of."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from PIL import Image

from pixgrep.cli import main


@pytest.fixture
def indexed(tmp_path, tiny_model_dir, monkeypatch):
    """A catalog indexed with the tiny model folder, and the folder of its images; then a working
    folder elsewhere and no $PIXGREP_MODEL, as a new shell would have."""
    monkeypatch.delenv("PIXGREP_MODEL", raising=False)
    monkeypatch.delenv("PIXGREP_CATALOG", raising=False)
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(3)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    Image.open(photos / "p0.png").save(photos / "copy.png")  # one duplicate pair
    catalog = tmp_path / "c.db"
    assert main(["index", str(photos), "--catalog", str(catalog), "--model", str(tiny_model_dir)]) == 0
    monkeypatch.chdir(tmp_path)
    return catalog, photos


def test_search_without_model_uses_the_catalogs_one_model(indexed, capsys):
    catalog, photos = indexed
    capsys.readouterr()
    assert main(["-n", "a dog", "--catalog", str(catalog), "--in", str(photos), "-f"]) == 0
    out = capsys.readouterr().out.splitlines()
    images = {str(p) for p in photos.iterdir()}
    assert len(out) >= 4 and set(out) <= images  # the copy may be folded into its original


def test_duplicates_and_export_follow_the_same_rule(indexed, capsys, tmp_path):
    catalog, photos = indexed
    capsys.readouterr()
    assert main(["duplicates", "--catalog", str(catalog)]) == 0
    assert "copy.png" in capsys.readouterr().out
    pytest.importorskip("pyarrow", reason="export-vectors needs the parquet extra (pyarrow)")
    out = tmp_path / "v.parquet"
    assert main(["export-vectors", "--parquet", str(out), "--catalog", str(catalog)]) == 0
    assert out.is_file()


def test_several_models_are_named_and_one_is_asked_for(indexed, capsys):
    catalog, photos = indexed
    with sqlite3.connect(catalog) as conn:
        conn.execute("INSERT INTO embeddings VALUES ('ff', 'other-model', x'0000')")
    capsys.readouterr()
    assert main(["-n", "a dog", "--catalog", str(catalog), "--in", str(photos)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "2 models" in err[0] and "other-model" in err[0] and "--model" in err[0]
