"""NLLB-CLIP and XLM-R CLIP exports: open_clip models whose text tower is a transformers model
(configured from a small local config folder, --text-config) score real Flickr8k photos against
English, German and Chinese queries as open_clip does, within 0.002 of its cosine."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import shared_data
from hf_tokenizers import MULTILINGUAL, captions
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("timm")
pytest.importorskip("transformers")

import tiny_hf_towers  # noqa: E402
import tiny_siglip  # noqa: E402

from pixgrep.models import load_encoder  # noqa: E402

pytestmark = pytest.mark.torch  # exports with torch and compares with open_clip

MAX_SCORE_DIFF = 0.002
QUERIES = [
    "a dog running on the grass",
    "two children playing on the beach",
    "Ein Hund läuft über die grüne Wiese",
    "Zwei Kinder spielen am Strand",
    "一只狗在草地上奔跑",
    "两个孩子在海滩上玩",
]


@pytest.fixture(scope="module")
def photos():
    folder = shared_data("flickr8k")
    names = (folder / "test.txt").read_text().split()[:10]
    return [Image.open(folder / "images" / name).convert("RGB") for name in names]


@pytest.mark.parametrize("tower", [tiny_hf_towers.nllb, tiny_hf_towers.xlmr], ids=["nllb", "xlm-roberta"])
def test_scores_match_open_clip_in_three_languages(tmp_path, photos, tower):
    from open_clip.tokenizer import HFTokenizer

    from pixgrep.lab.hf_export import set_language

    texts = captions(1500, shared_data("flickr8k")) + MULTILINGUAL * 3 + QUERIES * 3
    built = tiny_hf_towers.build(tmp_path, tower, texts)
    model, out, tokenizer = built.model, built.folder, built.tokenizer
    preprocess_cfg = json.loads((out / "visual" / "preprocess_cfg.json").read_text())
    transform = tiny_siglip.reference_transform(preprocess_cfg)
    reference = HFTokenizer(str(tokenizer), context_length=77)
    encoder = load_encoder(str(out))
    if tower is tiny_hf_towers.nllb:
        set_language(reference, "deu_Latn")
        encoder.language = "de"
    ids = reference(QUERIES).numpy()
    np.testing.assert_array_equal(encoder.tokenize(QUERIES)["text"], ids)
    with torch.no_grad():
        images = model.encode_image(torch.stack([transform(p) for p in photos]), normalize=True).numpy()
        text_vectors = model.encode_text(torch.from_numpy(ids), normalize=True).numpy()
    expected = images @ text_vectors.T
    got = encoder.encode_images(photos) @ encoder.encode_texts(QUERIES).T
    assert np.ptp(expected) > 0.05
    assert np.abs(got - expected).max() <= MAX_SCORE_DIFF
