"""The eval pipelines end to end through a real catalog, with an encoder whose answers are known.

ColourEncoder is FakeEncoder (image vector = its 8x8 pixels) whose text tower maps a colour word
to the vector of a solid image of that colour, so a caption "red" matches red pictures: every
expected number below follows from the pictures' colours.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from fakes import FakeEncoder
from PIL import Image

import pixgrep
from pixgrep.errors import PixgrepError
from pixgrep.lab.eval.classes import run_classes
from pixgrep.lab.eval.datasets import build_caption_set, read_captions, read_class_folder, read_labels
from pixgrep.lab.eval.retrieval import run_retrieval
from pixgrep.lab.studies import probe, rank_captions
from pixgrep.tagging.classify import classify_paths

COLOURS = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "white": (255, 255, 255),
}


class ColourEncoder(FakeEncoder):
    def encode_texts(self, texts):
        self.texts_encoded += len(texts)
        rows = []
        for text in texts:
            words = [w for w in re.findall(r"[a-z]+", text.lower()) if w in COLOURS]
            if not words:
                return super().encode_texts(texts)
            pixels = np.stack([self.preprocess(Image.new("RGB", (8, 8), COLOURS[w])) for w in words])
            flat = pixels.reshape(len(words), -1) - 0.5 + 1e-3
            row = (flat / np.linalg.norm(flat, axis=1, keepdims=True)).mean(axis=0)
            rows.append(row / np.linalg.norm(row))
        return np.asarray(rows, np.float32)


def solid(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 16), rgb).save(path)
    return path


@pytest.fixture
def catalog(tmp_path):
    encoder = ColourEncoder()
    with pixgrep.open_catalog(tmp_path / "catalog.db", encoder=encoder) as cat:
        yield cat


# -- retrieval ---------------------------------------------------------------------------------


def test_retrieval_exact_numbers_and_reuse(tmp_path, catalog):
    images = tmp_path / "images"
    solid(images / "r.png", (250, 10, 10))
    solid(images / "g.png", (10, 240, 10))
    solid(images / "b.png", (20, 20, 230))
    solid(images / "y.png", (240, 230, 20))
    captions = tmp_path / "captions.tsv"
    captions.write_text(
        "image\tindex\tcaption\n"
        "r.png\t0\ta red square\n"
        "r.png\t1\tsomething green\n"  # wrong: green ranks g.png first, r.png later
        "g.png\t0\tgreen\n"
        "b.png\t0\tblue\n"
        "y.png\t0\tyellow\n"
        "y.png.1\t1\tyellow again\n",  # the Flickr8k quirk key: read as y.png
        "utf-8",
    )
    result = run_retrieval(catalog, images, captions)
    assert result["images"] == 4 and result["captions"] == 6
    assert result["caption_keys_remapped"] == 1
    # t2i: 5 of 6 captions find their image first; "something green" does not
    assert result["t2i_R@1"] == pytest.approx(500 / 6)
    assert result["t2i_R@5"] == 100.0
    # i2t: r.png, b.png, y.png find one of their captions first; for g.png its "green" ties
    # with r.png's "something green" (same text vector), and ties count against the model
    assert result["i2t_R@1"] == 75.0
    assert result["i2t_R@5"] == 100.0
    assert result["i2t_mean_rank"] == pytest.approx(5 / 4)
    assert catalog.encoder.images_encoded == 4

    again = run_retrieval(catalog, images, captions)
    assert again == result  # deterministic
    assert catalog.encoder.images_encoded == 4  # image vectors came from the catalog


def test_retrieval_split_and_bad_captions(tmp_path, catalog):
    images = tmp_path / "images"
    for name, rgb in (("r.png", (250, 0, 0)), ("g.png", (0, 250, 0)), ("b.png", (0, 0, 250))):
        solid(images / name, rgb)
    captions = tmp_path / "c.tsv"
    captions.write_text("r.png\tred\ng.png\tgreen\nb.png\tblue\nnone.png\tmissing\n", "utf-8")
    skipped = run_retrieval(catalog, images, captions)  # a key naming no file: skipped, counted
    assert (skipped["images"], skipped["captions"], skipped["caption_keys_skipped"]) == (3, 3, 1)
    wrong = tmp_path / "wrong.tsv"  # most keys name no file: the wrong folder, refused
    wrong.write_text("r.png\tred\nx.png\tx\ny.png\ty\n", "utf-8")
    with pytest.raises(PixgrepError, match="2 of 3 image.* not found .*x.png"):
        run_retrieval(catalog, images, wrong)
    split = tmp_path / "split.txt"
    split.write_text("r.png\ng.png\n", "utf-8")
    result = run_retrieval(catalog, images, captions, split)
    summary = (result["images"], result["captions"], result["t2i_R@1"], result["i2t_R@1"])
    assert summary == (2, 2, 100.0, 100.0)
    split.write_text("r.png\nnot-there.png\n", "utf-8")
    with pytest.raises(PixgrepError, match="split image"):
        run_retrieval(catalog, images, captions, split)


def test_caption_formats(tmp_path):
    images = tmp_path / "im"
    solid(images / "a.jpg", (1, 2, 3))
    solid(images / "b.jpg", (3, 2, 1))
    token = tmp_path / "token.txt"
    token.write_text("a.jpg#0\tone\na.jpg#1\ttwo\nb.jpg#0\tthree\n", "utf-8")
    assert read_captions(token) == [("a.jpg", "one"), ("a.jpg", "two"), ("b.jpg", "three")]
    coco = tmp_path / "coco.json"
    coco.write_text(
        json.dumps(
            {
                "images": [{"id": 7, "file_name": "a.jpg"}, {"id": 9, "file_name": "b.jpg"}],
                "annotations": [
                    {"image_id": 9, "caption": "three "},
                    {"image_id": 7, "caption": "one"},
                ],
            }
        ),
        "utf-8",
    )
    assert read_captions(coco) == [("b.jpg", "three"), ("a.jpg", "one")]
    karpathy = tmp_path / "k.json"
    karpathy.write_text(
        json.dumps({"images": [{"filename": "a.jpg", "sentences": [{"raw": "x"}, {"raw": "y"}]}]}), "utf-8"
    )
    assert read_captions(karpathy) == [("a.jpg", "x"), ("a.jpg", "y")]
    data = build_caption_set(images, read_captions(coco))
    assert [p.name for p in data.images] == ["b.jpg", "a.jpg"] and data.caption_image == [0, 1]
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", "utf-8")
    with pytest.raises(PixgrepError, match="invalid JSON"):
        read_captions(bad)
    with pytest.raises(PixgrepError, match="no such file"):
        read_captions(tmp_path / "absent.tsv")
    one_col = tmp_path / "one.tsv"
    one_col.write_text("a.jpg\n", "utf-8")
    with pytest.raises(PixgrepError, match="line 1"):
        read_captions(one_col)


def test_flickr8k_test_split_matches_protocol():
    from conftest import shared_data

    root = shared_data("flickr8k")
    data = build_caption_set(
        root / "images",
        read_captions(root / "captions.tsv"),
        [line.strip() for line in (root / "test.txt").read_text().splitlines() if line.strip()],
    )
    assert len(data.images) == 1000 and len(data.captions) == 5000
    assert np.bincount(data.caption_image).tolist() == [5] * 1000
    # 2258277193_586949ec62.jpg (captions under it and under the quirk key `.jpg.1`) has no
    # file in this copy and is in no split: without a split both keys are skipped and counted
    whole = build_caption_set(root / "images", read_captions(root / "captions.tsv"))
    assert sorted(whole.skipped) == ["2258277193_586949ec62.jpg", "2258277193_586949ec62.jpg.1"]
    assert len(whole.images) == len({p.name for p in whole.images}) == 8091
    train = build_caption_set(
        root / "images", read_captions(root / "captions.tsv"), (root / "train.txt").read_text().split()
    )
    assert len(train.images) == 6000 and len(train.captions) == 30000


# -- classes -----------------------------------------------------------------------------------


def _class_folder(root):
    solid(root / "red" / "r1.png", (250, 10, 10))
    solid(root / "red" / "r2.png", (200, 40, 30))
    solid(root / "red" / "odd.png", (10, 10, 250))  # a blue picture filed under red
    solid(root / "green" / "g1.png", (10, 250, 10))
    solid(root / "green" / "deeper" / "g2.png", (30, 200, 40))
    solid(root / "blue" / "b1.png", (10, 10, 250))  # identical to odd.png: a tie for "blue"
    solid(root / "blue" / "b2.png", (40, 30, 200))
    solid(root / "blue" / "@eaDir" / "b1.png", (200, 0, 0))  # a NAS thumbnail store: not a picture
    solid(root / "green" / ".hidden.png", (200, 0, 0))
    return root


def test_classes_exact_numbers(tmp_path, catalog):
    folder = _class_folder(tmp_path / "classes")
    result = run_classes(catalog, folder, ["single", "ensemble"])
    assert (result["classes"], result["images"]) == (3, 7)
    # zero-shot: every picture but odd.png gets its folder's colour
    assert result["zeroshot_top1"] == pytest.approx({"single": 600 / 7, "ensemble": 600 / 7})
    assert result["zeroshot_top5"] == {"single": 100.0, "ensemble": 100.0}
    # retrieval: "blue" ties b1.png with odd.png (labelled red): pessimistic rank 2
    assert result["retrieval_top1"] == pytest.approx(200 / 3)
    assert result["retrieval_top5"] == 100.0
    assert result["templates"] == {"single": 1, "ensemble": 80}


def test_class_files_named_id_class(tmp_path, catalog):
    folder = tmp_path / "flat"
    solid(folder / "n001_red.png", (250, 0, 0))
    solid(folder / "n002_light_green.png", (0, 250, 0))
    solid(folder / "n003_red.png", (240, 0, 0))  # same name, other id: one class
    data = read_class_folder(folder)
    assert data.class_names == ["light green", "red"] and data.labels == [0, 1, 1]
    assert [p.name for p in data.images] == ["n002_light_green.png", "n001_red.png", "n003_red.png"]
    templates = tmp_path / "t.txt"
    templates.write_text("# mine\na {} thing\nthe colour {}\n", "utf-8")
    result = run_classes(catalog, folder, [str(templates)])
    assert result["zeroshot_top1"] == {str(templates): 100.0}
    solid(folder / "nodash.png", (1, 1, 1))
    with pytest.raises(PixgrepError, match="ID_class_name"):
        read_class_folder(folder)


def test_imagenet_sample_has_998_named_classes():
    folder = shared_data_path("imagenet-sample")
    data = read_class_folder(folder)
    assert len(data.images) == 1000 and len(data.class_names) == 998
    assert "tench" in data.class_names and "great white shark" in data.class_names


def shared_data_path(name):
    from conftest import shared_data

    return shared_data(name)


# -- rank, probe, classify ---------------------------------------------------------------------


def test_rank_sorts_by_cosine_with_softmax(tmp_path):
    image = solid(tmp_path / "x.png", (240, 20, 20))
    encoder = ColourEncoder()
    result = rank_captions(encoder, image, ["blue", "red", "a red thing", "green"])
    names = [row["caption"] for row in result["captions"]]
    assert names[:2] == ["red", "a red thing"]  # equal cosine: given order kept
    cosines = [row["cosine"] for row in result["captions"]]
    assert cosines == sorted(cosines, reverse=True)
    probs = np.array([row["probability"] for row in result["captions"]])
    assert probs.sum() == pytest.approx(1.0)
    expected = np.exp(100 * np.array(cosines))
    assert probs == pytest.approx(expected / expected.sum())
    with pytest.raises(PixgrepError, match="no such file"):
        rank_captions(encoder, tmp_path / "none.png", ["red"])
    with pytest.raises(PixgrepError, match="no captions"):
        rank_captions(encoder, image, [" "])


def test_probe_levels_and_tone(tmp_path, catalog):
    folder = tmp_path / "scene"
    solid(folder / "red.png", (250, 0, 0))
    solid(folder / "yellow.png", (250, 250, 0))
    solid(folder / "white.png", (250, 250, 250))
    solid(tmp_path / "elsewhere" / "green.png", (0, 250, 0))
    catalog.index([folder, tmp_path / "elsewhere"])
    result = probe(catalog, ["red", "red and yellow", "green"], [folder.resolve()], tone="white")
    rows = result["levels"]
    assert [r["best"].rsplit("/", 1)[1] for r in rows] == ["red.png", "yellow.png", "yellow.png"]
    assert rows[0]["cosine"] > 0.99 and rows[0]["change"] is None
    assert rows[1]["change"] == pytest.approx(rows[1]["cosine"] - rows[0]["cosine"])
    tone = rows[0]["tone"]
    assert tone["query"] == "red, white"
    assert tone["change"] == pytest.approx(tone["cosine"] - rows[0]["cosine"]) and tone["change"] < 0
    with pytest.raises(PixgrepError):
        probe(catalog, ["red", " "], [folder.resolve()])


def test_classify_labels(tmp_path, capsys, cli_logging):
    a = solid(tmp_path / "photos" / "a.png", (250, 0, 0))
    solid(tmp_path / "photos" / "sub" / "b.png", (0, 0, 250))
    (tmp_path / "photos" / "sub" / "broken.png").write_bytes(b"not a png")
    rows = classify_paths(ColourEncoder(), [tmp_path / "photos"], ["blue", "red", "yellow"], top=2)
    assert [r["path"].rsplit("/", 1)[1] for r in rows] == ["a.png", "b.png"]  # broken one skipped
    assert [x["label"] for x in rows[0]["labels"]] == ["red", "yellow"]  # yellow is nearer red than blue
    assert "warning: skipped" in capsys.readouterr().err
    assert rows[0]["labels"][0]["probability"] > 0.9 and rows[1]["labels"][0]["label"] == "blue"
    assert not (tmp_path / "photos" / "a.png.xmp").exists()
    with pytest.raises(PixgrepError, match="broken.png"):
        classify_paths(ColourEncoder(), [tmp_path / "photos" / "sub" / "broken.png"], ["red"])
    with pytest.raises(PixgrepError, match="no such file"):
        classify_paths(ColourEncoder(), [tmp_path / "nothing.jpg"], ["red"])
    assert a.exists()


def test_classify_writes_xmp_and_leaves_images_alone(tmp_path):
    import hashlib

    from pixgrep.tagging import xmp

    a = solid(tmp_path / "a.png", (250, 0, 0))
    before = hashlib.sha256(a.read_bytes()).hexdigest()
    labels = ["red", "blue", "green"]
    rows = classify_paths(ColourEncoder(), [a], labels, top=2, write_xmp=True, min_probability=0.5)
    assert rows[0]["keywords_added"] == ["red"]  # blue is under 0.5
    assert xmp.read_keywords(tmp_path / "a.png.xmp") == ["red"]
    assert hashlib.sha256(a.read_bytes()).hexdigest() == before


def test_labels_parsing(tmp_path):
    assert read_labels(" cat, dog ,,cat,  red  fox") == ["cat", "dog", "red fox"]
    f = tmp_path / "labels.txt"
    f.write_text("# animals\ncat\n\nsea lion\n", "utf-8")
    assert read_labels(file=f) == ["cat", "sea lion"]
    with pytest.raises(PixgrepError, match="no labels"):
        read_labels(" , ")


def test_templates():
    from pixgrep.tagging.templates import SINGLE_TEMPLATE, imagenet_templates, templates_for

    templates = imagenet_templates()
    assert len(templates) == 80 == len(set(templates))
    assert all(t.count("{}") == 1 for t in templates)
    assert templates[0] == "a bad photo of a {}." and "a photo of a {}." in templates
    assert templates_for("single") == [SINGLE_TEMPLATE] and templates_for("ensemble") == templates
    with pytest.raises(PixgrepError, match="no such file"):
        templates_for("no-such-templates.txt")


def test_batched_text_encoding_keeps_order(monkeypatch):
    from pixgrep.tagging import zeroshot

    monkeypatch.setattr(zeroshot, "TEXT_BATCH", 2)
    texts = ["a much longer caption here", "b", "medium text", "cc", "the longest caption of them all", "d"]
    encoder = FakeEncoder()
    calls = []
    batched = zeroshot.encode_texts_batched(encoder, texts, calls.append)
    np.testing.assert_array_equal(batched, FakeEncoder().encode_texts(texts))
    assert calls == [2, 2, 2]
    assert zeroshot.encode_texts_batched(encoder, []).shape == (0, encoder.dim)
