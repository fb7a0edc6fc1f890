"""NLLB-CLIP and XLM-R CLIP exports: open_clip models whose text tower is a transformers model
(configured from a small local config folder, --text-config) score real Flickr8k photos against
English, German and Chinese queries as open_clip does, within 0.002 of its cosine."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from conftest import shared_data
from hf_tokenizers import MULTILINGUAL, captions, nllb_folder, unigram_folder
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")

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


def _nllb(base, texts):
    """open_clip's nllb-clip-base-siglip layout: NLLB (M2M100) encoder, CLS pooling, linear
    projection, SigLIP vision tower and logit bias."""
    tokenizer = nllb_folder(base / "tokenizer", texts)
    vocab = len(json.loads((tokenizer / "tokenizer.json").read_text())["model"]["vocab"]) + 5
    transformers.M2M100Config(
        vocab_size=vocab,
        d_model=32,
        encoder_layers=2,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=128,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
    ).save_pretrained(base / "text-config")
    text_cfg = {
        "hf_model_name": "facebook/nllb-200-distilled-600M",
        "hf_tokenizer_name": "facebook/nllb-200-distilled-600M",
        "hf_proj_type": "linear",
        "hf_pooler_type": "cls_pooler",
    }
    return tokenizer, text_cfg, {"init_logit_bias": -10}


def _xlmr(base, texts):
    """open_clip's xlm-roberta-base-ViT-B-32 layout: XLM-RoBERTa encoder, mean pooling."""
    tokenizer = unigram_folder(base / "tokenizer", texts)
    transformers.XLMRobertaConfig(
        vocab_size=600,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=80,
        pad_token_id=0,
        bos_token_id=0,
        eos_token_id=1,
    ).save_pretrained(base / "text-config")
    text_cfg = {
        "hf_model_name": "xlm-roberta-base",
        "hf_tokenizer_name": "xlm-roberta-base",
        "hf_pooler_type": "mean_pooler",
    }
    return tokenizer, text_cfg, {}


@pytest.fixture(scope="module")
def photos():
    folder = shared_data("flickr8k")
    names = (folder / "test.txt").read_text().split()[:10]
    return [Image.open(folder / "images" / name).convert("RGB") for name in names]


@pytest.mark.parametrize("tower", [_nllb, _xlmr], ids=["nllb", "xlm-roberta"])
def test_scores_match_open_clip_in_three_languages(tmp_path, photos, tower):
    import open_clip
    from open_clip.tokenizer import HFTokenizer
    from open_clip.transform import PreprocessCfg, image_transform_v2

    from pixgrep.lab.export import _register_config, export_open_clip
    from pixgrep.lab.hf_export import set_language

    torch.set_num_threads(2)
    tiny_siglip.register()
    texts = captions(1500, shared_data("flickr8k")) + MULTILINGUAL * 3 + QUERIES * 3
    tokenizer, text_cfg, extra = tower(tmp_path, texts)
    arch = f"pixgrep-tiny-{tower.__name__.strip('_')}"
    config = {"embed_dim": 64, "custom_text": True, **extra}
    config.update(vision_cfg=copy.deepcopy(tiny_siglip.CONFIG["vision_cfg"]), text_cfg=text_cfg)
    _register_config(open_clip, arch, config)
    local_text_cfg = dict(text_cfg, hf_model_name=str(tmp_path / "text-config"), hf_model_pretrained=False)
    torch.manual_seed(tiny_siglip.SEED)
    model = open_clip.create_model(arch, pretrained=None, text_cfg=local_text_cfg).eval()
    torch.save(model.state_dict(), tmp_path / "weights.pt")

    out = export_open_clip(
        arch,
        str(tmp_path / "weights.pt"),
        tmp_path / "model",
        tokenizer=str(tokenizer),
        text_config=str(tmp_path / "text-config"),
        preprocess=tiny_siglip.SIGLIP_PREPROCESS,
    )
    preprocess_cfg = json.loads((out / "visual" / "preprocess_cfg.json").read_text())
    keys = ("size", "mode", "mean", "std", "interpolation", "resize_mode", "fill_color")
    transform = image_transform_v2(PreprocessCfg(**{k: preprocess_cfg[k] for k in keys}), is_train=False)
    reference = HFTokenizer(str(tokenizer), context_length=77)
    encoder = load_encoder(str(out))
    if tower is _nllb:
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
