"""The real `pixgrep` command for eval, rank, probe and classify, with the tiny random-weight model.

The tiny model's scores mean nothing, so these check the plumbing: JSON keys and shapes, numbers
in range, determinism across runs, sidecars, and bad input -> one line on stderr and exit 2.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image
from reliability_kit import one_line_error as kit_one_line_error
from reliability_kit import run_cli

COLOURS = [(230, 20, 20), (20, 200, 30), (30, 40, 220), (240, 230, 30), (120, 60, 10), (250, 250, 250)]


def run(*args, check_rc=0, cwd=None):
    return run_cli(*args, check_rc=check_rc, cwd=cwd, timeout=300)


def one_line_error(proc, *needles):
    kit_one_line_error(proc, *needles, alone=True)


def picture(path: Path, rgb, size=(40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, rgb)
    for x in range(0, size[0], 7):  # a little structure so pictures differ beyond colour
        for y in range(size[1]):
            image.putpixel((x, y), (rgb[2], rgb[0], rgb[1]))
    image.save(path)
    return path


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalcli")
    images = root / "images"
    names = []
    for i, rgb in enumerate(COLOURS):
        names.append(picture(images / f"im{i}.jpg", rgb).name)
    (root / "captions.tsv").write_text(
        "image\tindex\tcaption\n"
        + "".join(
            f"{n}\t{j}\ta picture number {i} variant {j}\n" for i, n in enumerate(names) for j in range(3)
        ),
        "utf-8",
    )
    (root / "split.txt").write_text("\n".join(names[:4]) + "\n", "utf-8")
    classes = root / "classes"
    for c, name in enumerate(["red_thing", "green_thing", "blue_thing"]):
        for k in range(2):
            picture(classes / name / f"{k}.png", COLOURS[c], size=(32 + 8 * k, 32))
    return root


def test_eval_retrieval_json_and_determinism(tmp_path, tiny_model_dir, folders):
    args = ["eval", "retrieval", "--images", folders / "images", "--captions", folders / "captions.tsv"]
    args += ["--model", tiny_model_dir, "--catalog", tmp_path / "c.db", "--json"]
    first = json.loads(run(*args).stdout)
    for key in ("t2i_R@1", "t2i_R@5", "t2i_R@10", "i2t_R@1", "i2t_R@5", "i2t_R@10"):
        assert 0.0 <= first[key] <= 100.0
    assert first["t2i_R@1"] <= first["t2i_R@5"] <= first["t2i_R@10"] == 100.0  # only 6 images
    assert (first["images"], first["captions"]) == (6, 18)
    assert 1 <= first["t2i_median_rank"] <= 6 and 1 <= first["i2t_mean_rank"] <= 18
    assert json.loads(run(*args).stdout) == first  # second run: vectors from the catalog, same numbers

    split = json.loads(run(*args, "--split", folders / "split.txt").stdout)
    assert (split["images"], split["captions"]) == (4, 12)

    table = run(*args[:-1]).stdout
    assert "text -> image" in table and "image -> text" in table


def test_eval_retrieval_bad_input(tmp_path, tiny_model_dir, folders):
    base = ["eval", "retrieval", "--images", folders / "images", "--model", tiny_model_dir]
    base += ["--catalog", tmp_path / "c.db"]
    one_line_error(run(*base, "--captions", tmp_path / "none.tsv", check_rc=None), "no such file")
    unknown = tmp_path / "unknown.tsv"
    unknown.write_text("im0.jpg\tred\nghost.jpg\tnothing here\n", "utf-8")
    one_line_error(run(*base, "--captions", unknown, check_rc=None), "ghost.jpg", "not found")
    one_line_error(
        run("eval", "retrieval", "--images", tmp_path / "nope", "--captions", unknown, check_rc=None), "nope"
    )
    one_line_error(run("eval", "retrieval", "--images", folders / "images", check_rc=None), "--captions")


def test_eval_classes_json(tmp_path, tiny_model_dir, folders):
    args = ["eval", "classes", folders / "classes", "--model", tiny_model_dir, "--catalog", tmp_path / "c.db"]
    result = json.loads(run(*args, "--json").stdout)
    assert (result["classes"], result["images"]) == (3, 6)
    assert set(result["zeroshot_top1"]) == {"single", "ensemble"}
    for value in [result["retrieval_top1"], result["retrieval_top5"], *result["zeroshot_top1"].values()]:
        assert 0.0 <= value <= 100.0
    assert result["retrieval_top5"] == 100.0  # 3 classes x 2 images: the 5th image is always one of them
    assert result["zeroshot_top5"] == {"single": 100.0, "ensemble": 100.0}  # only 3 classes
    assert json.loads(run(*args, "--json").stdout) == result
    single = json.loads(run(*args, "--templates", "single", "--json").stdout)
    assert list(single["zeroshot_top1"]) == ["single"]
    assert single["zeroshot_top1"]["single"] == result["zeroshot_top1"]["single"]
    assert "zero-shot" in run(*args).stdout
    one_line_error(run(*args, "--templates", tmp_path / "missing.txt", check_rc=None), "missing.txt")
    one_line_error(run("eval", "classes", tmp_path / "absent", check_rc=None), "absent")


def test_rank(tiny_model_dir, folders, tmp_path):
    image = folders / "images" / "im0.jpg"
    captions = tmp_path / "more.txt"
    captions.write_text("a blue sky\n\na bowl of soup\n", "utf-8")
    args = ["rank", image, "a red square", "a green field", "--captions", captions, "--model", tiny_model_dir]
    result = json.loads(run(*args, "--json").stdout)
    rows = result["captions"]
    assert sorted(r["caption"] for r in rows) == [
        "a blue sky",
        "a bowl of soup",
        "a green field",
        "a red square",
    ]
    assert [r["cosine"] for r in rows] == sorted((r["cosine"] for r in rows), reverse=True)
    assert abs(sum(r["probability"] for r in rows) - 1.0) < 1e-6
    assert result["logit_scale"] > 0
    assert json.loads(run(*args, "--json").stdout) == result
    table = run(*args).stdout.splitlines()
    assert table[0].split() == ["cosine", "softmax", "caption"] and len(table) == 5  # CLIP: softmax
    one_line_error(run("rank", tmp_path / "no.jpg", "x", "--model", tiny_model_dir, check_rc=None), "no.jpg")
    one_line_error(run("rank", image, "--model", tiny_model_dir, check_rc=None), "no captions")
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image", "utf-8")
    one_line_error(run("rank", bad, "x", "--model", tiny_model_dir, check_rc=None), "bad.jpg")


def test_probe(tmp_path, tiny_model_dir, folders):
    args = ["probe", "a room", "a room with a lamp", "a room with a red lamp", "--in", folders / "images"]
    args += ["--model", tiny_model_dir, "--catalog", tmp_path / "c.db", "--tone", "messy, dingy"]
    result = json.loads(run(*args, "--json").stdout)
    levels = result["levels"]
    assert [row["level"] for row in levels] == [1, 2, 3]
    assert all(Path(row["best"]).parent == (folders / "images").resolve() for row in levels)
    assert levels[0]["change"] is None
    assert abs(levels[1]["change"] - (levels[1]["cosine"] - levels[0]["cosine"])) < 1e-9
    assert levels[2]["tone"]["query"] == "a room with a red lamp, messy, dingy"
    assert json.loads(run(*args, "--json").stdout) == result
    table = run(*args).stdout
    assert "best with tone: " in table and table.count("best: ") == 3
    one_line_error(run("probe", "x", "--in", tmp_path / "nowhere", check_rc=None), "nowhere")


def test_classify_and_xmp(tmp_path, tiny_model_dir, folders):
    photos = tmp_path / "photos"
    first = picture(photos / "one.jpg", COLOURS[0])
    picture(photos / "trip" / "two.png", COLOURS[2])
    hashes = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in photos.rglob("*.*")}
    args = [
        "classify",
        photos,
        "--labels",
        "cat, dog, beach,  sunset",
        "--top",
        "2",
        "--min-prob",
        "0",  # write both shown labels (the default writes only a clear winner)
        "--model",
        tiny_model_dir,
    ]
    result = json.loads(run(*args, "--json").stdout)
    assert result["labels"] == ["cat", "dog", "beach", "sunset"]
    assert [Path(r["path"]).name for r in result["images"]] == ["one.jpg", "two.png"]
    for row in result["images"]:
        probs = [x["probability"] for x in row["labels"]]
        assert len(probs) == 2 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-9
    assert not list(photos.rglob("*.xmp"))

    written = json.loads(run(*args, "--write-xmp", "--json").stdout)
    assert [r["labels"] for r in written["images"]] == [r["labels"] for r in result["images"]]
    from pixgrep.tagging import xmp

    for row in written["images"]:
        sidecar = Path(row["sidecar"])
        assert sidecar.name == Path(row["path"]).name + ".xmp"
        assert xmp.read_keywords(sidecar) == [x["label"] for x in row["labels"]]
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in hashes} == hashes  # images untouched
    run(*args, "--write-xmp")  # again: nothing duplicated
    assert len(xmp.read_keywords(first.with_name("one.jpg.xmp"))) == 2

    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("cat\ndog\n", "utf-8")
    out = run("classify", first, "--labels-file", labels_file, "--model", tiny_model_dir).stdout
    assert out.startswith(str(first)) and "%" in out


def test_classify_bad_input(tmp_path, tiny_model_dir, folders):
    image = folders / "images" / "im0.jpg"
    one_line_error(run("classify", image, "--labels", " , ", check_rc=None), "no labels")
    one_line_error(run("classify", tmp_path / "missing.jpg", "--labels", "a,b", check_rc=None), "missing.jpg")
    one_line_error(
        run("classify", image, "--labels-file", tmp_path / "none.txt", check_rc=None),
        "none.txt",
        "no such file",
    )
    one_line_error(run("classify", image, check_rc=None), "--labels")
    broken = tmp_path / "copy.jpg"
    broken.write_bytes(image.read_bytes())
    broken.with_name("copy.jpg.xmp").write_text("<oops", "utf-8")
    proc = run("classify", broken, "--labels", "a,b", "--write-xmp", "--model", tiny_model_dir, check_rc=None)
    one_line_error(proc, "copy.jpg.xmp", "left unchanged")
    assert broken.with_name("copy.jpg.xmp").read_text("utf-8") == "<oops"


def test_help_texts():
    for command in (["eval"], ["eval", "retrieval"], ["eval", "classes"], ["study", "rank"], ["classify"]):
        out = run(*command, "--help").stdout
        assert "usage: pixgrep " + " ".join(command) in out
    for old in ("rank", "probe"):  # the studies' earlier names lead to the study group
        assert f"usage: pixgrep study {old}" in run(old, "--help").stdout
