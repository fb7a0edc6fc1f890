"""Parity for the full ViT-B-32 architecture (random weights from a fixed seed). Slow: run with

    PIXGREP_TEST_CACHE=/tmp/pixgrep-test-cache .venv/bin/pytest -m slow -s tests/test_models_parity_full.py

It prints the minimum cosine over images and texts; docs/models.md records it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.torch]  # torch: exports and compares with open_clip
torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")

from test_models_parity import MIN_COSINE, TEXTS, _cosines, _decodable, _generated_images  # noqa: E402
from tiny_model import export_seeded, load_reference  # noqa: E402

from pixgrep.models import load_encoder  # noqa: E402


@pytest.fixture(scope="module")
def vit_b32(tmp_path_factory):
    torch.set_num_threads(2)
    base = os.environ.get("PIXGREP_TEST_CACHE")
    folder = export_seeded(Path(base) if base else tmp_path_factory.mktemp("b32"), "ViT-B-32")
    return folder, load_reference(folder, "ViT-B-32")


def test_vit_b32_parity(vit_b32):
    from conftest import shared_data

    folder, (model, preprocess, tokenizer) = vit_b32
    encoder = load_encoder(str(folder))
    assert encoder.dim == 512 and encoder.preprocess_cfg.size == (224, 224)

    images = list(_generated_images().values())
    images += list(_decodable(shared_data("odd-images")).values())
    images += list(_decodable(shared_data("imagenet-sample")).values())[::10]  # 100 photos
    got, expected = [], []
    for start in range(0, len(images), 16):
        chunk = images[start : start + 16]
        got.append(encoder.encode_images(chunk))
        with torch.no_grad():
            expected.append(
                model.encode_image(torch.stack([preprocess(im) for im in chunk]), normalize=True).numpy()
            )
    image_cos = _cosines(np.concatenate(got), np.concatenate(expected))

    ids = encoder.tokenize(TEXTS)["text"]
    np.testing.assert_array_equal(np.pad(ids, ((0, 0), (0, 77 - ids.shape[1]))), tokenizer(TEXTS).numpy())
    with torch.no_grad():
        text_expected = model.encode_text(tokenizer(TEXTS), normalize=True).numpy()
    batch = encoder.encode_texts(TEXTS)
    one_by_one = np.concatenate([encoder.encode_texts([t]) for t in TEXTS])  # padding cut to each text
    text_cos = np.minimum(_cosines(batch, text_expected), _cosines(one_by_one, text_expected))

    print(
        f"\nViT-B-32 parity: {len(images)} images, min cosine {image_cos.min():.7f}; "
        f"{len(TEXTS)} texts, min cosine {text_cos.min():.7f}"
    )
    assert image_cos.min() >= MIN_COSINE and text_cos.min() >= MIN_COSINE
