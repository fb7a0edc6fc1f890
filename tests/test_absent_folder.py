"""An indexed folder that is not there now (an unmounted drive) is searched in the catalog."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pixgrep.cli import main


@pytest.fixture
def unmounted(tmp_path, tiny_model_dir, monkeypatch):
    """A catalog that indexed nas/, then nas/ moved away; the catalog and model options."""
    monkeypatch.delenv("PIXGREP_MODEL", raising=False)
    nas = tmp_path / "nas"
    nas.mkdir()
    rng = np.random.default_rng(5)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(nas / f"d{i}.png")
    common = ["--catalog", str(tmp_path / "c.db"), "--model", str(tiny_model_dir)]
    assert main(["index", str(nas), *common]) == 0
    nas.rename(tmp_path / "away")
    return nas, common


@pytest.mark.parametrize("no_index", [["-n"], []])
def test_an_absent_indexed_folder_is_answered_from_the_catalog(unmounted, capsys, no_index):
    nas, common = unmounted
    capsys.readouterr()
    assert main([*no_index, "dog", "--in", str(nas), *common, "-f"]) == 0
    captured = capsys.readouterr()
    assert sorted(captured.out.splitlines()) == [str(nas / f"d{i}.png") for i in range(3)]
    notes = [line for line in captured.err.splitlines() if "not present" in line]
    assert len(notes) == 1 and "from the catalog" in notes[0]
    # the search that indexes removed nothing: the rows are all still there
    assert main(["-n", "dog", "--in", str(nas), *common, "-f"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_a_missing_folder_the_catalog_does_not_know_stays_an_error(unmounted, capsys, tmp_path):
    _, common = unmounted
    capsys.readouterr()
    assert main(["-n", "dog", "--in", str(tmp_path / "nowhere"), *common]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_indexing_an_absent_folder_is_refused_and_keeps_its_rows(unmounted, capsys):
    nas, common = unmounted
    assert main(["index", str(nas), *common]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["-n", "dog", "--in", str(nas), *common, "-f"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


@pytest.mark.parametrize("command", [["index"], ["dog", "-f", "--in"]])
def test_an_empty_mount_point_keeps_its_rows_and_the_folder_above_drops_them(
    unmounted, capsys, command, monkeypatch
):
    """An unmounted drive leaves an empty folder behind, on the device of the folder above: indexing
    it (or a search that indexes first) keeps the rows and says so; indexing the folder above
    takes the files as deleted."""
    from pixgrep.catalog import ingest

    nas, common = unmounted
    nas.mkdir()  # the mount point, without its drive: on the device of the folder above
    parent_device = ingest.folder_device(str(nas)) + 1  # not the drive's, recorded when indexed
    real = ingest.folder_device
    monkeypatch.setattr(ingest, "folder_device", lambda f: parent_device if f == str(nas) else real(f))
    capsys.readouterr()
    main([*command, str(nas), *common])
    assert "the folder is empty but the catalog holds 3 image(s) there" in capsys.readouterr().err
    assert main(["-n", "dog", "--in", str(nas), *common, "-f"]) == 0
    assert sorted(capsys.readouterr().out.splitlines()) == [str(nas / f"d{i}.png") for i in range(3)]
    assert main(["index", str(nas.parent), *common, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == 3
    assert main(["-n", "dog", "--in", str(nas), *common, "-f"]) == 1
