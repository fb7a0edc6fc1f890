"""The Combiner of CLIP4Cir (Baldrati et al., CVPR 2022), run in numpy: image + text -> one query.

A Combiner fuses a reference image's vector and a modification text's vector, both of one model's
space, into the vector of the image the user wants:

    t' = relu(Wt t + bt)          i' = relu(Wi i + bi)          (projections, dropout in training)
    h  = relu(Wh [t'; i'] + bh)                                  (hidden layer)
    lambda = sigmoid(Wl2 relu(Wl1 [t'; i'] + bl1) + bl2)          (dynamic scalar)
    q  = normalise(Wo h + bo + lambda t + (1 - lambda) i)

It is trained in torch (pixgrep.lab.combiner_train); here only numpy runs, so a query pays no
torch import and about a millisecond of matrix-vector products (one BLAS thread: see
_one_blas_thread). A Combiner file (.npz: float32 or float16
arrays, always computed in float32, and a JSON `meta`) is bound to one model id: the features it
was trained on.

Where a model's Combiner is found (`find_combiner`): `combiner.npz` in the model folder (what
`pixgrep models add-combiner` writes), else the one shipped for pixgrep-mini.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pixgrep.errors import PixgrepError

FORMAT = "pixgrep-combiner"
VERSION = 1
STORAGE = ("float32", "float16")  # how a file may store its arrays; queries compute in float32
FILE_NAME = "combiner.npz"  # inside a model folder
SHIPPED_MINI = Path(__file__).with_name("mini") / "combiner.npz"
ARRAYS = (
    "text_proj_w",
    "text_proj_b",
    "image_proj_w",
    "image_proj_b",
    "hidden_w",
    "hidden_b",
    "out_w",
    "out_b",
    "lambda_w1",
    "lambda_b1",
    "lambda_w2",
    "lambda_b2",
)


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


QUERY_ROWS = 4  # up to this many rows is a query (matrix-vector products); more is a batch
_LIMIT_LOCK = threading.Lock()
_CONTROLLER: Any = None  # threadpoolctl's controller, made at the first query; False: not installed


@contextmanager
def _one_blas_thread() -> Iterator[bool]:
    """BLAS on one thread while a query runs (True), or nothing when threadpoolctl is missing (False).

    A query is a few matrix-vector products over 9.4 MB of weights: waking BLAS threads costs more
    than it saves (threaded 9-34 ms, one thread 0.9 ms of CPU, numpy's einsum loop 1.7 ms; measured
    in docs/quality.md). The lock keeps the save-and-restore of the thread count consistent when
    several threads (a server) run queries at once."""
    global _CONTROLLER
    if _CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController

            _CONTROLLER = ThreadpoolController()
        except ImportError:
            _CONTROLLER = False
    if _CONTROLLER is False:
        yield False
        return
    with _LIMIT_LOCK, _CONTROLLER.limit(limits=1, user_api="blas"):
        yield True


def _linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, mode: str) -> np.ndarray:
    """x W^T + b. mode "matvec": one BLAS matrix-vector product per row (inside _one_blas_thread);
    "einsum": numpy's own single-threaded loop (no threadpoolctl); "batch": one threaded product."""
    if mode == "matvec":
        return np.stack([weight @ row for row in x]) + bias
    if mode == "einsum":
        return np.einsum("nj,ij->ni", x, weight) + bias
    return x @ weight.T + bias


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@dataclass
class Combiner:
    weights: dict[str, np.ndarray]
    meta: dict[str, Any]
    path: Path | None = None

    @property
    def model_id(self) -> str:
        return str(self.meta["model_id"])

    @property
    def dim(self) -> int:
        return int(self.weights["out_w"].shape[0])

    def check_model(self, model_id: str) -> None:
        if model_id != self.model_id:
            where = f" ({self.path})" if self.path else ""
            raise PixgrepError(
                f"this Combiner{where} was trained for model {self.model_id}, not {model_id}: "
                "train one for this model with `pixgrep train combiner`"
            )

    def lambdas(self, image: np.ndarray, text: np.ndarray) -> np.ndarray:
        """The dynamic scalar per row (how much of the raw text vector the query keeps)."""
        return self._forward(image, text)[1]

    def combine(self, image: np.ndarray, text: np.ndarray) -> np.ndarray:
        """(n, d) reference-image and text vectors (unit rows) -> (n, d) unit query vectors."""
        return self._forward(image, text)[0]

    def _forward(self, image: np.ndarray, text: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        image = np.atleast_2d(np.asarray(image, np.float32))
        text = np.atleast_2d(np.asarray(text, np.float32))
        if image.shape != text.shape or image.shape[1] != self.dim:
            raise PixgrepError(
                f"the Combiner takes two vectors of {self.dim} numbers, "
                f"got {image.shape[1:]} and {text.shape[1:]}"
            )
        if image.shape[0] > QUERY_ROWS:
            return self._layers(image, text, "batch")
        with _one_blas_thread() as limited:
            return self._layers(image, text, "matvec" if limited else "einsum")

    def _layers(self, image: np.ndarray, text: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
        w = self.weights
        t = _relu(_linear(text, w["text_proj_w"], w["text_proj_b"], mode))
        i = _relu(_linear(image, w["image_proj_w"], w["image_proj_b"], mode))
        joint = np.concatenate([t, i], axis=1)
        hidden = _relu(_linear(joint, w["hidden_w"], w["hidden_b"], mode))
        lam_hidden = _relu(_linear(joint, w["lambda_w1"], w["lambda_b1"], mode))
        gate = _linear(lam_hidden, w["lambda_w2"], w["lambda_b2"], mode)
        lam = 1.0 / (1.0 + np.exp(-gate))  # (n, 1)
        out = _linear(hidden, w["out_w"], w["out_b"], mode) + lam * text + (1.0 - lam) * image
        return _normalise(out).astype(np.float32), lam[:, 0]


def save_combiner(
    path: str | os.PathLike,
    weights: dict[str, np.ndarray],
    meta: dict[str, Any],
    storage: str = "float32",
) -> Path:
    """Write a Combiner file (beside its place, then renamed). meta must name model_id.

    storage "float16" halves the file (the shipped one: composed R@K unchanged, docs/quality.md);
    load_combiner converts to float32 once, so queries always compute in float32."""
    path = Path(path)
    missing = [k for k in ARRAYS if k not in weights]
    if missing or "model_id" not in meta:
        raise ValueError(f"a Combiner needs {missing or 'meta.model_id'}")
    if storage not in STORAGE:
        raise ValueError(f"storage must be one of {STORAGE}, not {storage!r}")
    full = {"format": FORMAT, "version": VERSION, **meta, "storage": storage}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    arrays = {k: np.asarray(weights[k], np.float32).astype(storage) for k in ARRAYS}
    np.savez(tmp, meta=np.array(json.dumps(full, sort_keys=True)), **arrays)  # type: ignore[arg-type]
    tmp.replace(path)
    return path


def load_combiner(path: str | os.PathLike) -> Combiner:
    """Read and check a Combiner file; PixgrepError with one line when it is not one."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise PixgrepError(f"Combiner file {path}: no such file") from None
    except (OSError, ValueError, EOFError) as exc:
        raise PixgrepError(f"{path} is not a Combiner file ({str(exc).splitlines()[0][:120]})") from None
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except (KeyError, json.JSONDecodeError):
        raise PixgrepError(f"{path} is not a Combiner file (no meta)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "model_id" not in meta:
        raise PixgrepError(f"{path} is not a Combiner file (an .npz without pixgrep-combiner meta)")
    if int(meta.get("version", 0)) > VERSION:
        raise PixgrepError(f"{path} is a Combiner file of a newer pixgrep (version {meta['version']})")
    missing = [k for k in ARRAYS if k not in arrays]
    if missing:
        raise PixgrepError(f"Combiner file {path} lacks {', '.join(missing)}")
    if any(arrays[k].dtype.name not in STORAGE for k in ARRAYS):
        raise PixgrepError(f"Combiner file {path} holds arrays that are not float32 or float16")
    # float16 files are widened here, once per load, never per query
    weights = {k: np.ascontiguousarray(arrays[k], np.float32) for k in ARRAYS}
    dim = weights["out_w"].shape[0]
    if weights["text_proj_w"].shape[1] != dim or weights["image_proj_w"].shape[1] != dim:
        raise PixgrepError(f"Combiner file {path} has inconsistent layer sizes")
    return Combiner(weights, meta, path)


def model_folder_of(encoder: object) -> Path | None:
    folder = getattr(encoder, "folder", None)
    path = getattr(folder, "path", None)
    return Path(path) if path is not None else None


def find_combiner(encoder: object) -> Combiner | None:
    """The Combiner for this encoder's model, or None: the model folder's combiner.npz, else the
    shipped pixgrep-mini one when the model is that exact pixgrep-mini build. A file there that
    belongs to another model is an error, not silently ignored."""
    model_id = str(getattr(encoder, "model_id", ""))
    folder = model_folder_of(encoder)
    candidates = []
    if folder is not None and (folder / FILE_NAME).is_file():
        candidates.append(folder / FILE_NAME)
    elif SHIPPED_MINI.is_file() and model_id.startswith("pixgrep-mini@"):
        candidates.append(SHIPPED_MINI)
    for path in candidates:
        combiner = _cached_load(path)
        if path == SHIPPED_MINI and combiner.model_id != model_id:
            return None  # heads retrained since: the shipped Combiner no longer applies
        combiner.check_model(model_id)
        return combiner
    return None


_CACHE: dict[tuple[str, int, int], Combiner] = {}


def _cached_load(path: Path) -> Combiner:
    """Loaded once per process per file version (a server answers many queries)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _CACHE:
        _CACHE[key] = load_combiner(path)
    return _CACHE[key]
