"""Cached Flickr8k features of pixgrep-mini's frozen towers, for training its heads, and the torch
towers the parity tests compare the built graphs with.

What the towers are (wheels, input size, TF-style normalisation) is in pixgrep.models.mini.spec,
shared with the build, so the heads are trained on exactly the pixels the ONNX graph sees at query
time. torch, timm and sentence-transformers are imported inside functions: only the torch towers
need them.
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
from pixgrep.models.mini.spec import (  # noqa: F401  (re-exported: the training side's one import)
    DEFAULT_POOLS,
    DEFAULT_TEXT_POOLS,
    IMAGE_TOWERS,
    TEXT_DIM,
    TEXT_MAX_LENGTH,
    TEXT_TOWER,
    TF_MEAN,
    TF_STD,
    feature_dim,
    image_size,
    preprocess_cfg,
    text_model_dir,
    weights_path,
)

FEATURES_VERSION = "v1"


def preprocess_image(image: Image.Image, cfg: dict[str, Any]) -> np.ndarray:
    """PIL image -> float32 (3, H, W) exactly as pixgrep's runtime does it for preprocess_cfg `cfg`.

    The training features go through pixgrep.models.preprocess, the same code that feeds the ONNX
    graph at query time, so the heads are trained on the pixels the graph will see.
    """
    from pixgrep.models.preprocess import PreprocessConfig, preprocess

    return preprocess(image, PreprocessConfig.from_dict(cfg))


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


def pooled_views_torch(model, image, pools: Sequence[str] = DEFAULT_POOLS):
    """The pooled views `pools` (spec.POOLS) of a `load_image_tower` model, side by side: timm's
    forward_features, keeping each stage's output (the reference the ONNX graphs are tested against)."""
    import torch

    x = model.bn1(model.conv_stem(image))
    stages = []
    for stage in model.blocks:
        x = stage(x)
        stages.append(x)
    head = model.bn2(model.conv_head(x))  # bn2 applies ReLU6 too
    out = []
    for name in pools:
        where, how = name.split("_")
        source = head if where == "head" else stages[int(where.removeprefix("stage")) - 1]
        out.append(source.mean((2, 3)) if how == "avg" else source.amax((2, 3)))
    return torch.cat(out, dim=1)


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


def extract_image_features(
    root: Path,
    names: Sequence[str],
    towers: Sequence[str],
    size: int,
    threads: int = 2,
    batch: int = 32,
    pools: Sequence[str] = DEFAULT_POOLS,
) -> dict[str, np.ndarray]:
    """Pooled views of each tower for Flickr8k images, decoded and preprocessed the way pixgrep
    does at query time, run through the ONNX towers (the graphs of the model folder, no heads)."""
    from tqdm import tqdm

    from pixgrep.images.decode import open_image
    from pixgrep.models.mini import towers as onnx_towers

    sessions = {
        t: onnx_towers.session(onnx_towers.image_graph([t], size, pools=pools), threads) for t in towers
    }
    cfg = preprocess_cfg(towers, size)
    out = {t: np.zeros((len(names), feature_dim(t, pools)), np.float32) for t in towers}
    start = time.time()
    label = "+".join(towers)
    with tqdm(total=len(names), unit="img", desc=label, disable=not sys.stderr.isatty()) as bar:
        for i in range(0, len(names), batch):
            chunk = names[i : i + batch]
            pixels = np.stack([preprocess_image(open_image(root / "images" / n), cfg) for n in chunk])
            for t, sess in sessions.items():
                out[t][i : i + len(chunk)] = sess.run(None, {"image": pixels})[0]
            bar.update(len(chunk))
            if bar.disable and (i // batch) % 20 == 0:  # no bar (not a terminal): a line now and then
                done = i + len(chunk)
                log_progress(f"{label}: {done}/{len(names)} images, {done / (time.time() - start):.1f}/s")
    return out


def encode_texts_torch(model, texts: Sequence[str], batch: int = 256) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return model.encode(list(texts), batch_size=batch, convert_to_numpy=True).astype(np.float32)


def feature_files(
    cache_dir: Path,
    size: int | None = None,
    pools: Sequence[str] = DEFAULT_POOLS,
    text_pools: Sequence[str] = DEFAULT_TEXT_POOLS,
) -> dict[str, Path]:
    """Cache files: captions (their text views), and each tower's pooled views at `size` (default:
    its own size)."""
    d = cache_dir / FEATURES_VERSION
    views = "" if tuple(pools) == DEFAULT_POOLS else "_" + "+".join(pools)
    text_views = "" if tuple(text_pools) == DEFAULT_TEXT_POOLS else "_" + "+".join(text_pools)

    def name(tower: str) -> str:
        own = IMAGE_TOWERS[tower]["preprocess"]["size"]
        px = "" if size in (None, own) else f"_{size}px"
        return f"{tower}{px}{views}_images.npz"

    return {"captions": d / f"minilm{text_views}_captions.npz", **{t: d / name(t) for t in IMAGE_TOWERS}}


def ensure_features(
    root: Path,
    cache_dir: Path | None = None,
    towers: Sequence[str] = ("lite0",),
    threads: int = 2,
    size: int | None = None,
    pools: Sequence[str] = DEFAULT_POOLS,
    text_pools: Sequence[str] = DEFAULT_TEXT_POOLS,
) -> dict[str, Any]:
    """Extract (once) and load the cached features: images of every split, all their captions.
    Several towers see the same pixels, at `size` (default: the largest tower's resolution); each
    gives its pooled views `pools` side by side; captions give their text views `text_pools`."""
    from pixgrep.models.mini import towers as onnx_towers

    threads = max(1, min(threads, os.cpu_count() or 1))
    size = image_size(towers, size)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    files = feature_files(cache_dir, size, pools, text_pools)
    files["captions"].parent.mkdir(parents=True, exist_ok=True)
    data = read_flickr8k(root)
    names = [n for s in ("train", "dev", "test") for n in data["splits"][s]]
    missing = [t for t in towers if not files[t].exists()]
    if missing:
        log_progress(
            f"extracting {'+'.join(missing)} {'+'.join(pools)} features of {len(names)} images at {size} px"
        )
        feats = extract_image_features(root, names, missing, size, threads, pools=pools)
        for tower in missing:
            tmp = files[tower].with_suffix(".tmp.npz")
            np.savez(tmp, names=np.array(names), feats=feats[tower])
            tmp.replace(files[tower])
    if not files["captions"].exists():
        cap_names = [n for n in names for _ in data["captions"][n]]
        texts = [c for n in names for c in data["captions"][n]]
        log_progress(f"extracting MiniLM features of {len(texts)} captions into {files['captions']}")
        start = time.time()
        text_feats = onnx_towers.encode_texts(texts, threads, pools=text_pools)
        log_progress(f"captions done, {len(texts) / (time.time() - start):.0f}/s")
        tmp = files["captions"].with_suffix(".tmp.npz")
        np.savez(tmp, names=np.array(cap_names), texts=np.array(texts), feats=text_feats)
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
