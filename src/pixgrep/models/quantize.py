"""int8 variants of a model folder: ONNX Runtime quantisation, its own model id, its measured cost.

A variant is an ordinary model folder (docs/model-format.md) whose towers were quantised with
`onnxruntime.quantization`, plus `variant.json` at its root: what was done, to which model, and
the measured cost (cosine to the float32 vectors, top-10 agreement). `NAME@int8` names the
variant of any model (`--model pixgrep-mini@int8`, `--model /path/folder@int8`); it is built into
the cache on first use, like pixgrep-mini, and its vectors are filed under `<base id>@int8`, so
they never mix with the float32 model's in a catalog.

The text tower stays float32 by default: with it int8, pixgrep-mini lost 0.8 points of
image-to-text Recall@1 on Flickr8k, and 0.1 with it float32; indexing never runs it, and a text
query's time goes mostly to loading the session (docs/models.md). `text_tower="int8"` quantises it.

Weights are int8 per output channel. Two methods:
- "dynamic" (the default): weights quantised offline, activations at run time per tensor; no
  calibration images needed, deterministic.
- "static": activations quantised with ranges calibrated on images (QDQ format); needs a
  calibration folder. docs/models.md has the measurements that chose the default.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixgrep.errors import PixgrepError
from pixgrep.models.folder import ModelFolder, copy_graph, fast_loading, open_folder

SUFFIX = "@int8"
METADATA = "variant.json"
RECIPE = 2  # bump when the quantisation recipe changes: cached variants are then rebuilt
METHODS = ("dynamic", "static")
TEXT_TOWERS = ("int8", "float32")
CALIBRATION_IMAGES = 64  # enough for stable activation ranges; calibration runs the float model
MEASURE_IMAGES = 48

# Built-in texts for measuring the text tower's cost when the user gives none: everyday scenes
# of the kind people search their photos for (written for pixgrep, not taken from a data set).
MEASURE_TEXTS = (
    "a dog running on the beach",
    "two children playing in the snow",
    "a red car parked on a city street",
    "a plate of pasta on a wooden table",
    "sunset over the mountains",
    "a cat sleeping on a sofa",
    "a man riding a bicycle",
    "people walking in a crowded market",
    "a birthday cake with candles",
    "a boat on a calm lake",
    "an old stone bridge over a river",
    "a woman holding an umbrella in the rain",
    "a group of friends at a picnic",
    "fireworks in the night sky",
    "a baby laughing",
    "a snowy forest path",
    "a black and white photo of a building",
    "a surfer riding a big wave",
    "flowers in a garden",
    "a horse in a field",
    "a kitchen with white cabinets",
    "a train at a station",
    "a close-up of a bee on a flower",
    "the skyline of a city at night",
)


@dataclass(frozen=True)
class Variant:
    """What `NAME@int8` asks for."""

    base: str  # registry name or folder path of the float32 model
    kind: str = "int8"


def parse_variant(value: str) -> Variant | None:
    """`NAME@int8` -> Variant(NAME); None for anything else (an existing folder whose name ends in
    @int8 is a folder, not a request for a variant)."""
    if not value.endswith(SUFFIX) or len(value) == len(SUFFIX):
        return None
    if Path(value).expanduser().is_dir():
        return None
    return Variant(value[: -len(SUFFIX)])


def variant_id(base_id: str) -> str:
    """The model id vectors of the int8 variant are stored under."""
    return f"{base_id}{SUFFIX}"


def cached_variant_dir(base_id: str) -> Path:
    from pixgrep.models.hub import models_dir

    return models_dir() / f"{base_id.replace('/', '_')}{SUFFIX}-r{RECIPE}"


def read_metadata(path: Path) -> dict | None:
    """variant.json of a variant folder, or None for a plain folder."""
    file = Path(path) / METADATA
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PixgrepError(f"cannot read {file}: {str(exc).splitlines()[0]}") from None
    return data if isinstance(data, dict) else None


def ensure_variant(folder: ModelFolder, base_id: str) -> ModelFolder:
    """The cached int8 variant of `folder` (dynamic image tower, float32 text tower), built on first use."""
    dest = cached_variant_dir(base_id)
    if not (dest / METADATA).is_file():
        import sys

        if sys.stderr.isatty():
            print(f"pixgrep: building the int8 variant of {base_id} (once)", file=sys.stderr)
        quantize_folder(folder, dest, base_id=base_id)
    return open_folder(dest)


def quantize_folder(
    folder: ModelFolder,
    out: Path,
    *,
    base_id: str,
    method: str = "dynamic",
    text_tower: str = "float32",
    calibration: Sequence[Path] = (),
    measure_images: Sequence[Path] = (),
    measure_texts: Sequence[str] = MEASURE_TEXTS,
    measure: bool = True,
) -> dict:
    """Write the int8 variant of `folder` to `out` (renamed into place when complete) and return
    its metadata. `calibration`: image files for the static method. `measure_images`: images to
    measure the cost on (default: generated ones, which say less than real photos)."""
    if method not in METHODS:
        raise PixgrepError(f"unknown quantisation method {method!r} (choose {' or '.join(METHODS)})")
    if text_tower not in TEXT_TOWERS:
        raise PixgrepError(f"text tower must be {' or '.join(TEXT_TOWERS)}, not {text_tower!r}")
    if method == "static" and not calibration:
        raise PixgrepError("static quantisation needs calibration images (--calibration DIR)")
    _need_onnx()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _copy_non_graph_files(folder.path, tmp)
        _quantize_tower(
            folder.visual_onnx,
            tmp / "visual" / "model.onnx",
            method=method,
            reader=_calibration_reader(folder, calibration) if method == "static" else None,
        )
        if text_tower == "int8":  # text towers are always quantised dynamically (no image ranges)
            _quantize_tower(folder.textual_onnx, tmp / "textual" / "model.onnx", method="dynamic")
        else:
            copy_graph(folder.textual_onnx, tmp / "textual" / "model.onnx")
        fast_loading(tmp)
        import onnxruntime

        meta: dict = {
            "variant": "int8",
            "of": base_id,
            "base_path": str(folder.path.resolve()),
            "recipe": RECIPE,
            "method": method,
            "weights": "int8, per output channel",
            "activations": "int8 per tensor at run time"
            if method == "dynamic"
            else f"uint8, ranges calibrated (MinMax) on {len(calibration)} images",
            "image_tower": f"int8 {method}",
            "text_tower": "int8 dynamic" if text_tower == "int8" else "float32 (unchanged)",
            "onnxruntime": onnxruntime.__version__,
        }
        if measure:
            meta["cost"] = measure_cost(folder, open_folder(tmp), measure_images, list(measure_texts))
        (tmp / METADATA).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return meta


def _need_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime.quantization  # noqa: F401
    except ImportError:
        raise PixgrepError(
            "quantising a model needs the onnx package: pip install 'pixgrep[quantize]'"
        ) from None


def _copy_non_graph_files(src: Path, dest: Path) -> None:
    """config, preprocessing, tokenizer: everything but the two graphs (and their external data)."""
    dest.mkdir(parents=True)
    shutil.copy2(src / "config.json", dest / "config.json")
    for sub in ("visual", "textual"):
        (dest / sub).mkdir()
        for file in (src / sub).iterdir():
            if (
                file.is_file()
                and file.suffix not in (".onnx", ".data")
                and not file.name.endswith(".onnx_data")
            ):
                shutil.copy2(file, dest / sub / file.name)


def _quantize_tower(src: Path, dest: Path, *, method: str, reader=None) -> None:
    from onnxruntime.quantization import (
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import (
        quant_pre_process,
    )

    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".quant-") as work:
        prepared = Path(work) / "prepared.onnx"
        try:  # shape inference + graph clean-up, as ORT recommends before quantising
            quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        except Exception:  # an odd graph: quantise it as it is
            prepared = src
        try:
            if method == "dynamic":
                # MatMul/Gemm only: ConvInteger (dynamic convolution) is slower than float32 on CPU,
                # and Gather (embeddings) saves disk, not time.
                quantize_dynamic(
                    str(prepared),
                    str(dest),
                    per_channel=True,
                    weight_type=QuantType.QInt8,
                    op_types_to_quantize=["MatMul", "Gemm"],
                )
            else:
                quantize_static(
                    str(prepared),
                    str(dest),
                    reader,
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    op_types_to_quantize=["MatMul", "Gemm", "Conv"],
                )
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PixgrepError(f"cannot quantise {src}: {reason[:200]}") from None


def _image_files(folder: Path, limit: int) -> list[Path]:
    from pixgrep.images.formats import image_extensions

    suffixes = image_extensions()
    files = sorted(p for p in Path(folder).expanduser().rglob("*") if p.suffix.lower() in suffixes)
    if len(files) > limit:  # spread over the folder rather than its first subfolder
        step = len(files) / limit
        files = [files[int(i * step)] for i in range(limit)]
    return files


def image_files(folder: str | Path, limit: int) -> list[Path]:
    """Up to `limit` image files under `folder`, spread over it; PixgrepError if there are none."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise PixgrepError(f"no such folder: {folder}")
    files = _image_files(path, limit)
    if not files:
        raise PixgrepError(f"no images under {folder}")
    return files


