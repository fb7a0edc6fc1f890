"""End to end with the real CLI and `--model pixgrep-mini` on the 1000 Flickr8k test images.

Indexes once per session (the image tower takes about a minute for 1000 images on 2 cores), then
asserts real retrieval: captions find their photo in the top 10 for at least half of a fixed set
(Recall@10 is about 65% on this split), and a cropped, resized copy of a photo finds the original.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import shared_data
from mini_support import mini_cache  # noqa: F401  (session fixture)

N_CAPTIONS = 20


def _pixgrep(args: list[str], cache: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PIXGREP_CACHE": str(cache)}
    env.pop("PIXGREP_MODEL", None)
    return subprocess.run(
        [sys.executable, "-m", "pixgrep.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def indexed_test_split(mini_cache, tmp_path_factory):  # noqa: F811
    """(photos folder, catalog file, cache root, test image names), indexed with pixgrep-mini."""
    root = shared_data("flickr8k")
    names = (root / "test.txt").read_text().split()
    base = tmp_path_factory.mktemp("mini-e2e")
    photos = base / "photos"
    photos.mkdir()
    for name in names:
        shutil.copyfile(root / "images" / name, photos / name)
    catalog = base / "catalog.db"
    proc = _pixgrep(
        ["index", str(photos), "--catalog", str(catalog), "--model", "pixgrep-mini", "--json"],
        mini_cache,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr
    return photos, catalog, mini_cache, names


def _search(query: str, indexed) -> list[dict]:
    photos, catalog, cache, _ = indexed
    proc = _pixgrep(
        [
            "search",
            query,
            "--in",
            str(photos),
            "-n",
            "--catalog",
            str(catalog),
            "--model",
            "pixgrep-mini",
            "-k",
            "10",
            "--json",
        ],
        cache,
    )
    assert proc.returncode == 0, proc.stderr
    hits = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert len(hits) == 10 and all({"path", "score"} <= set(h) for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    return hits


def _fixed_captions(root: Path, names: list[str]) -> list[tuple[str, str]]:
    """The first caption of every 50th test image: 20 (image, caption) pairs, fixed forever."""
    chosen = names[:: len(names) // N_CAPTIONS][:N_CAPTIONS]
    first: dict[str, str] = {}
    with open(root / "captions.tsv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            first.setdefault(row["image"], row["caption"])
    return [(n, first[n]) for n in chosen]


def test_captions_find_their_photo_in_the_top_10(indexed_test_split):
    root = shared_data("flickr8k")
    pairs = _fixed_captions(root, indexed_test_split[3])
    found = []
    for name, caption in pairs:
        hits = _search(caption, indexed_test_split)
        found.append(name in [Path(h["path"]).name for h in hits])
    assert sum(found) >= len(pairs) // 2, (
        f"{sum(found)}/{len(pairs)} captions found their photo in the top 10"
    )


def test_a_cropped_resized_copy_finds_the_original(indexed_test_split, tmp_path):
    from PIL import Image

    photos, *_, names = indexed_test_split
    for name in (names[7], names[512]):
        with Image.open(photos / name) as im:
            w, h = im.size
            crop = im.convert("RGB").crop((w // 10, h // 8, w - w // 12, h - h // 10)).resize((300, 260))
        query = tmp_path / f"query-{name}"
        crop.save(query, quality=90)
        hits = _search(str(query), indexed_test_split)
        assert Path(hits[0]["path"]).name == name
        assert Path(hits[0]["path"]).parent.resolve() == photos.resolve()
