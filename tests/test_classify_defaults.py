"""`pixgrep classify --write-xmp` with its defaults writes only labels that fit: the README's
example (labels "cat, dog, car") on real dog photos, with pixgrep-mini, must not tag them "car"."""

from __future__ import annotations

import shutil

import pytest
from conftest import shared_data
from flickr_dogs import certain_dogs
from mini_support import mini_cache  # noqa: F401  (session fixture)
from test_mini_e2e import _pixgrep

from pixgrep.tagging import xmp

pytestmark = pytest.mark.torch  # builds pixgrep-mini


def test_readme_example_does_not_tag_dogs_as_cars(tmp_path, mini_cache):  # noqa: F811
    root = shared_data("flickr8k")
    photos = []
    for name in certain_dogs(root)[:10]:
        photos.append(tmp_path / name)
        shutil.copyfile(root / "images" / name, photos[-1])
    readme_example = ["classify", *map(str, photos), "--labels", "cat,dog,car", "--write-xmp"]
    proc = _pixgrep([*readme_example, "--model", "pixgrep-mini"], mini_cache)
    assert proc.returncode == 0, proc.stderr
    written = [xmp.read_keywords(xmp.sidecar_path(p)) if xmp.sidecar_path(p).exists() else [] for p in photos]
    assert sum("car" in words for words in written) <= 1, written
    assert sum("cat" in words for words in written) <= 1, written
    assert sum(words == ["dog"] for words in written) >= 8, written  # the right label is still written


def test_help_states_what_is_written(tmp_path):
    proc = _pixgrep(["classify", "--help"], tmp_path)
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "default 0.5: at most one label per image" in text
