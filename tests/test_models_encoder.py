"""OnnxEncoder behaviour: lazy towers, threads, ids, batching, text inputs chosen from the graph."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pixgrep.errors import PixgrepError
from pixgrep.models import load_encoder
from pixgrep.models.base import Encoder
from pixgrep.models.onnx_encoder import OnnxEncoder, available_cores


def test_is_an_encoder_with_the_folder_facts(tiny_model_dir):
    enc = load_encoder(tiny_model_dir)
    assert isinstance(enc, OnnxEncoder) and isinstance(enc, Encoder)
    assert enc.dim == 32
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert enc.logit_scale == pytest.approx(config["logit_scale"]) and enc.logit_scale != 100.0
    assert enc.preprocess(Image.new("RGB", (70, 50))).shape == (3, 48, 48)


def test_text_only_never_loads_the_image_tower_and_back(tiny_model_dir):
    enc = load_encoder(str(tiny_model_dir))
    assert enc.towers_loaded == ()
    vectors = enc.encode_texts(["a cat", "a dog"])
    assert enc.towers_loaded == ("textual",)
    assert vectors.shape == (2, 32)
    enc = load_encoder(str(tiny_model_dir))
    enc.encode_images([Image.new("RGB", (64, 64), "red")])
    assert enc.towers_loaded == ("visual",)


def test_threads_follow_cpu_affinity(tiny_model_dir):
    import os

    enc = load_encoder(str(tiny_model_dir))
    options = enc.textual.session.get_session_options()
    assert options.intra_op_num_threads == available_cores() == len(os.sched_getaffinity(0))


def test_model_id_for_folders_is_name_at_hash_and_tracks_content(tiny_model_dir, tmp_path):
    enc = load_encoder(str(tiny_model_dir))
    name, digest = enc.model_id.split("@")
    assert name == tiny_model_dir.name and len(digest) == 8 and int(digest, 16) >= 0
    assert load_encoder(str(tiny_model_dir)).model_id == enc.model_id  # stable
    copy = tmp_path / tiny_model_dir.name
    shutil.copytree(tiny_model_dir, copy)
    assert load_encoder(str(copy)).model_id == enc.model_id  # same content, same id
    config = json.loads((copy / "config.json").read_text())
    config["logit_scale"] = 50.0
    (copy / "config.json").write_text(json.dumps(config))
    assert load_encoder(str(copy)).model_id != enc.model_id


def test_empty_inputs_and_unit_rows(tiny_model_dir):
    enc = load_encoder(str(tiny_model_dir))
    assert enc.encode_texts([]).shape == (0, 32)
    assert enc.encode_images([]).shape == (0, 32)
    assert enc.encode_pixels(np.zeros((0, 3, 48, 48), np.float32)).shape == (0, 32)
    many = enc.encode_images([Image.new("RGB", (9 + i, 40), (i, 2 * i, 3 * i)) for i in range(70)])
    assert many.shape == (70, 32) and many.dtype == np.float32  # more than one ORT run (MAX_BATCH 64)
    np.testing.assert_allclose(np.linalg.norm(many, axis=1), 1.0, atol=1e-5)


def test_fixed_batch_graphs_run_one_at_a_time(tiny_model_dir, tmp_path):
    """Immich exports its towers without a dynamic batch axis: batch 1 only."""
    import onnx

    folder = tmp_path / "fixed"
    shutil.copytree(tiny_model_dir, folder)
    model = onnx.load(str(folder / "visual" / "model.onnx"))
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(model, str(folder / "visual" / "model.onnx"))
    images = [Image.new("RGB", (50, 50), c) for c in ("red", "green", "blue")]
    fixed = load_encoder(str(folder))
    assert fixed.visual.fixed_batch == 1
    np.testing.assert_allclose(
        fixed.encode_images(images), load_encoder(str(tiny_model_dir)).encode_images(images), atol=1e-5
    )


# A Hugging Face style text tower (input_ids, attention_mask, token_type_ids): masked mean of an
# embedding table, built directly with onnx.helper so the expected vectors can be computed here.
def _hf_text_folder(tiny_model_dir, tmp_path, *, id_type, with_token_types):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from test_models_hf_tokenizer import wordpiece_file

    folder = tmp_path / "hf"
    shutil.copytree(tiny_model_dir / "visual", folder / "visual")
    (folder / "textual").mkdir()
    (folder / "config.json").write_text(json.dumps({"embed_dim": 8}))
    table = np.random.default_rng(0).standard_normal((12, 8)).astype(np.float32)
    elem = TensorProto.INT32 if id_type == np.int32 else TensorProto.INT64
    inputs = [
        helper.make_tensor_value_info("input_ids", elem, ["batch", "seq"]),
        helper.make_tensor_value_info("attention_mask", elem, ["batch", "seq"]),
    ]
    nodes = [helper.make_node("Gather", ["table", "input_ids"], ["emb"])]
    if with_token_types:  # emb + 0 * token type: the graph really consumes the third input
        inputs.append(helper.make_tensor_value_info("token_type_ids", elem, ["batch", "seq"]))
        nodes[0].output[0] = "emb0"
        nodes += [
            helper.make_node("Cast", ["token_type_ids"], ["ttf"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["ttf", "axis2"], ["tt3"]),
            helper.make_node("Mul", ["tt3", "zero"], ["tt0"]),
            helper.make_node("Add", ["emb0", "tt0"], ["emb"]),
        ]
    nodes += [
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),
        helper.make_node("Mul", ["emb", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask3", "axis1"], ["count"], keepdims=0),
        helper.make_node("Div", ["summed", "count"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes,
        "hf_text",
        inputs,
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 8])],
        initializer=[
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.array([2], np.int64), "axis2"),
            numpy_helper.from_array(np.array([1], np.int64), "axis1"),
            numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(folder / "textual" / "model.onnx"))
    wordpiece_file(folder / "textual")
    return folder, table


@pytest.mark.parametrize("id_type,with_token_types", [(np.int64, True), (np.int32, False)])
def test_hf_style_text_tower(tiny_model_dir, tmp_path, id_type, with_token_types):
    folder, table = _hf_text_folder(
        tiny_model_dir, tmp_path, id_type=id_type, with_token_types=with_token_types
    )
    enc = load_encoder(str(folder))
    texts = ["A cat", "the red cats on the mat", "dog"]
    feeds = enc.tokenize(texts)
    assert set(feeds) == {"input_ids", "attention_mask"} | ({"token_type_ids"} if with_token_types else set())
    assert all(v.dtype == id_type for v in feeds.values())
    got = enc.encode_texts(texts)
    ids, mask = feeds["input_ids"], feeds["attention_mask"]
    expected = (table[ids] * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert enc.dim == 8


def test_padding_is_cut_for_dynamic_length_text_towers(tiny_model_dir, tmp_path):
    """pixgrep's exports accept shorter sequences: a short query is not run over 77 positions, and
    the vectors are those of the full-length input (the tower is causal, pooled at the end token)."""
    enc = load_encoder(str(tiny_model_dir))
    assert enc.config["text_dynamic_length"] is True
    assert enc.textual.inputs["text"].shape == ["batch_size", "sequence"]
    texts = ["a cat", "a dog on a mat", "!"]
    ids = enc.tokenize(texts)["text"]
    assert ids.shape == (3, 7)  # sot + 5 tokens + eot for the longest text
    full = np.pad(ids, ((0, 0), (0, 77 - ids.shape[1])))
    run = enc.textual.session.run(None, {"text": full})[0]
    np.testing.assert_allclose(
        enc.encode_texts(texts), run / np.linalg.norm(run, axis=1, keepdims=True), atol=1e-6
    )

    fixed = tmp_path / "fixed"  # the same folder without the key (like an Immich export): full length
    shutil.copytree(tiny_model_dir, fixed)
    config = json.loads((fixed / "config.json").read_text())
    del config["text_dynamic_length"]
    (fixed / "config.json").write_text(json.dumps(config))
    other = load_encoder(str(fixed))
    assert other.tokenize(texts)["text"].shape == (3, 77)
    np.testing.assert_allclose(other.encode_texts(texts), enc.encode_texts(texts), atol=1e-6)


def test_many_texts_are_run_in_chunks_with_their_own_padding(tiny_model_dir):
    enc = load_encoder(str(tiny_model_dir))
    texts = ["word " * 60] + [f"cat number {i}" for i in range(99)]  # one long text, then short ones
    together = enc.encode_texts(texts)
    assert together.shape == (100, 32)
    np.testing.assert_allclose(together[70], enc.encode_texts([texts[70]])[0], atol=1e-6)
    np.testing.assert_allclose(together[0], enc.encode_texts([texts[0]])[0], atol=1e-6)


def test_prepared_texts_give_the_same_vectors_and_errors_surface_at_use(tiny_model_dir, tmp_path):
    texts = ["a dog on the beach", "two red cars"]
    expected = load_encoder(str(tiny_model_dir)).encode_texts(texts)
    warm = load_encoder(str(tiny_model_dir))
    warm.prepare_texts()
    warm.prepare_texts()  # a second call starts nothing new
    # Python joins them at exit: a daemon inside native code when a run fails fast aborts it (-6)
    assert warm._prefetch and not any(thread.daemon for thread in warm._prefetch)
    np.testing.assert_array_equal(warm.encode_texts(texts), expected)
    assert warm.towers_loaded == ("textual",)

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "textual" / "tokenizer.json").write_text("{not json")
    encoder = load_encoder(str(broken))
    encoder.prepare_texts()  # the background parse fails quietly ...
    with pytest.raises(PixgrepError, match="cannot read"):  # ... and the real use says why, in one line
        encoder.encode_texts(texts)


def test_a_run_that_exits_while_the_text_tower_loads_exits_with_its_own_status(tiny_model_dir):
    """What a cold query on a damaged catalog does: start the background loads, fail, exit 2. It
    must end with that status, not abort in native code that is still running."""
    script = (
        "import sys; from pixgrep.models import load_encoder; "
        f"load_encoder({str(tiny_model_dir)!r}).prepare_texts(); sys.exit(2)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (2, "")
