"""What a plain `pip install pixgrep` brings: the ANN index is not an extra a user has to know about."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0].lower() for req in requirements}


def test_usearch_is_a_core_dependency_and_the_ann_extra_still_resolves():
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    assert "usearch" in _names(project["dependencies"])
    # `pip install 'pixgrep[ann]'` from older docs must keep working
    assert "usearch" in _names(project["optional-dependencies"]["ann"])
    # place names stay optional, and nothing core imports scipy (checked in test_places_missing)
    assert "reverse-geocode" not in _names(project["dependencies"])
