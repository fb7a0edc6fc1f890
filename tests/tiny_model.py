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


def _key() -> str:
    import open_clip
    import torch

    from pixgrep.models import export

    blob = json.dumps([CONFIG, SEED, export.OPSET, torch.__version__, open_clip.__version__], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def register() -> None:
    """Make ARCH known to open_clip in this process."""
    import open_clip

    if open_clip.get_model_config(ARCH) is None:
        from pixgrep.models.export import _register_config

        _register_config(open_clip, ARCH, CONFIG)


def build(base: Path) -> Path:
    """The exported folder under `base` (built now if absent)."""
    import torch

    from pixgrep.models.export import export_open_clip

    dest = base / f"tiny-{_key()}"
    if (dest / "config.json").is_file():
        register()
        return dest
    torch.set_num_threads(min(2, torch.get_num_threads()))
    register()
    import open_clip

    tmp = base / f".tiny-{_key()}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        torch.manual_seed(SEED)
        model = open_clip.create_model(ARCH, pretrained=None)
        torch.save(model.state_dict(), tmp / CHECKPOINT)
        export_open_clip(ARCH, str(tmp / CHECKPOINT), tmp)
        try:
            os.replace(tmp, dest)
        except OSError:  # another process finished first
            if not (dest / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def load_reference(folder: Path):
    """(open_clip model, its eval preprocess, tokenizer) with the weights of the exported folder."""
    import open_clip

    register()
    model, _, preprocess = open_clip.create_model_and_transforms(ARCH, pretrained=str(folder / CHECKPOINT))
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(ARCH)
