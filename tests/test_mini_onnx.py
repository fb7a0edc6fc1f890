"""pixgrep-mini's exported folder matches the PyTorch model it came from (cosine >= 0.9999).

The PyTorch side is the training path: timm EfficientNet-Lite on pixgrep-mini's own preprocessing,
sentence-transformers MiniLM (its own tokenizer, mean pooling, L2 norm), then the trained heads.
The ONNX side is pixgrep's runtime: load_encoder on the folder (its preprocessing, its tokenizer,
ONNX Runtime). Real Flickr8k test images and captions; skipped without ../shared/data.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import shared_data
from test_mini_support import mini_cache, mini_folder  # noqa: F401  (session fixtures)

pytestmark = pytest.mark.torch  # builds pixgrep-mini and compares with its PyTorch model

N_IMAGES = 100
N_CAPTIONS = 500


@pytest.fixture(scope="module")
def torch_reference(mini_folder):  # noqa: F811
    import torch

    from pixgrep.models.mini import build

    torch.set_num_threads(2)
    visual, _, heads = build.torch_modules()
    return visual, heads


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_folder_has_the_documented_layout(mini_folder):  # noqa: F811
    from pixgrep.models.mini import build, features, train

    config = json.loads((mini_folder / "config.json").read_text())
    heads = train.load_heads()
    assert config["embed_dim"] == heads["image_weight"].shape[0]
    assert config["logit_scale"] == pytest.approx(float(heads["logit_scale"]), rel=1e-6)
    assert config["text_cfg"]["tower"] == "all-MiniLM-L6-v2"
    assert config["vision_cfg"]["tower"] == "tf_efficientnet_lite0"
    assert config["pixgrep"]["folder_key"] == build.folder_key()
    assert mini_folder.name.endswith(build.folder_key())
    pre = json.loads((mini_folder / "visual" / "preprocess_cfg.json").read_text())
    assert pre == features.IMAGE_TOWERS["lite0"]["preprocess"]
    tok_cfg = json.loads((mini_folder / "textual" / "tokenizer_config.json").read_text())
    assert tok_cfg["model_max_length"] == features.TEXT_MAX_LENGTH
    assert (mini_folder / "textual" / "tokenizer.json").is_file()


def test_graphs_take_dynamic_batches_and_sequences(mini_folder):  # noqa: F811
    import onnxruntime as ort

    vis = ort.InferenceSession(str(mini_folder / "visual" / "model.onnx"))
    (image,) = vis.get_inputs()
    assert image.type == "tensor(float)" and image.shape[1:] == [3, 224, 224]
    assert not isinstance(image.shape[0], int)
    txt = ort.InferenceSession(str(mini_folder / "textual" / "model.onnx"))
    names = {i.name: i for i in txt.get_inputs()}
    assert set(names) == {"input_ids", "attention_mask"}
    for i in names.values():
        assert i.type == "tensor(int64)" and not any(isinstance(d, int) for d in i.shape)
    out = vis.run(None, {"image": np.zeros((3, 3, 224, 224), np.float32)})[0]
    assert out.shape == (3, 512)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_onnx_image_tower_matches_pytorch_on_flickr8k_test(mini_folder, torch_reference):  # noqa: F811
    import torch

    from pixgrep.images.decode import open_image
    from pixgrep.models import load_encoder
    from pixgrep.models.mini.features import IMAGE_TOWERS, preprocess_image

    root = shared_data("flickr8k")
    names = (root / "test.txt").read_text().split()[:N_IMAGES]
    images = [open_image(root / "images" / n) for n in names]
    visual, _ = torch_reference
    pixels = np.stack([preprocess_image(im, IMAGE_TOWERS["lite0"]["preprocess"]) for im in images])
    with torch.inference_mode():
        ref = visual(torch.from_numpy(pixels)).numpy()
    got = load_encoder(str(mini_folder)).encode_images(images)
    cos = (_unit(ref) * got).sum(1)
    assert cos.min() >= 0.9999, f"worst cosine {cos.min():.6f}"


def test_onnx_text_tower_matches_pytorch_on_flickr8k_test(mini_folder, torch_reference):  # noqa: F811
    import csv

    from pixgrep.models import load_encoder
    from pixgrep.models.mini.features import load_text_tower

    root = shared_data("flickr8k")
    test = set((root / "test.txt").read_text().split())
    with open(root / "captions.tsv", newline="", encoding="utf-8") as fh:
        rows = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        captions = [r["caption"] for r in rows if r["image"] in test][:N_CAPTIONS]
    assert len(captions) == N_CAPTIONS
    _, heads = torch_reference
    feats = load_text_tower().encode(captions, batch_size=128, convert_to_numpy=True)
    ref = _unit(feats @ heads["text_weight"].T + heads["text_bias"])
    got = load_encoder(str(mini_folder)).encode_texts(captions)
    cos = (ref * got).sum(1)
    assert cos.min() >= 0.9999, f"worst cosine {cos.min():.6f}"
