"""A SigLIP 2 export (tests/tiny_siglip.py: random weights saved as a checkpoint, a tokenizer
trained here) scores real Flickr8k photos against English, German and Chinese queries as open_clip
does, within 0.002 of its cosine; the folder carries SigLIP's preprocessing, scale and bias."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import shared_data
from hf_tokenizers import MULTILINGUAL, captions, unigram_folder
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("timm")
pytest.importorskip("transformers")

import tiny_siglip  # noqa: E402

from pixgrep.models import load_encoder  # noqa: E402

pytestmark = pytest.mark.torch  # exports with torch and compares with open_clip

MAX_SCORE_DIFF = 0.002
QUERIES = [
    "a dog running on the grass",
    "two children playing on the beach",
    "a man riding a bicycle",
    "Ein Hund läuft über die grüne Wiese",
    "Zwei Kinder spielen am Strand",
    "ein Mann fährt Fahrrad",
    "一只狗在草地上奔跑",
    "两个孩子在海滩上玩",
    "一个男人骑自行车",
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model folder, checkpoint, tokenizer folder) of the tiny SigLIP 2."""
    from pixgrep.lab.export import export_open_clip

    torch.set_num_threads(2)
    base = tmp_path_factory.mktemp("siglip")
    texts = captions(2000, shared_data("flickr8k")) + MULTILINGUAL * 3 + QUERIES * 3
    tokenizer = unigram_folder(base / "tokenizer", texts, vocab_size=tiny_siglip.VOCAB)
    checkpoint = tiny_siglip.checkpoint(base / tiny_siglip.CHECKPOINT)
    out = export_open_clip(
        tiny_siglip.ARCH,
        str(checkpoint),
        base / "model",
        tokenizer=str(tokenizer),
        preprocess=tiny_siglip.SIGLIP_PREPROCESS,
    )
    return out, checkpoint, tokenizer


@pytest.fixture(scope="module")
def photos():
    folder = shared_data("flickr8k")
    names = (folder / "test.txt").read_text().split()[:12]
    return [Image.open(folder / "images" / name).convert("RGB") for name in names]


def test_folder_carries_siglip_settings(exported):
    out, checkpoint, _ = exported
    config = json.loads((out / "config.json").read_text())
    state = torch.load(checkpoint)
    assert config["logit_scale"] == pytest.approx(float(state["logit_scale"].exp()), rel=1e-6)
    assert config["logit_bias"] == pytest.approx(float(state["logit_bias"]), rel=1e-6)
    assert config["text_cfg"]["tokenizer_kwargs"] == {"clean": "canonicalize"}
    preprocess = json.loads((out / "visual" / "preprocess_cfg.json").read_text())
    assert preprocess["mean"] == preprocess["std"] == [0.5, 0.5, 0.5]
    assert preprocess["resize_mode"] == "squash" and preprocess["size"] == [64, 64]
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert (out / "textual" / name).is_file()


def test_scores_match_open_clip_in_three_languages(exported, photos):
    out, checkpoint, tokenizer = exported
    preprocess_cfg = json.loads((out / "visual" / "preprocess_cfg.json").read_text())
    model, transform, reference_tokenizer = tiny_siglip.load_reference(checkpoint, tokenizer, preprocess_cfg)
    encoder = load_encoder(str(out))

    ids = reference_tokenizer(QUERIES).numpy()
    np.testing.assert_array_equal(encoder.tokenize(QUERIES)["text"], ids)
    with torch.no_grad():
        images = model.encode_image(torch.stack([transform(p) for p in photos]), normalize=True).numpy()
        texts = model.encode_text(torch.from_numpy(ids), normalize=True).numpy()
    expected = images @ texts.T
    got = encoder.encode_images(photos) @ encoder.encode_texts(QUERIES).T
    assert np.ptp(expected) > 0.05  # the scores differ between pairs: the comparison means something
    assert np.abs(got - expected).max() <= MAX_SCORE_DIFF


def test_hub_tokenizer_name_needs_a_folder_offline(tmp_path):
    """Without --tokenizer the export tries the hub name; offline that fails with one clear line."""
    import os

    from pixgrep.errors import PixgrepError
    from pixgrep.lab.hf_export import write_hf_tokenizer

    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        with pytest.raises(PixgrepError, match="--tokenizer DIR"):
            write_hf_tokenizer(str(tmp_path / "absent"), tmp_path / "textual", {}, nllb=False)
    finally:
        del os.environ["HF_HUB_OFFLINE"]


