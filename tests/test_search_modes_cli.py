"""End to end (the real `pixgrep` command): --all, --ignore-tone, --tone, duplicates collapsed or not,
`pixgrep duplicates`, the query-cut warning, and the same switches on `pixgrep eval retrieval`."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import shared_data
from mini_support import mini_cache  # noqa: F401  (session fixture)
from PIL import Image
from test_search_cli import make_images, pixgrep

LONG_QUERY = " ".join(f"a red chair number {i}," for i in range(40))  # ~200 tokens


def rows(proc) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.fixture(scope="module")
def lib(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("queries")
    photos = root / "photos"
    paths = make_images(photos, 6, seed=7)
    shutil.copyfile(paths[1], photos / "zz-same-bytes.jpg")  # identical content, newer file
    os.utime(photos / "zz-same-bytes.jpg", (2_000_000_000, 2_000_000_000))
    Image.open(paths[2]).save(photos / "img02-q95.jpg", quality=95)  # re-encoded: other bytes
    common = ["--catalog", root / "catalog.db", "--model", tiny_model_dir]
    first = pixgrep("index", photos, *common, check_rc=0)
    assert first.returncode == 0
    return {"root": root, "photos": photos, "paths": paths, "common": common}


def test_identical_files_are_collapsed_by_default_and_no_dedup_shows_them(lib):
    common = [*lib["common"], "-n", "--in", lib["photos"], "-k", "20", "--json"]
    collapsed = rows(pixgrep("a beach", *common, check_rc=0))
    everything = rows(pixgrep("a beach", *common, "--no-dedup", check_rc=0))
    assert len(everything) == 8
    # The tiny random-weight model has no measured near-duplicate threshold: only the identical
    # file is folded. The group shows its best copy: as large as the other, and newer.
    assert len(collapsed) == 7
    (group,) = [row for row in collapsed if "duplicates" in row]
    assert group["path"] == str(lib["photos"] / "zz-same-bytes.jpg")
    assert group["duplicates"] == [str(lib["paths"][1])]
    assert str(lib["photos"] / "img02-q95.jpg") in {row["path"] for row in collapsed}
    text = pixgrep("a beach", *common[:-1], check_rc=0).stdout
    assert "+1 near-identical" in text
    assert f"copy: {lib['paths'][1]}" in text  # the folded copy is listed, to open by its path


def test_all_reports_per_part_scores(lib):
    common = [*lib["common"], "-n", "--in", lib["photos"], "--json"]
    query = "a red car, a dog and a tree"
    parted = rows(pixgrep("--all", query, *common, check_rc=0))
    assert [list(row["parts"]) for row in parted] == [["a red car", "a dog", "a tree"]] * len(parted)
    for row in parted:
        assert all(-1 <= s <= 1 for s in row["parts"].values())
    plain = rows(pixgrep(query, *common, check_rc=0))
    assert all("parts" not in row for row in plain)
    assert [r["score"] for r in parted] != [r["score"] for r in plain]


@pytest.mark.parametrize("mode", [[], ["--all"], ["--ignore-tone"]])
def test_a_query_longer_than_the_context_length_warns_once(lib, mode):
    proc = pixgrep(LONG_QUERY, *mode, *lib["common"], "-n", "--in", lib["photos"], "-f", check_rc=0)
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("pixgrep: warning:")]
    assert len(warnings) == 1, proc.stderr
    assert "longer than the model reads" in warnings[0] and "number 39" in warnings[0]
    short = pixgrep("a red chair", *mode, *lib["common"], "-n", "--in", lib["photos"], "-f", check_rc=0)
    assert "warning" not in short.stderr


def test_ignore_tone_and_tone_change_the_ranking_scores(lib, tmp_path):
    env_cache = ["--in", lib["photos"], "-n", "--json", *lib["common"]]
    plain = rows(pixgrep("a kitchen, messy, dingy", *env_cache, check_rc=0))
    ignored = rows(pixgrep("a kitchen, messy, dingy", "--ignore-tone", *env_cache, check_rc=0))
    toned = rows(pixgrep("a kitchen", "--tone", "cozy, bright", *env_cache, check_rc=0))
    assert len(plain) == len(ignored) == len(toned) == 7
    assert [r["score"] for r in plain] != [r["score"] for r in ignored]
    base = rows(pixgrep("a kitchen", *env_cache, check_rc=0))
    assert [r["score"] for r in base] != [r["score"] for r in toned]
    bad = pixgrep("a kitchen", "--tone", " , ", *env_cache)
    assert bad.returncode == 2 and bad.stderr.startswith("pixgrep: error: --tone")


def test_duplicates_command(lib):
    found = pixgrep("duplicates", "--in", lib["photos"], "--json", *lib["common"], check_rc=0)
    groups = rows(found)
    assert [sorted(Path(i["path"]).name for i in g["images"]) for g in groups] == [
        ["img01.jpg", "zz-same-bytes.jpg"]
    ]
    # the best copy first: as large as the other (same bytes), then the newer file
    assert groups[0]["images"][0]["path"] == str(lib["photos"] / "zz-same-bytes.jpg")
    # With an explicit threshold the re-encoded copy joins its original (cosine > 0.9999 in this
    # model, while the distinct pictures of this set stay below 0.999).
    strict = rows(pixgrep("duplicates", "--threshold", "0.9995", "--json", *lib["common"], check_rc=0))
    names = sorted(sorted(Path(i["path"]).name for i in g["images"]) for g in strict)
    assert ["img02-q95.jpg", "img02.jpg"] in names
    text = pixgrep("duplicates", *lib["common"], check_rc=0)
    assert "2 near-identical:" in text.stdout
    none = pixgrep("duplicates", "--in", lib["root"], "--threshold", "1", *lib["common"])
    assert none.returncode in (0, 1)
    missing = pixgrep("duplicates", "--in", lib["root"] / "nope", *lib["common"])
    assert missing.returncode == 2 and "no such folder" in missing.stderr


def test_eval_retrieval_records_the_switches(lib, tmp_path):
    captions = tmp_path / "captions.tsv"
    names = [p.name for p in lib["paths"]]
    captions.write_text(
        "image\tcaption\n"
        + "".join(f"{n}\ta picture, with a square and a colour number {i}\n" for i, n in enumerate(names))
    )
    split = tmp_path / "split.txt"
    split.write_text("\n".join(names) + "\n")
    args = [
        "eval",
        "retrieval",
        "--images",
        lib["photos"],
        "--captions",
        captions,
        "--split",
        split,
        "--json",
    ]
    plain = json.loads(pixgrep(*args, *lib["common"], check_rc=0).stdout)
    both = json.loads(pixgrep(*args, "--all", "--ignore-tone", *lib["common"], check_rc=0).stdout)
    assert (plain["all_parts"], plain["ignore_tone"]) == (False, False)
    assert (both["all_parts"], both["ignore_tone"]) == (True, True)
    assert both["images"] == 6 and both["captions"] == 6
    assert 0 <= both["t2i_R@1"] <= 100


def test_near_duplicates_collapse_with_pixgrep_mini(tmp_path, mini_cache):  # noqa: F811
    """A real model with a measured threshold: a re-encoded (JPEG q70) and a half-size copy of a
    Flickr8k photo are folded into it, the original (largest, then least compressed) shown; a
    cropped copy is another framing and stays, as do the other photos."""
    data = shared_data("flickr8k")
    names = (data / "test.txt").read_text().split()[:5]
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in names:
        shutil.copyfile(data / "images" / name, photos / name)
    original = Image.open(photos / names[0]).convert("RGB")
    original.save(photos / "copy-q70.jpg", quality=70)
    w, h = original.size
    original.resize((w // 2, h // 2)).save(photos / "copy-half.jpg", quality=90)
    original.crop((w // 20, h // 20, w - w // 20, h - h // 20)).save(photos / "copy-crop.jpg", quality=90)
    for copy in ("copy-q70.jpg", "copy-half.jpg", "copy-crop.jpg"):
        os.utime(photos / copy, (2_000_000_000, 2_000_000_000))  # newer than the original
    env = {"PIXGREP_CACHE": str(mini_cache)}
    common = ["--catalog", tmp_path / "c.db", "--model", "pixgrep-mini", "--in", photos, "--json", "-k", "10"]
    collapsed = rows(_run(env, "a photo", *common))
    assert len(collapsed) == 6
    (group,) = [row for row in collapsed if "duplicates" in row]
    assert Path(group["path"]).name == names[0]
    assert sorted(Path(p).name for p in group["duplicates"]) == ["copy-half.jpg", "copy-q70.jpg"]
    assert len(rows(_run(env, "a photo", *common, "--no-dedup"))) == 8


def _run(env: dict, *args):
    import subprocess
    import sys

    full = dict(os.environ, **env)
    full.pop("PIXGREP_CATALOG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pixgrep.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=full,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return proc
