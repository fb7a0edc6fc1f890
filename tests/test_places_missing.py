"""The plain install (no `[places]` extra): photos with GPS are indexed and searched, and the missing
place names are one warning, not a crash. The missing packages are simulated by stand-ins that fail
to import, put first on the subprocess's path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from metadata_samples import build_photo_folder
from test_search_cli import pixgrep


@pytest.fixture
def without_places(tmp_path: Path, monkeypatch):
    stand_ins = tmp_path / "missing"
    for name in ("reverse_geocode",):  # scipy comes with the core now (imagehash needs it)
        (stand_ins / name).mkdir(parents=True)
        (stand_ins / name / "__init__.py").write_text(f"raise ImportError('No module named {name}')\n")
    path = [str(stand_ins), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path))


def test_gps_photos_index_and_search_with_one_place_warning(tmp_path, tiny_model_dir, without_places):
    root = build_photo_folder(tmp_path / "photos")
    catalog = tmp_path / "c.db"
    common = ("--catalog", catalog, "--model", tiny_model_dir)
    index = pixgrep("index", root, *common, "--json", check_rc=0)
    assert json.loads(index.stdout)["encoded"] == 9
    warnings = [line for line in index.stderr.splitlines() if "place" in line.lower()]
    assert len(warnings) == 1, index.stderr
    assert "pixgrep[places]" in warnings[0]
    assert "Traceback" not in index.stderr and "ModuleNotFoundError" not in index.stderr

    search = pixgrep("a bridge", "--in", root, *common, "-f", check_rc=0)
    assert len(search.stdout.splitlines()) == 9
    assert "Traceback" not in search.stderr
    assert sum("place" in line.lower() for line in search.stderr.splitlines()) <= 1, search.stderr
    # the positions are kept: a search by coordinates still finds the photo taken there
    near = pixgrep("-n", "-f", "--in", root, "--near", "43.7856,11.2346,1", *common, check_rc=0)
    assert [Path(line).name for line in near.stdout.splitlines()] == ["87_OSError.jpg"]