def test_rank_and_classify_give_siglip_sigmoid_probabilities(exported, photos, tmp_path):
    """rank and classify score each caption / label on its own, as SigLIP was trained: open_clip's
    sigmoid(logit_scale * cosine + logit_bias), not a softmax over them."""
    from pixgrep.lab.studies import rank_captions
    from pixgrep.models.base import unit_rows
    from pixgrep.tagging.classify import classify_paths

    out, checkpoint, tokenizer = exported
    preprocess_cfg = json.loads((out / "visual" / "preprocess_cfg.json").read_text())
    model, transform, reference_tokenizer = tiny_siglip.load_reference(checkpoint, tokenizer, preprocess_cfg)
    encoder = load_encoder(str(out))
    photo = tmp_path / "photo.png"
    photos[0].save(photo)
    result = rank_captions(encoder, photo, QUERIES)
    assert result["probability_kind"] == "sigmoid" and result["logit_bias"] == pytest.approx(-10.0)
    with torch.no_grad():
        image = model.encode_image(transform(photos[0])[None], normalize=True)
        texts = model.encode_text(reference_tokenizer(QUERIES), normalize=True)
        expected = torch.sigmoid(model.logit_scale.exp() * image @ texts.T + model.logit_bias)[0].numpy()
    got = {row["caption"]: row["probability"] for row in result["captions"]}
    for query, probability in zip(QUERIES, expected, strict=True):
        assert got[query] == pytest.approx(float(probability), rel=1e-3, abs=1e-7)
    assert 0.0 <= min(got.values()) and max(got.values()) <= 1.0
    assert abs(sum(got.values()) - 1.0) > 0.05  # each on its own: they do not sum to 1

    rows = classify_paths(
        encoder, [photo], ["dog", "beach", "bicycle"], top=3, templates=["a photo of a {}."]
    )
    assert rows[0]["probability_kind"] == "sigmoid"
    vectors = unit_rows(encoder.encode_texts([f"a photo of a {x}." for x in ("dog", "beach", "bicycle")]))
    cosines = unit_rows(encoder.encode_images([photos[0]])) @ vectors.T
    sigmoid = 1 / (1 + np.exp(-(encoder.logit_scale * cosines[0] + encoder.logit_bias)))
    assert sorted(x["probability"] for x in rows[0]["labels"]) == pytest.approx(sorted(sigmoid.tolist()))


def test_command_line_export_then_index_and_search_match_open_clip(exported, tmp_path):
    """`pixgrep models export ... --tokenizer DIR`, then index real photos and search in three
    languages: each result's score is open_clip's cosine for that photo and query (within 0.002;
    the catalog stores float16 vectors)."""
    import shutil

    import pixgrep
    from pixgrep.cli import main

    _, checkpoint, tokenizer = exported
    out = tmp_path / "cli-model"
    args = [
        "models",
        "export",
        tiny_siglip.ARCH,
        "--pretrained",
        str(checkpoint),
        "--tokenizer",
        str(tokenizer),
    ]
    assert main([*args, "--out", str(out)]) == 0
    preprocess_cfg = json.loads((out / "visual" / "preprocess_cfg.json").read_text())
    model, transform, reference_tokenizer = tiny_siglip.load_reference(checkpoint, tokenizer, preprocess_cfg)

    folder = shared_data("flickr8k")
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in (folder / "test.txt").read_text().split()[100:112]:
        shutil.copy(folder / "images" / name, photos / name)
    queries = [QUERIES[0], QUERIES[3], QUERIES[6]]  # English, German, Chinese
    with pixgrep.open_catalog(tmp_path / "catalog.db", str(out)) as catalog:
        catalog.index([photos])
        results = {q: catalog.search(q, k=12) for q in queries}
    with torch.no_grad():
        for query, hits in results.items():
            assert len(hits) == 12
            text = model.encode_text(reference_tokenizer([query]), normalize=True)
            for hit in hits:
                image = Image.open(hit.path).convert("RGB")
                vector = model.encode_image(transform(image)[None], normalize=True)
                assert abs(hit.score - float(vector @ text.T)) <= MAX_SCORE_DIFF, (query, hit.path)
