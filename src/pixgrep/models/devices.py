"""Which ONNX Runtime execution provider runs the towers: the CPU, or CUDA when there is a GPU.

`--device cpu|cuda|auto` (or $PIXGREP_DEVICE, or `set_default_device` from Python) is one choice
for the whole process; "auto", the default, takes CUDA when onnxruntime-gpu is installed *and* a
GPU is visible, else the CPU. "cuda" when CUDA cannot run is an error, not a silent fallback.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence

from pixgrep.errors import PixgrepError

DEVICES = ("auto", "cpu", "cuda")
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
# Images per model call and per catalog transaction when the user gives no --batch-size: a GPU
# needs big batches to be busy; on the CPU 32 is as fast as 8 or 64 (docs/models.md).
BATCH_SIZES = {CPU: 32, CUDA: 128}

_default: str | None = None


def check_device(device: str) -> str:
    if device not in DEVICES:
        raise PixgrepError(f"unknown device {device!r} (choose {', '.join(DEVICES)})")
    return device


def set_default_device(device: str | None) -> None:
    """The device every encoder of this process uses unless it is given one (None: back to auto)."""
    global _default
    _default = check_device(device) if device is not None else None


def default_device() -> str:
    from pixgrep.settings import choice

    return _default or choice("PIXGREP_DEVICE", DEVICES, "auto")


def gpu_visible() -> bool:
    """An NVIDIA GPU this process may use: device nodes present and not hidden by CUDA_VISIBLE_DEVICES."""
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    if hidden is not None and hidden.strip() in ("", "-1"):
        return False
    return bool(glob.glob("/dev/nvidia[0-9]*")) or os.path.exists("/dev/dxg")  # Linux, WSL


def choose_providers(device: str, available: Sequence[str], gpu: bool) -> list[str]:
    """The provider list for an ORT session (pure: the tests feed it what a GPU machine reports)."""
    check_device(device)
    cuda_ok = CUDA in available and gpu
    if device == "cpu" or (device == "auto" and not cuda_ok):
        return [CPU]
    if not cuda_ok:
        why = "no GPU is visible" if CUDA in available else "onnxruntime-gpu is not installed"
        raise PixgrepError(f"--device cuda: {why} (use --device cpu or auto)")
    return [CUDA, CPU]


def providers(device: str | None = None) -> list[str]:
    """The providers for `device` (default: the process's choice) on this machine."""
    import onnxruntime as ort

    return choose_providers(device or default_device(), ort.get_available_providers(), gpu_visible())


def batch_size(chosen: Sequence[str]) -> int:
    return BATCH_SIZES.get(chosen[0], BATCH_SIZES[CPU]) if chosen else BATCH_SIZES[CPU]


def worker_device(gpu_assigned: bool) -> str:
    """The device of an encoder on a Ray worker: the GPU Ray gave it, when onnxruntime-gpu can run
    there ("auto": the CPU otherwise, as a worker has no one to ask), else the CPU."""
    return "auto" if gpu_assigned else "cpu"
