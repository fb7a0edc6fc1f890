"""A MobileCLIP 2 export (reduced: timm's MCi / FastViT image tower at toy size, a CLIP text tower
without causal mask; random weights saved as a checkpoint) scores real Flickr8k photos as open_clip
does, within 0.002 of its cosine, with MobileCLIP's preprocessing (bilinear, mean 0, std 1)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import shared_data
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")
timm = pytest.importorskip("timm")

from pixgrep.models import load_encoder  # noqa: E402

pytestmark = pytest.mark.torch  # exports with torch and compares with open_clip

ARCH = "pixgrep-tiny-mobileclip2"
TIMM_NAME = "pixgrep_tiny_mci"
CONFIG = {
    "embed_dim": 32,
    "custom_text": True,
    "vision_cfg": {
        "timm_model_name": TIMM_NAME,
        "timm_model_pretrained": False,
        "timm_pool": "avg",
        "timm_proj": None,
        "timm_drop": 0.0,
        "timm_drop_path": 0.0,
        "image_size": 64,
    },
    "text_cfg": {
        "context_length": 77,
        "vocab_size": 49408,
        "width": 64,
        "heads": 2,
        "layers": 2,
        "no_causal_mask": True,
    },
}
QUERIES = [
    "a dog running on the grass",
    "Ein Hund läuft über die Wiese",
    "一只狗在草地上奔跑",
    "two children on a beach",
]


def _register() -> None:
    import open_clip
    from timm.models.fastvit import fastvit_mci0

    if TIMM_NAME not in timm.list_models(TIMM_NAME):

        def tiny_mci(pretrained=False, **kwargs):
            kwargs.pop("cache_dir", None)
            return fastvit_mci0(pretrained=False, layers=(1, 1, 1, 1), embed_dims=(8, 16, 32, 64), **kwargs)

        tiny_mci.__name__ = TIMM_NAME
        timm.models.register_model(tiny_mci)
    if open_clip.get_model_config(ARCH) is None:
        from pixgrep.lab.export import _register_config

        _register_config(open_clip, ARCH, json.loads(json.dumps(CONFIG)))


def test_scores_match_open_clip(tmp_path):
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2

    from pixgrep.lab.export import _published_preprocess, export_open_clip

    torch.set_num_threads(2)
    _register()
    torch.manual_seed(99)
    model = open_clip.create_model(ARCH, pretrained=None).eval()
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    mobileclip = _published_preprocess(open_clip, "MobileCLIP2-S0")  # what the real arch's weights use
    assert mobileclip == {
        "mean": [0.0] * 3,
        "std": [1.0] * 3,
        "interpolation": "bilinear",
        "resize_mode": "shortest",
    }
    out = export_open_clip(ARCH, str(tmp_path / "weights.pt"), tmp_path / "model", preprocess=mobileclip)
    cfg = json.loads((out / "visual" / "preprocess_cfg.json").read_text())
    keys = ("size", "mode", "mean", "std", "interpolation", "resize_mode", "fill_color")
    transform = image_transform_v2(PreprocessCfg(**{k: cfg[k] for k in keys}), is_train=False)

    folder = shared_data("flickr8k")
    photos = [
        Image.open(folder / "images" / n).convert("RGB")
        for n in (folder / "test.txt").read_text().split()[:10]
    ]
    encoder = load_encoder(str(out))
    ids = open_clip.get_tokenizer(ARCH)(QUERIES)
    with torch.no_grad():
        images = model.encode_image(torch.stack([transform(p) for p in photos]), normalize=True).numpy()
        texts = model.encode_text(ids, normalize=True).numpy()
    expected = images @ texts.T
    got = encoder.encode_images(photos) @ encoder.encode_texts(QUERIES).T
    assert np.ptp(expected) > 0.01
    assert np.abs(got - expected).max() <= 0.002
