"""pixgrep's ONNX encoder gives open_clip's vectors: same token ids, cosine >= 0.9999 per item.

The reference is open_clip itself (its eval preprocess, tokenizer, encode_image / encode_text,
normalised), loaded with the very weights of the exported tiny model (tests/tiny_model.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")

from tiny_model import load_reference  # noqa: E402

from pixgrep.models import load_encoder  # noqa: E402

pytestmark = pytest.mark.torch  # compares with open_clip

MIN_COSINE = 0.9999

TEXTS = [
    "a photo of a cat",
    "A Photo   of a CAT\n\t on a mat.",
    "",
    "   ",
    "!!!",
    "...,;:?!",
    "naïve café Zürich, Ærøskøbing, İstanbul, straße",
    "東京の夜景 와 서울 и Москва عربي हिन्दी",
    "🐱🐶 cat emoji 👍🏽 🇫🇷 family 👨‍👩‍👧",
    "don't we'll they're I'd you've I'm it's",
    "&amp;lt;b&amp;gt; html &quot;entities&quot; &#x1F600;",
    "numbers 1234567 3.14159 and 1,000,000",
    "<|endoftext|> typed by a user <|startoftext|>",
    "<start_of_text>open_clip's own special strings<end_of_text> !<end_of_text>",
    "a very long caption " * 40,
    "word " * 75,
    "word " * 76,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "\u00e9 vs e\u0301 (composed and decomposed)",
    "zero\u200bwidth and\u00a0nbsp",
]


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    torch.set_num_threads(2)
    return load_reference(tiny_model_dir)


@pytest.fixture(scope="module")
def encoder(tiny_model_dir):
    return load_encoder(str(tiny_model_dir))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def _reference_images(reference, images) -> np.ndarray:
    model, preprocess, _ = reference
    with torch.no_grad():
        pixels = torch.stack([preprocess(im) for im in images])
        return model.encode_image(pixels, normalize=True).numpy()


def test_token_ids_equal_open_clip(reference, encoder):
    _, _, tokenizer = reference
    expected = tokenizer(TEXTS).numpy()
    got = encoder.tokenize(TEXTS)["text"]  # padding after the longest text may be cut (see below)
    got = np.pad(got, ((0, 0), (0, 77 - got.shape[1])))
    assert got.shape == expected.shape == (len(TEXTS), 77)
    for text, row_got, row_expected in zip(TEXTS, got, expected, strict=True):
        assert row_got.tolist() == row_expected.tolist(), text


def test_text_vectors_match_open_clip(reference, encoder):
    model, _, tokenizer = reference
    with torch.no_grad():
        expected = model.encode_text(tokenizer(TEXTS), normalize=True).numpy()
    got = encoder.encode_texts(TEXTS)
    assert got.shape == (len(TEXTS), 32) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cos = _cosines(got, expected)
    assert cos.min() >= MIN_COSINE, dict(zip(TEXTS, cos.round(6), strict=True))


def _generated_images() -> dict[str, Image.Image]:
    rng = np.random.default_rng(7)
    rgb = Image.fromarray(rng.integers(0, 256, (61, 83, 3), dtype=np.uint8))
    rgba = Image.fromarray(rng.integers(0, 256, (50, 70, 4), dtype=np.uint8), "RGBA")
    images = {
        "1x1": Image.new("RGB", (1, 1), (200, 30, 90)),
        "3000x10": Image.fromarray(rng.integers(0, 256, (10, 3000, 3), dtype=np.uint8)),
        "10x3000": Image.fromarray(rng.integers(0, 256, (3000, 10, 3), dtype=np.uint8)),
        "exact-48": Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)),
        "smaller-than-crop": Image.fromarray(rng.integers(0, 256, (20, 33, 3), dtype=np.uint8)),
        "RGB": rgb,
        "RGBA": rgba,
        "LA": rgba.convert("LA"),
        "L": rgb.convert("L"),
        "1": rgb.convert("1"),
        "P": rgb.convert("P"),
        "PA": rgba.convert("PA"),
        "CMYK": rgb.convert("CMYK"),
        "I;16": Image.fromarray(rng.integers(0, 65536, (40, 52), dtype=np.uint16)),
        "I;16B": Image.fromarray(rng.integers(0, 65536, (40, 52), dtype=np.uint16).astype(">u2")),
        "I": Image.fromarray(rng.integers(-500, 70000, (40, 52), dtype=np.int32)),
        "F": Image.fromarray(rng.random((40, 52), dtype=np.float32) * 300),
        "LAB": rgb.convert("LAB"),
        "YCbCr": rgb.convert("YCbCr"),
        "HSV": rgb.convert("HSV"),
        "RGBX": rgb.convert("RGBX"),
        "RGBa": rgba.convert("RGBa"),
    }
    p_transparent = rgb.convert("P")
    p_transparent.info["transparency"] = 5
    images["P-transparency"] = p_transparent
    return images


def test_generated_images_of_odd_sizes_and_modes_match(reference, encoder):
    images = _generated_images()
    assert {im.mode for im in images.values()} >= {
        "P",
        "PA",
        "RGBA",
        "LA",
        "L",
        "1",
        "CMYK",
        "I;16",
        "I",
        "F",
        "LAB",
        "YCbCr",
    }
    expected = _reference_images(reference, list(images.values()))
    got = encoder.encode_images(list(images.values()))
    cos = _cosines(got, expected)
    assert cos.min() >= MIN_COSINE, dict(zip(images, cos.round(6), strict=True))


def _decodable(folder) -> dict[str, Image.Image]:
    from pixgrep.images.decode import ImageDecodeError, open_image

    images = {}
    for path in sorted(folder.iterdir()):
        try:
            images[path.name] = open_image(path)
        except ImageDecodeError:
            continue
    return images


@pytest.mark.parametrize("folder", ["imagenet-sample", "odd-images"])
def test_real_photos_match(reference, encoder, folder):
    from conftest import shared_data

    images = _decodable(shared_data(folder))
    assert len(images) >= 30
    names, pictures = list(images), list(images.values())
    got = np.concatenate([encoder.encode_images(pictures[i : i + 128]) for i in range(0, len(pictures), 128)])
    expected = np.concatenate(
        [_reference_images(reference, pictures[i : i + 128]) for i in range(0, len(pictures), 128)]
    )
    cos = _cosines(got, expected)
    worst = np.argsort(cos)[:5]
    assert cos.min() >= MIN_COSINE, {names[i]: round(float(cos[i]), 6) for i in worst}


def test_preprocess_is_bit_identical_for_every_mode(reference, encoder):
    _, preprocess, _ = reference
    for name, image in _generated_images().items():
        np.testing.assert_array_equal(encoder.preprocess(image), preprocess(image).numpy(), err_msg=name)


def test_batches_and_singles_agree(encoder):
    images = list(_generated_images().values())[:6]
    together = encoder.encode_images(images)
    alone = np.concatenate([encoder.encode_images([im]) for im in images])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    texts = TEXTS[:5]
    np.testing.assert_allclose(
        encoder.encode_texts(texts), np.concatenate([encoder.encode_texts([t]) for t in texts]), atol=1e-5
    )


def test_an_immich_layout_folder_gives_open_clip_vectors(reference, tiny_model_dir, tmp_path):
    """What Immich publishes: both towers with a fixed batch of 1, text fixed at [1, 77] int32, no
    text_dynamic_length key, and the tokenizer files transformers' CLIPTokenizerFast saves."""
    import json
    import shutil

    import onnx
    from test_models_tokenizer import save_immich_tokenizer

    folder = tmp_path / "immich"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    del config["text_dynamic_length"]
    (folder / "config.json").write_text(json.dumps(config))
    for tower, fixed in (("visual", None), ("textual", 77)):
        graph = onnx.load(str(folder / tower / "model.onnx"))
        for value in (*graph.graph.input, *graph.graph.output):
            value.type.tensor_type.shape.dim[0].dim_value = 1
        if fixed:
            graph.graph.input[0].type.tensor_type.shape.dim[1].dim_value = fixed
        onnx.save(graph, str(folder / tower / "model.onnx"))
    saved, _ = save_immich_tokenizer(tmp_path / "tok")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(saved / name, folder / "textual" / name)

    immich = load_encoder(str(folder))
    assert immich.textual.inputs["text"].shape == [1, 77] and immich.visual.fixed_batch == 1
    model, _, tokenizer = reference
    with torch.no_grad():
        expected = model.encode_text(tokenizer(TEXTS), normalize=True).numpy()
    assert _cosines(immich.encode_texts(TEXTS), expected).min() >= MIN_COSINE
    images = list(_generated_images().values())[:8]
    assert _cosines(immich.encode_images(images), _reference_images(reference, images)).min() >= MIN_COSINE


def test_exported_attention_is_written_out_with_few_transposes(tiny_model_dir):
    """Both towers' attention is export._attention (3 transposes a block; the traced
    nn.MultiheadAttention had 8: 21% of ViT-B-32's int8 image time). The vectors above are the
    proof it still computes open_clip's attention; this, that the cheaper graph is what was written."""
    import json
    from collections import Counter

    import onnx

    config = json.loads((tiny_model_dir / "config.json").read_text())
    towers = (("visual", config["vision_cfg"]["layers"]), ("textual", config["text_cfg"]["layers"]))
    for tower, layers in towers:
        graph = onnx.load(str(tiny_model_dir / tower / "model.onnx"), load_external_data=False).graph
        transposes = Counter(node.op_type for node in graph.node)["Transpose"]
        assert transposes <= 3 * layers + 1, (tower, transposes)