def _pixels(folder: ModelFolder, files: Sequence[Path]) -> np.ndarray:
    """Decoded and preprocessed as indexing does it (JPEG draft included); undecodable files skipped."""
    from pixgrep.images.decode import ImageDecodeError, decode_file
    from pixgrep.models.preprocess import PreprocessConfig, preprocess

    cfg = PreprocessConfig.from_dict(folder.preprocess_cfg)
    side = max(cfg.size) if isinstance(cfg.size, (tuple, list)) else int(cfg.size)
    rows = []
    for file in files:
        try:
            rows.append(preprocess(decode_file(file, draft_size=2 * side)[0], cfg))
        except ImageDecodeError:
            continue
    if not rows:
        raise PixgrepError("none of the calibration / measuring images could be decoded")
    return np.stack(rows).astype(np.float32)


def _generated_images(n: int, seed: int = 0):
    """Photo-like test images without a data set: smooth colour fields with shapes and noise."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    for _ in range(n):
        h, w = 240, 320
        y, x = np.mgrid[0:h, 0:w] / np.array([h, w]).reshape(2, 1, 1)
        base = rng.uniform(0, 255, (3, 3))
        field = base[:, 0, None, None] + base[:, 1, None, None] * x + base[:, 2, None, None] * y
        image = Image.fromarray(np.clip(field.transpose(1, 2, 0) / 2, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(2, 8))):
            box = sorted(rng.integers(0, w, 2)), sorted(rng.integers(0, h, 2))
            fill = tuple(int(c) for c in rng.integers(0, 256, 3))
            shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
            shape([box[0][0], box[1][0], box[0][1], box[1][1]], fill=fill)
        noisy = np.asarray(image, np.float32) + rng.normal(0, 8, (h, w, 3))
        yield Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _calibration_reader(folder: ModelFolder, files: Sequence[Path]):
    from onnxruntime.quantization import CalibrationDataReader

    pixels = _pixels(folder, files)
    import onnxruntime as ort

    name = (
        ort.InferenceSession(str(folder.visual_onnx), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.rows = iter(pixels)

        def get_next(self):
            row = next(self.rows, None)
            return None if row is None else {name: row[None]}

    return Reader()


def measure_cost(
    base: ModelFolder,
    variant: ModelFolder,
    images: Sequence[Path],
    texts: Sequence[str],
    *,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Cosine between the variant's and the float32 model's vectors (min / mean, images and texts),
    and top-10 agreement: the mean share of each text query's 10 best images that both find."""
    from pixgrep.models.onnx_encoder import OnnxEncoder

    f32 = OnnxEncoder(base, model_id="float32")
    q8 = OnnxEncoder(variant, model_id="int8")
    if images:
        pixels = _pixels(base, images)
        source = f"{len(pixels)} given images"
    else:
        pixels = np.stack([f32.preprocess(im) for im in _generated_images(MEASURE_IMAGES)])
        source = f"{len(pixels)} generated images (not photos: pass real ones with --images)"
    img_f, img_q = f32.encode_pixels(pixels), q8.encode_pixels(pixels)
    txt_f, txt_q = f32.encode_texts(list(texts)), q8.encode_texts(list(texts))
    return {
        "images": source,
        "texts": len(texts),
        **cost_figures(img_f, img_q, txt_f, txt_q),
    }


def cost_figures(
    img_f: np.ndarray, img_q: np.ndarray, txt_f: np.ndarray, txt_q: np.ndarray, k: int = 10
) -> dict:
    """The cost figures from float32 and int8 vectors of the same images and texts (unit rows)."""
    ci = np.sum(img_f * img_q, axis=1)
    ct = np.sum(txt_f * txt_q, axis=1)
    k = min(k, len(img_f))
    top_f = np.argsort(-(txt_f @ img_f.T), axis=1, kind="stable")[:, :k]
    top_q = np.argsort(-(txt_q @ img_q.T), axis=1, kind="stable")[:, :k]
    agree = [len(set(a) & set(b)) / k for a, b in zip(top_f, top_q, strict=True)]
    return {
        "image_cosine_min": round(float(ci.min()), 5),
        "image_cosine_mean": round(float(ci.mean()), 5),
        "text_cosine_min": round(float(ct.min()), 5),
        "text_cosine_mean": round(float(ct.mean()), 5),
        f"top{k}_agreement": round(float(np.mean(agree)), 4),
    }
