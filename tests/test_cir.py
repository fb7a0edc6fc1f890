"""Composed-retrieval data: CIRR and FashionIQ readers on fixtures in the published schemas, the
Flickr8k-CIR builder, and the composed Recall@K protocol (reference excluded, subset recall)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pixgrep.errors import PixgrepError
from pixgrep.lab.eval.cir import read_cir, split_files
from pixgrep.lab.eval.cir_build import build_triplets, captions_by_image, content_words, make_cir
from pixgrep.lab.eval.composed import CirFeatures, composed_recalls


def _write(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG fixture")  # the readers only check that files exist


@pytest.fixture
def cirr(tmp_path: Path) -> tuple[Path, Path]:
    """A two-triplet CIRR val split exactly as published (cap.rc2 / split.rc2, relative ./paths)."""
    root, images = tmp_path / "cirr", tmp_path / "img_raw"
    names = ["dev-0-0-img0", "dev-0-0-img1", "dev-1-0-img0", "dev-1-0-img1", "dev-2-0-img0"]
    split = {n: f"./dev/{n}.png" for n in names}
    for rel in split.values():
        _png(images / rel)
    _write(root / "image_splits" / "split.rc2.val.json", split)
    members = ["dev-0-0-img0", "dev-0-0-img1", "dev-1-0-img0", "dev-1-0-img1"]
    _write(
        root / "captions" / "cap.rc2.val.json",
        [
            {
                "pairid": 7,
                "reference": "dev-0-0-img0",
                "target_hard": "dev-1-0-img1",
                "target_soft": {"dev-1-0-img1": 1.0},
                "caption": "make it red",
                "img_set": {"id": 3, "members": members, "reference_rank": 0, "target_rank": 3},
            },
            {
                "pairid": 8,
                "reference": "dev-1-0-img0",
                "target_hard": "dev-2-0-img0",
                "target_soft": {"dev-2-0-img0": 1.0},
                "caption": "  at night ",
                "img_set": {"id": 4, "members": members, "reference_rank": 2, "target_rank": 1},
            },
        ],
    )
    _write(
        root / "captions" / "cap.rc2.test1.json",
        [
            {
                "pairid": 9,
                "reference": "dev-0-0-img0",
                "caption": "hidden target",
                "img_set": {"id": 5, "members": members},
            }
        ],
    )
    _write(root / "image_splits" / "split.rc2.test1.json", split)
    return root, images


def test_cirr_reader_reads_the_published_schema(cirr):
    root, images = cirr
    data = read_cir(root / "captions" / "cap.rc2.val.json", images)
    assert data.format == "cirr"
    assert data.split_file == (root / "image_splits" / "split.rc2.val.json").resolve()
    assert [t.reference for t in data.triplets] == ["dev-0-0-img0", "dev-1-0-img0"]
    assert [t.target for t in data.triplets] == ["dev-1-0-img1", "dev-2-0-img0"]
    assert data.triplets[1].text == "at night"
    assert data.triplets[0].pair_id == 7 and len(data.triplets[0].members or ()) == 4
    assert data.paths["dev-2-0-img0"] == images / "./dev/dev-2-0-img0.png"
    assert len(data.gallery) == 5
    hidden = read_cir(root / "captions" / "cap.rc2.test1.json", images)
    assert hidden.triplets[0].target is None  # test1 hides its targets


def test_cirr_reader_errors_name_the_problem(cirr, tmp_path):
    root, images = cirr
    captions = root / "captions" / "cap.rc2.val.json"
    with pytest.raises(PixgrepError, match="no such file"):
        read_cir(root / "captions" / "cap.rc2.nope.json", images)
    with pytest.raises(PixgrepError, match="not fashioniq|in cirr format"):
        read_cir(captions, images, fmt="fashioniq")
    (images / "dev" / "dev-2-0-img0.png").unlink()
    with pytest.raises(PixgrepError, match="1 image.* not found"):
        read_cir(captions, images)
    bad = _write(tmp_path / "x" / "captions" / "cap.rc2.val.json", [{"reference": "a", "caption": "b"}])
    _write(tmp_path / "x" / "image_splits" / "split.rc2.val.json", {"c": "./c.png"})
    with pytest.raises(PixgrepError, match="'a' is not in"):
        read_cir(bad, images)
    with pytest.raises(PixgrepError, match="neither CIRR"):
        read_cir(_write(tmp_path / "odd.json", [{"foo": 1}]), images)


def test_fashioniq_reader_reads_the_published_schema(tmp_path):
    root, images = tmp_path / "fiq", tmp_path / "fiq" / "images"
    for name in ("B001", "B002", "B003"):
        _png(images / f"{name}.png")
    _write(root / "image_splits" / "split.dress.val.json", ["B001", "B002", "B003"])
    _write(
        root / "captions" / "cap.dress.val.json",
        [
            {"target": "B002", "candidate": "B001", "captions": ["is red.", "has no sleeves"]},
            {"target": "B003", "candidate": "B002", "captions": ["is longer", "  "]},
        ],
    )
    data = read_cir(root / "captions" / "cap.dress.val.json", images)
    assert data.format == "fashioniq"
    assert [(t.reference, t.target) for t in data.triplets] == [("B001", "B002"), ("B002", "B003")]
    assert data.triplets[0].text == "is red and has no sleeves"
    assert data.triplets[1].text == "is longer"
    assert data.paths["B003"] == images / "B003.png"
    assert set(split_files(root)) == {"val.dress"}


def test_flickr8k_cir_builder_follows_the_spec(tmp_path):
    captions = {
        "a.jpg": ["A dog runs on the grass .", "A brown dog on grass"],
        "b.jpg": ["A dog runs on the beach .", "A dog near the sea"],
        "c.jpg": ["Two men play chess in a sunny park", "Men playing chess"],
        "d.jpg": ["Men play chess indoors", "Two men at a chess board"],
    }
    assert content_words("The dog's ball, isn't it?") == ["dog", "ball"]
    triplets, dropped = build_triplets(captions)
    by_target = {t.target: t for t in triplets}
    # a and b share {dog, runs}; the reference of a is b, and the new words come from a's caption
    # with the most words b never uses ("brown dog on grass": brown, grass)
    assert by_target["a.jpg"].reference == "b.jpg"
    assert by_target["a.jpg"].text == "brown grass"
    assert by_target["b.jpg"].reference == "a.jpg"
    assert by_target["b.jpg"].text == "near sea"
    assert by_target["c.jpg"].reference == "d.jpg" and by_target["c.jpg"].text == "sunny park"
    # d's captions add only "indoors" or "board" (one word each) over c: dropped
    assert "d.jpg" not in by_target and dropped == 1


def test_flickr8k_cir_builder_breaks_ties_by_file_name(tmp_path):
    captions = {"t.jpg": ["red car street"], "z.jpg": ["red bus"], "m.jpg": ["red van"]}
    triplets, _ = build_triplets({**captions, "t.jpg": ["red car street big"]})
    assert {t.target: t.reference for t in triplets}["t.jpg"] == "m.jpg"  # m and z tie; m < z


def test_make_cir_writes_cirr_files_the_reader_reads_back(tmp_path):
    tsv = tmp_path / "captions.tsv"
    rows = [
        ("a.jpg", "A dog runs on the grass ."),
        ("a.jpg", "A brown dog on grass"),
        ("b.jpg", "A dog runs on the beach ."),
        ("b.jpg.1", "A dog near the sea"),  # the Flickr8k quirk key counts for b.jpg
        ("c.jpg", "A cat sleeps"),
    ]
    tsv.write_text("image\tindex\tcaption\n" + "".join(f"{i}\t0\t{c}\n" for i, c in rows))
    split = tmp_path / "dev.txt"
    split.write_text("a.jpg\nb.jpg\n")
    out = tmp_path / "out"
    summary = make_cir(tsv, split, out)
    assert summary["triplets"] == 2 and summary["images"] == 2
    first = (out / "captions" / "cap.rc2.dev.json").read_bytes()
    make_cir(tsv, split, out)
    assert (out / "captions" / "cap.rc2.dev.json").read_bytes() == first  # deterministic
    assert json.loads((out / "image_splits" / "split.rc2.dev.json").read_text()) == {
        "a": "./a.jpg",
        "b": "./b.jpg",
    }
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / "images").mkdir(exist_ok=True)
        (tmp_path / "images" / name).write_bytes(b"x")
    data = read_cir(out / "captions" / "cap.rc2.dev.json", tmp_path / "images")
    assert [(t.reference, t.text, t.target) for t in data.triplets] == [
        ("b", "brown grass", "a"),
        ("a", "near sea", "b"),
    ]
    assert captions_by_image(rows, ["b.jpg"])["b.jpg"] == ["A dog runs on the beach .", "A dog near the sea"]


def test_composed_recalls_never_count_the_reference_and_rank_subsets():
    gallery = np.eye(4, dtype=np.float32)
    # query 0 points at its own reference (row 0) first, then at its target (row 2)
    queries = np.array([[0.9, 0.0, 0.4, 0.1], [0.0, 0.1, 0.2, 0.9]], np.float32)
    features = CirFeatures(
        gallery=gallery,
        texts=np.zeros((2, 4), np.float32),
        reference=np.array([0, 3]),
        target=np.array([2, 1]),
        members=[np.array([0, 1, 2]), np.array([3, 2, 1])],
    )
    r = composed_recalls(features, queries)
    assert r["R@1"] == 50.0  # query 0: target first once the reference is left out; query 1: second
    assert r["R@5"] == 100.0
    assert r["Recall_subset@1"] == 50.0 and r["Recall_subset@2"] == 100.0
