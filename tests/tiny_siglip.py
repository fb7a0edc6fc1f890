"""A reduced SigLIP 2 for export and parity tests: open_clip's ViT-B-32-SigLIP2-256 layout (timm
ViT vision tower with a MAP head and no class token; text transformer without causal mask, pooled
at the last token, with projection bias; logit scale and bias) at toy size, with a Hugging Face
tokenizer trained here (tests/hf_tokenizers.py). Random weights from a fixed seed, saved as a
checkpoint beside the export, so open_clip can load the very same weights.
"""

from __future__ import annotations

import copy
from pathlib import Path

ARCH = "pixgrep-tiny-siglip2"
TIMM_NAME = "pixgrep_tiny_vit_siglip"
SEED = 4321
CHECKPOINT = "weights.pt"
VOCAB = 1000
CONFIG = {
    "embed_dim": 64,
    "init_logit_bias": -10,
    "custom_text": True,
    "vision_cfg": {
        "image_size": 64,
        "timm_model_name": TIMM_NAME,
        "timm_model_pretrained": False,
        "timm_pool": "map",
        "timm_proj": "none",
    },
    "text_cfg": {
        "context_length": 64,
        "vocab_size": VOCAB,
        "hf_tokenizer_name": "timm/ViT-B-32-SigLIP2-256",  # replaced by --tokenizer DIR
        "tokenizer_kwargs": {"clean": "canonicalize"},
        "width": 64,
        "heads": 2,
        "layers": 2,
        "no_causal_mask": True,
        "proj_bias": True,
        "pool_type": "last",
        "norm_kwargs": {"eps": 1e-6},
        "act_kwargs": {"approximate": "tanh"},
    },
}
# What open_clip's pretrained table gives every SigLIP / SigLIP 2 tag (the tiny arch has no tag).
SIGLIP_PREPROCESS = {
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "interpolation": "bicubic",
    "resize_mode": "squash",
}


def register() -> None:
    """Make the tiny timm vision tower and the tiny open_clip config known in this process."""
    import open_clip
    import timm
    from timm.models.vision_transformer import VisionTransformer

    if TIMM_NAME not in timm.list_models(TIMM_NAME):

        def tiny_vit(pretrained=False, **kwargs):
            for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
                kwargs.pop(key, None)
            args = dict(img_size=64, patch_size=16, embed_dim=64, depth=2, num_heads=2)
            args.update(class_token=False, global_pool="map", num_classes=0)
            args.update(kwargs)
            return VisionTransformer(**args)

        tiny_vit.__name__ = TIMM_NAME
        timm.models.register_model(tiny_vit)
    if open_clip.get_model_config(ARCH) is None:
        from pixgrep.lab.export import _register_config

        _register_config(open_clip, ARCH, copy.deepcopy(CONFIG))


def checkpoint(dest: Path) -> Path:
    """Random weights of the tiny arch from SEED, saved with torch.save."""
    import open_clip
    import torch

    register()
    torch.manual_seed(SEED)
    model = open_clip.create_model(ARCH, pretrained=None)
    torch.save(model.state_dict(), dest)
    return dest


def reference_transform(preprocess_cfg: dict):
    """open_clip's image transform for a model folder's preprocess_cfg.json values."""
    from open_clip.transform import PreprocessCfg, image_transform_v2

    keys = ("size", "mode", "mean", "std", "interpolation", "resize_mode", "fill_color")
    cfg = PreprocessCfg(**{k: preprocess_cfg[k] for k in keys if k in preprocess_cfg})
    return image_transform_v2(cfg, is_train=False)


def load_reference(checkpoint_file: Path, tokenizer_dir: Path, preprocess_cfg: dict):
    """(open_clip model, image transform of the folder's preprocess_cfg, open_clip HFTokenizer)."""
    import open_clip
    from open_clip.tokenizer import HFTokenizer

    register()
    model = open_clip.create_model(ARCH, pretrained=str(checkpoint_file))
    model.eval()
    transform = reference_transform(preprocess_cfg)
    text_cfg = CONFIG["text_cfg"]
    tokenizer = HFTokenizer(
        str(tokenizer_dir), context_length=text_cfg["context_length"], **text_cfg["tokenizer_kwargs"]
    )
    return model, transform, tokenizer
