"""Reduced open_clip models whose text tower is a transformers model (NLLB-CLIP, XLM-R CLIP), for
export, parity and server tests: the tiny SigLIP vision tower of tests/tiny_siglip.py, a text tower
configured from a small local config folder (their real configs come from the hub), a tokenizer
trained here (tests/hf_tokenizers.py), random weights from a fixed seed saved as a checkpoint, and
the pixgrep export of it. Needs torch, open_clip, timm and transformers."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import tiny_siglip
from hf_tokenizers import nllb_folder, unigram_folder


def nllb(base: Path, texts: list[str]) -> tuple[Path, dict, dict]:
    """open_clip's nllb-clip-base-siglip layout: NLLB (M2M100) encoder, CLS pooling, linear
    projection, SigLIP vision tower and logit bias. (tokenizer folder, text_cfg, extra config)"""
    import transformers

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


def xlmr(base: Path, texts: list[str]) -> tuple[Path, dict, dict]:
    """open_clip's xlm-roberta-base-ViT-B-32 layout: XLM-RoBERTa encoder, mean pooling."""
    import transformers

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


@dataclass
class Built:
    model: object  # the open_clip model (eval mode) the export was made from
    folder: Path  # the exported model folder
    tokenizer: Path  # the tokenizer folder it was trained into


def build(base: Path, tower, texts: list[str]) -> Built:
    """The reduced model with `tower` (nllb or xlmr) text tower, its weights saved and exported
    into base/model."""
    import open_clip
    import torch

    from pixgrep.lab.export import _register_config, export_open_clip

    torch.set_num_threads(2)
    tiny_siglip.register()
    tokenizer, text_cfg, extra = tower(base, texts)
    arch = f"pixgrep-tiny-{tower.__name__}"
    config = {"embed_dim": 64, "custom_text": True, **extra}
    config.update(vision_cfg=copy.deepcopy(tiny_siglip.CONFIG["vision_cfg"]), text_cfg=text_cfg)
    _register_config(open_clip, arch, config)
    local_text_cfg = dict(text_cfg, hf_model_name=str(base / "text-config"), hf_model_pretrained=False)
    torch.manual_seed(tiny_siglip.SEED)
    model = open_clip.create_model(arch, pretrained=None, text_cfg=local_text_cfg).eval()
    torch.save(model.state_dict(), base / "weights.pt")
    folder = export_open_clip(
        arch,
        str(base / "weights.pt"),
        base / "model",
        tokenizer=str(tokenizer),
        text_config=str(base / "text-config"),
        preprocess=tiny_siglip.SIGLIP_PREPROCESS,
    )
    return Built(model, folder, tokenizer)
