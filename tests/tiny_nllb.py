"""A tiny NLLB-style model folder without torch: the NLLB-like tokenizer of hf_tokenizers.py and
an ONNX text tower that shows which ids the encoder fed it (the language token first), CONTEXT
numbers out. The echo tower returns the ids as floats; the first-token tower returns a fixed
random vector per id of the first token (the language token), so queries in two languages land
far apart (echoed ids differ only in that one number). The image tower is never run (tests plant
image vectors)."""

from __future__ import annotations

import json
from pathlib import Path

from hf_tokenizers import MULTILINGUAL, nllb_folder

CONTEXT = 16
HF_TOKENIZER_NAME = "facebook/nllb-200-distilled-600M"  # what open_clip's nllb-clip configs name


def echo_graph(path: Path) -> None:
    """A tower taking `text` int32 [N, CONTEXT] and returning its ids as floats."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["text"], ["embedding"], to=TensorProto.FLOAT)],
        "echo",
        [helper.make_tensor_value_info("text", TensorProto.INT32, ["batch", CONTEXT])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", CONTEXT])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def first_token_graph(path: Path, rows: int = 1024, seed: int = 0) -> None:
    """A tower taking `text` int32 [N, CONTEXT] and returning row text[:, 0] of a random table."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = np.random.default_rng(seed).standard_normal((rows, CONTEXT)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["text", "zero"], ["first"], axis=1),
        helper.make_node("Gather", ["table", "first"], ["embedding"], axis=0),
    ]
    initialisers = [numpy_helper.from_array(table, "table"), numpy_helper.from_array(np.int64(0), "zero")]
    graph = helper.make_graph(
        nodes,
        "first-token",
        [helper.make_tensor_value_info("text", TensorProto.INT32, ["batch", CONTEXT])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", CONTEXT])],
        initialisers,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def echo_nllb_folder(folder: Path, *, first_token: bool = False) -> Path:
    """The model folder (docs/model-format.md) of the NLLB-style model: its text tower echoes the
    ids, or with `first_token` gives each language token's own random vector."""
    nllb_folder(folder / "textual", ["a dog on the grass", "Ein Hund auf der Wiese", *MULTILINGUAL] * 5)
    (folder / "visual").mkdir()
    (first_token_graph if first_token else echo_graph)(folder / "textual" / "model.onnx")
    echo_graph(folder / "visual" / "model.onnx")  # never run; the folder needs one
    text_cfg = {"context_length": CONTEXT, "hf_tokenizer_name": HF_TOKENIZER_NAME}
    (folder / "config.json").write_text(json.dumps({"embed_dim": CONTEXT, "text_cfg": text_cfg}))
    (folder / "visual" / "preprocess_cfg.json").write_text(json.dumps({"size": 8}))
    return folder


class _Planted:
    """What serverkit.add_to_catalog asks of an encoder: the model id, and one vector per image in
    the order the files are given."""

    def __init__(self, model_id: str, vectors: list):
        self.model_id = model_id
        self.vectors = list(vectors)

    def encode_images(self, images):
        return [self.vectors.pop(0) for _ in images]


def planted_catalog(base: Path, query: str, codes: tuple[str, ...]) -> tuple[Path, Path, dict[str, int]]:
    """(model folder, catalog, image id by language): the first-token model, and a catalog of one
    picture per language whose vector is `query`'s in that language, so a search for `query` ranks
    first the picture of the language token the text tower was fed."""
    from serverkit import add_to_catalog, make_images

    from pixgrep.models import load_encoder

    folder = echo_nllb_folder(base / "model", first_token=True)
    encoder = load_encoder(str(folder))
    files = make_images(base / "photos", per_colour=1)[: len(codes)]
    vectors = [encoder.encode_texts([query], language=code)[0] for code in codes]
    ids = add_to_catalog(base / "catalog.db", files, _Planted(encoder.model_id, vectors))
    by_language = {code: ids[str(file)] for code, file in zip(codes, files, strict=True)}
    return folder, base / "catalog.db", by_language
