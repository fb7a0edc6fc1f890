"""The real `pixgrep` commands of composed retrieval: make-cir, train combiner, eval composed,
models add-combiner, and `pixgrep REF + TEXT` with a Combiner.

Plumbing runs with the tiny random-weight model (its scores mean nothing); the end-to-end check
that a composed query finds its target uses pixgrep-mini and its shipped Combiner on a few real
Flickr8k test photos.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import shared_data
from PIL import Image
from reliability_kit import one_line_error as kit_one_line_error
from reliability_kit import run_cli

COLOURS = [(230, 20, 20), (20, 200, 30), (30, 40, 220), (240, 230, 30), (120, 60, 10), (250, 250, 250)]
WORDS = ["red", "green", "blue", "yellow", "brown", "white"]
TIMES = ["dawn", "noon", "dusk", "night", "winter", "summer"]


def run(*args, check_rc=0, cwd=None):
    return run_cli(*args, check_rc=check_rc, cwd=cwd, timeout=600)


def one_line_error(proc, *needles):
    kit_one_line_error(proc, *needles, alone=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Six coloured pictures with captions, built into a CIRR-layout set by `eval make-cir`."""
    root = tmp_path_factory.mktemp("composedcli")
    images = root / "images"
    images.mkdir()
    rows = []
    for i, (rgb, word) in enumerate(zip(COLOURS, WORDS, strict=True)):
        Image.new("RGB", (40, 30), rgb).save(images / f"im{i}.jpg")
        rows += [
            (f"im{i}.jpg", f"a {word} square on a table"),
            (f"im{i}.jpg", f"plain {word} paint at {TIMES[i]}"),
        ]
    (root / "captions.tsv").write_text("".join(f"{name}\t{caption}\n" for name, caption in rows))
    for split, members in (("train", range(0, 6)), ("val", range(0, 6))):
        (root / f"{split}.txt").write_text("".join(f"im{i}.jpg\n" for i in members))
        proc = run(
            "eval", "make-cir", "--captions", root / "captions.tsv", "--split", root / f"{split}.txt",
            "--out", root / "cir", "--json",
        )  # fmt: skip
        assert json.loads(proc.stdout)["triplets"] == 6
    return root


def test_make_cir_writes_the_cirr_layout(data):
    captions = json.loads((data / "cir" / "captions" / "cap.rc2.val.json").read_text())
    assert set(captions[0]) == {"pairid", "reference", "target_hard", "target_soft", "caption"}
    split = json.loads((data / "cir" / "image_splits" / "split.rc2.val.json").read_text())
    assert split["im0"] == "./im0.jpg"


def test_eval_composed_json_and_errors(data, tiny_model_dir, tmp_path):
    catalog = tmp_path / "c.db"
    triplets = data / "cir" / "captions" / "cap.rc2.val.json"
    common = ["--images", data / "images", "--model", tiny_model_dir, "--catalog", catalog]
    proc = run("eval", "composed", "--triplets", triplets, "--fusion", "sum", *common, "--json")
    result = json.loads(proc.stdout)
    assert {"R@1", "R@5", "R@10", "R@50", "triplets", "images", "fusion"} <= set(result)
    assert result["triplets"] == 6 and result["images"] == 6 and result["fusion"] == "sum"
    assert result["R@5"] == 100.0  # 5 candidates once the reference is left out
    assert "Recall_subset@1" not in result  # Flickr8k-CIR has no img_set
    one_line_error(run("eval", "composed", "--triplets", triplets, *common, check_rc=None), "has no Combiner")
    one_line_error(
        run("eval", "composed", "--triplets", data / "nope.json", *common, check_rc=None), "no such file"
    )


