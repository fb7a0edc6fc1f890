"""The reduced open_clip ViT that tests export once per session (fixture `tiny_model_dir`).

Random weights from a fixed seed, saved as a checkpoint next to the export, so parity tests can
load exactly the same weights into open_clip. The export is cached in a folder keyed by the
config, the exporter's opset and the torch / open_clip versions: in $PIXGREP_TEST_CACHE if set,
else a per-session temporary folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

ARCH = "pixgrep-tiny-vit"
SEED = 1234
CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 48, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
CHECKPOINT = "weights.pt"  # beside the model files; not part of the model format
LAST_BUILD = "tiny-last-build.txt"  # in the cache folder: the name of the folder `build` returned


def can_build() -> bool:
    """torch and open_clip are importable (the export needs both)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("torch", "open_clip"))


def last_build(base: Path) -> Path | None:
    """The folder the latest full run built in `base`, for runs without torch; None if none."""
    try:
        dest = base / (base / LAST_BUILD).read_text().strip()
    except OSError:
        return None
    return dest if (dest / "config.json").is_file() else None


def _key(arch: str, config: dict | None) -> str:
    import open_clip
    import torch

    from pixgrep.lab import export

    blob = json.dumps(
        [arch, config, SEED, export.EXPORT_VERSION, torch.__version__, open_clip.__version__], sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def register() -> None:
    """Make ARCH known to open_clip in this process."""
    import open_clip

    if open_clip.get_model_config(ARCH) is None:
        from pixgrep.lab.export import _register_config

        _register_config(open_clip, ARCH, CONFIG)


def build(base: Path) -> Path:
    """The exported tiny folder under `base` (built now if absent)."""
    register()
    dest = export_seeded(base, ARCH, CONFIG, prefix="tiny")
    _note_last_build(base, dest.name)
    return dest


def _note_last_build(base: Path, name: str) -> None:
    """Record `name` for `last_build`, atomically: CI's torch-free run may read it while the full
    run, beside it, writes it again (a plain write_text lets a reader see an empty file)."""
    note = base / LAST_BUILD
    try:
        if note.read_text() == name + "\n":
            return
    except OSError:
        pass
    tmp = base / f".{LAST_BUILD}.{os.getpid()}"
    tmp.write_text(name + "\n")
    os.replace(tmp, note)


def export_seeded(base: Path, arch: str, config: dict | None = None, *, prefix: str | None = None) -> Path:
    """Export open_clip `arch` with random weights from SEED (checkpoint kept beside), cached in `base`."""
    import torch

    from pixgrep.lab.export import export_open_clip

    name = f"{prefix or arch}-{_key(arch, config)}"
    dest = base / name
    if (dest / "config.json").is_file():
        return dest
    torch.set_num_threads(min(2, torch.get_num_threads()))
    import open_clip

    tmp = base / f".{name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        torch.manual_seed(SEED)
        model = open_clip.create_model(arch, pretrained=None)
        torch.save(model.state_dict(), tmp / CHECKPOINT)
        del model
        export_open_clip(arch, str(tmp / CHECKPOINT), tmp)
        try:
            os.replace(tmp, dest)
        except OSError:  # another process finished first
            if not (dest / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def load_reference(folder: Path, arch: str = ARCH):
    """(open_clip model, its eval preprocess, tokenizer) with the weights of the exported folder."""
    import open_clip

    if arch == ARCH:
        register()
    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=str(folder / CHECKPOINT))
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(arch)


if __name__ == "__main__":
    # CI builds the model before its two test runs start side by side (.ci/run): the torch-free
    # run cannot build it and must find it in $PIXGREP_TEST_CACHE from its first test.
    import sys

    cache = os.environ.get("PIXGREP_TEST_CACHE")
    if not cache:
        sys.exit("tiny_model.py: set $PIXGREP_TEST_CACHE (where the build is kept)")
    print(build(Path(cache)))
