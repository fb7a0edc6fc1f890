"""End to end: the real `pixgrep` command with --near/--camera/--tag/--place on a folder of real
camera files and sidecars (tests/metadata_samples.py), with the tiny random-weight model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from metadata_samples import DARKTABLE, build_photo_folder
from test_search_cli import pixgrep


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir):
    base = tmp_path_factory.mktemp("meta-cli")
    root = build_photo_folder(base / "photos")
    catalog = base / "c.db"
    first = pixgrep("index", root, "--catalog", catalog, "--model", tiny_model_dir, "--json", check_rc=0)
    assert json.loads(first.stdout)["encoded"] == 9
    return {"root": root, "catalog": catalog, "model": tiny_model_dir}


def found(world, *args, rc=0) -> list[str]:
    proc = pixgrep(
        *args, "-n", "-f", "--in", world["root"], "--catalog", world["catalog"], "--model", world["model"],
        check_rc=rc,
    )  # fmt: skip
    return [os.path.basename(line) for line in proc.stdout.splitlines()]


def test_each_filter_alone_lists_exactly_the_expected_images(world):
    assert found(world, "--near", "Florence") == ["87_OSError.jpg"]
    assert sorted(found(world, "--near", "Florence, 80")) == [
        "87_OSError.jpg",
        "DSCN0010.jpg",
        "DSCN0012.jpg",
    ]
    assert found(world, "--near", "43.7856,11.2346,1") == ["87_OSError.jpg"]
    assert found(world, "--camera", "canon eos") == ["Canon_40D.jpg"]
    assert sorted(found(world, "--camera", "nikon")) == [
        "87_OSError.jpg", "DSCN0010.jpg", "DSCN0012.jpg", "Nikon_D70.jpg",
    ]  # fmt: skip
    assert found(world, "--tag", "Blue Square") == ["BlueSquare.jpg"]
    assert found(world, "--tag", "places") == ["bridge.jpg"]
    assert found(world, "--tag", "holi*") == ["anna.jpg"]
    assert sorted(found(world, "--place", "italy")) == ["87_OSError.jpg", "DSCN0010.jpg", "DSCN0012.jpg"]
    assert found(world, "--place", "Spain") == ["iphone_hdr_NO.jpg"]
    assert found(world, "--tag", "no-such-tag", rc=1) == []


def test_listing_is_newest_first_and_combines_with_dates(world):
    listed = found(world, "--camera", "nikon")
    # DSCN0010/12 were taken 2008-10-22, 87_OSError 2005-12-14, the D70 sample 2008-03-15 or so:
    # whatever the dates, the command's order must be the catalog's capture times, newest first.
    proc = pixgrep(
        "--camera", "nikon", "-n", "--json", "--in", world["root"], "--catalog", world["catalog"],
        "--model", world["model"], check_rc=0,
    )  # fmt: skip
    times = [json.loads(line)["taken_at"] for line in proc.stdout.splitlines()]
    assert [t for t in times if t] == sorted((t for t in times if t), reverse=True)
    assert len(listed) == 4
    assert found(world, "--camera", "nikon", "--before", "2006") == ["87_OSError.jpg"]


def test_filters_combine_with_a_query_inside_the_ranking(world):
    # k=2 of the 3 Italian photos: the filter applies before the top-k, so both come from them
    got = found(world, "a bridge", "--place", "italy", "-k", "2")
    assert len(got) == 2 and set(got) <= {"87_OSError.jpg", "DSCN0010.jpg", "DSCN0012.jpg"}
    assert found(world, "a bridge", "--camera", "canon", "--tag", "blue*", rc=1) == []


def test_bad_filters_are_one_line_errors(world):
    for args, message in (
        (("--near", "Xyzzyville"), "unknown place"),
        (("--near", "95,10"), "latitude"),
        (("--camera", " "), "--camera needs some text"),
        ((), "give a query"),
    ):
        proc = pixgrep(*args, "-n", "--in", world["root"], "--catalog", world["catalog"], check_rc=2)
        assert message in proc.stderr and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_sidecar_edit_is_picked_up_by_the_next_run_without_encoding(tmp_path: Path, tiny_model_dir):
    root = build_photo_folder(tmp_path / "photos")
    catalog = tmp_path / "c.db"
    common = ("--catalog", catalog, "--model", tiny_model_dir)
    pixgrep("index", root, *common, check_rc=0)
    sidecar = root / "bridge.jpg.xmp"
    sidecar.write_text(DARKTABLE.replace("<rdf:li>bridge</rdf:li>", "<rdf:li>sunset</rdf:li>"), "utf-8")
    os.utime(sidecar, ns=(1, 2 * 10**18))
    second = pixgrep("index", root, *common, "--json", check_rc=0)
    assert json.loads(second.stdout)["encoded"] == 0
    assert [os.path.basename(p) for p in pixgrep("--tag", "sunset", "-n", "-f", "--in", root, *common,
                                                 check_rc=0).stdout.split()] == ["bridge.jpg"]  # fmt: skip
    pixgrep("--tag", "bridge", "-n", "-f", "--in", root, *common, check_rc=1)


def test_stats_counts_gps_cameras_keywords(world):
    proc = pixgrep("stats", "--catalog", world["catalog"], "--json", check_rc=0)
    stats = json.loads(proc.stdout)
    assert (stats["with_gps"], stats["with_camera"], stats["with_keywords"]) == (5, 6, 3)
    text = pixgrep("stats", "--catalog", world["catalog"], check_rc=0).stdout
    assert "gps       5" in text and "camera    6" in text and "keywords  3" in text


def test_keywords_written_by_classify_write_xmp_are_searchable(tmp_path: Path, tiny_model_dir):
    from metadata_samples import plain_jpeg

    root = tmp_path / "photos"
    root.mkdir()
    image = plain_jpeg(root / "pet.jpg", 3)
    plain_jpeg(root / "other.jpg", 4)
    common = ("--catalog", tmp_path / "c.db", "--model", tiny_model_dir)
    pixgrep("index", root, *common, check_rc=0)
    # both labels written (--min-prob 0): the random-weight model has no clear winner
    pixgrep("classify", image, "--labels", "tabby cat,sofa", "--top", "2", "--write-xmp", "--min-prob", "0",
            "--model", tiny_model_dir, check_rc=0)  # fmt: skip
    assert (root / "pet.jpg.xmp").exists()
    second = pixgrep("index", root, *common, "--json", check_rc=0)
    assert json.loads(second.stdout)["encoded"] == 0
    listed = pixgrep("--tag", "tabby cat", "-n", "-f", "--in", root, *common, check_rc=0).stdout.split()
    assert [os.path.basename(p) for p in listed] == ["pet.jpg"]