@pytest.mark.torch  # training a Combiner needs torch (the runtime does not)
def test_train_combiner_then_add_it_to_a_model(data, tiny_model_dir, tmp_path):
    catalog, out = tmp_path / "c.db", tmp_path / "tiny-combiner.npz"
    common = ["--images", data / "images", "--model", tiny_model_dir, "--catalog", catalog]
    args = ["train", "combiner", "--triplets", data / "cir", *common, "--epochs", "3", "--projection", "8"]
    proc = run(*args, "--hidden", "8", "--seed", "1", "--out", out, "--json")
    summary = json.loads(proc.stdout)
    assert summary["train_triplets"] == 6 and summary["dev_triplets"] == 6
    assert set(summary["dev"]) == {"R@1", "R@5", "R@10", "R@50"}
    again = tmp_path / "again.npz"
    run(*args, "--hidden", "8", "--seed", "1", "--out", again, "--json")
    import numpy as np

    with np.load(out) as a, np.load(again) as b:  # reproducible for a seed
        assert all(np.array_equal(a[k], b[k]) for k in a.files if k != "meta")
    # the Combiner file is bound to the tiny model: a copy of its folder (same id) accepts it
    model = tmp_path / "models" / tiny_model_dir.name
    shutil.copytree(tiny_model_dir, model)
    run("models", "add-combiner", model, out)
    assert (model / "combiner.npz").is_file()
    proc = run("eval", "composed", "--triplets", data / "cir/captions/cap.rc2.val.json",
               "--images", data / "images", "--model", model, "--catalog", catalog, "--json")  # fmt: skip
    assert json.loads(proc.stdout)["fusion"] == "combiner"
    # `pixgrep REF + TEXT` now runs through it; --fusion sum gives the old ranking
    ref = data / "images" / "im0.jpg"
    search = ["--in", data / "images", "--model", model, "--catalog", catalog, "-f", "-k", "5"]
    with_combiner = run(ref, "+", "a blue square", *search).stdout.split()
    summed = run(ref, "+", "a blue square", *search, "--fusion", "sum").stdout.split()
    assert sorted(with_combiner) == sorted(summed) and len(summed) == 5  # same images, its own order
    plain = [*search[:3], tiny_model_dir, *search[4:]]
    one_line_error(run(ref, "+", "x", *plain, "--fusion", "combiner", check_rc=None), "has no Combiner")
    # ...and a file for another model is refused in one line
    other = tmp_path / "models" / "other"
    shutil.copytree(tiny_model_dir, other)
    (other / "config.json").write_text((other / "config.json").read_text() + " ")
    one_line_error(run("models", "add-combiner", other, out, check_rc=None), "was trained for model")
    one_line_error(
        run("models", "add-combiner", other, data / "captions.tsv", check_rc=None), "not a Combiner"
    )


def test_composed_query_finds_its_target_with_pixgrep_mini(tmp_path):
    """A Flickr8k-CIR test triplet, among 20 test photos: the Combiner ranks its target first (the
    query takes the Combiner path: pixgrep-mini has the shipped one, and --fusion combiner insists)."""
    from pixgrep.models.combiner import SHIPPED_MINI

    flickr = shared_data("flickr8k")
    if not SHIPPED_MINI.is_file():
        pytest.skip("no shipped pixgrep-mini Combiner")
    pytest.importorskip("torch", reason="building pixgrep-mini needs the mini extra")
    reference, target, text = E2E_TRIPLET
    test_split = sorted((flickr / "test.txt").read_text().split())
    names = [reference, target, *[n for n in test_split if n not in (reference, target)][:18]]
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in names:
        shutil.copy(flickr / "images" / name, folder / name)
    search = ["--in", folder, "--model", "pixgrep-mini", "--catalog", tmp_path / "c.db", "-f", "-k", "1"]
    found = run(folder / reference, "+", text, *search, "--fusion", "combiner").stdout.split()
    assert [Path(p).name for p in found] == [target]


# Flickr8k-CIR test triplet 12 (docs/composed.md): ranked 1st of 1000 by the shipped Combiner and
# 18th by the sum. The other 18 photos are the first test-split names, not picked around it.
E2E_TRIPLET = ("2340206885_58754a799a.jpg", "115684808_cb01227802.jpg", "people preparing ice fishing boat")
