"""Model towers stored as ONNX graph + external weights: converted once, the same model exactly."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from pixgrep.models import folder as folder_module
from pixgrep.models.folder import external_data_path, has_external_weights, move_weights_outside, open_folder
from pixgrep.models.onnx_encoder import OnnxEncoder

pytest.importorskip("onnx")


def monolithic_copy(source, dest):
    """A copy of a model folder with every tower in one file (pixgrep's exports now write
    the large ones with external weights, so the conversion is undone here to test it)."""
    import onnx

    shutil.copytree(source, dest)
    for tower in ("textual", "visual"):
        graph = dest / tower / "model.onnx"
        data = external_data_path(graph)
        if data.exists():
            onnx.save_model(onnx.load(str(graph)), str(graph), save_as_external_data=False)
            data.unlink()
    return dest


def encode_both(path):
    encoder = OnnxEncoder(open_folder(path), model_id="m")
    images = [Image.new("RGB", (60, 40), (i * 40, 200 - i * 30, 90)) for i in range(4)]
    return encoder.encode_texts(["a red car", "two dogs in the snow"]), encoder.encode_images(images)


def test_converted_towers_give_bit_identical_vectors(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(folder_module, "EXTERNAL_MIN_BYTES", 1)  # the tiny visual tower is below the cut
    copy = monolithic_copy(tiny_model_dir, tmp_path / "model")
    texts, images = encode_both(copy)
    for tower in ("textual", "visual"):
        graph = copy / tower / "model.onnx"
        assert not has_external_weights(graph)
        size = graph.stat().st_size
        assert move_weights_outside(graph)
        assert external_data_path(graph).stat().st_size > graph.stat().st_size
        assert graph.stat().st_size < size
        assert move_weights_outside(graph)  # already done: a no-op
    assert not [p for p in copy.rglob(".external-*")]  # no work folder left behind
    texts_after, images_after = encode_both(copy)
    np.testing.assert_array_equal(texts, texts_after)
    np.testing.assert_array_equal(images, images_after)


def test_small_graphs_and_missing_files_are_left_alone(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(folder_module, "EXTERNAL_MIN_BYTES", 1 << 40)
    copy = monolithic_copy(tiny_model_dir, tmp_path / "model")
    graph = copy / "textual" / "model.onnx"
    before = graph.read_bytes()
    assert not move_weights_outside(graph)  # under EXTERNAL_MIN_BYTES: loads fast already
    assert graph.read_bytes() == before and not external_data_path(graph).exists()
    assert not move_weights_outside(tmp_path / "nowhere" / "model.onnx")


def test_an_export_writes_large_towers_with_external_weights(tiny_model_dir):
    """The tiny model's 13 MB text tower is over the 8 MB cut; its 0.7 MB visual tower is not."""
    assert has_external_weights(tiny_model_dir / "textual" / "model.onnx")
    assert not external_data_path(tiny_model_dir / "visual" / "model.onnx").exists()


def test_weights_in_one_file_per_tensor_are_gathered_into_one(tiny_model_dir, tmp_path):
    """torch writes a tower over 2 GB as a small graph with one weights file per tensor beside
    it (so do Immich's exports of the large models): gathered into `model.onnx.data`, the
    per-tensor files removed, the vectors bit for bit the same."""
    import onnx

    copy = monolithic_copy(tiny_model_dir, tmp_path / "model")
    texts, images = encode_both(copy)
    graph = copy / "textual" / "model.onnx"
    before = set(graph.parent.iterdir())
    onnx.save_model(
        onnx.load(str(graph)),
        str(graph),
        save_as_external_data=True,
        all_tensors_to_one_file=False,
        size_threshold=1024,
    )
    per_tensor = set(graph.parent.iterdir()) - before
    assert len(per_tensor) > 5 and not has_external_weights(graph)
    np.testing.assert_array_equal(encode_both(copy)[0], texts)  # the scattered layout loads too
    assert move_weights_outside(graph)
    assert has_external_weights(graph)
    assert set(graph.parent.iterdir()) == before | {external_data_path(graph)}
    assert not [p for p in copy.rglob(".external-*")]
    texts_after, images_after = encode_both(copy)
    np.testing.assert_array_equal(texts, texts_after)
    np.testing.assert_array_equal(images, images_after)


@pytest.mark.parametrize(
    ("name", "removable"),
    [
        ("visual.blocks.0.attn.weight", True),
        ("onnx__MatMul_1234", True),
        ("..", False),
        (".", False),
        ("../outside.bin", False),
        ("sub/inside.bin", False),
        ("a\\..\\..\\outside.bin", False),
        ("C:outside.bin", False),
        ("", False),
    ],
)
def test_only_plain_file_names_beside_the_graph_are_gathered_and_removed(name, removable):
    """The per-tensor files a graph names are deleted once gathered: a downloaded graph naming a
    path elsewhere (another folder, a drive) must never make pixgrep delete that file."""
    assert folder_module._plain_name(name) is removable
