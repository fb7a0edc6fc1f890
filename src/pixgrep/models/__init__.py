"""Encoders: a model is a folder (docs/model-format.md) run by one ONNX Runtime encoder.

`load_encoder(name_or_path)` accepts a registry name (`pixgrep models list`), a path to a model
folder, or None for the default. Nothing heavy is imported until a tower is first used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pixgrep.models.folder import ModelFolder
    from pixgrep.models.onnx_encoder import OnnxEncoder


def _looks_like_path(value: str) -> bool:
    return os.sep in value or value.startswith((".", "~")) or Path(value).expanduser().exists()


def load_encoder(name_or_path: str | os.PathLike | None = None, *, device: str | None = None) -> OnnxEncoder:
    """An encoder for a registry name, a model folder path, or the default model (None).

    Registry models are downloaded (or, for pixgrep-mini, built) into the cache on first use;
    `NAME@int8` is the int8 variant of any of them, built into the cache on first use
    (models/quantize.py). `device`: "cpu", "cuda" or "auto" (default: models.devices).
    Raises PixgrepError with one clear line for unknown names, bad folders and no network.
    """
    from pixgrep.models import registry
    from pixgrep.models.onnx_encoder import OnnxEncoder
    from pixgrep.models.quantize import ensure_variant, parse_variant, variant_id

    value = os.fspath(name_or_path) if name_or_path is not None else registry.DEFAULT_MODEL
    variant = parse_variant(value)
    if variant is not None:  # vectors filed under their own id: never mixed with float32's
        base, base_id = resolve_folder(variant.base)
        return OnnxEncoder(ensure_variant(base, base_id), model_id=variant_id(base_id), device=device)
    folder, model_id = resolve_folder(value)
    return OnnxEncoder(folder, model_id=model_id, device=device)


def resolve_folder(value: str) -> tuple[ModelFolder, str]:
    """The model folder (downloaded or built if need be) and model id for a name or a path."""
    from pixgrep.errors import PixgrepError
    from pixgrep.models import hub, registry
    from pixgrep.models.folder import open_folder

    if value in registry.MODELS or not _looks_like_path(value):
        spec = registry.get_spec(value)
        path = hub.ensure_folder(spec)
        try:
            folder = open_folder(path)
        except PixgrepError as exc:  # a damaged cache entry: say how to get a fresh one
            raise PixgrepError(f"{exc}; delete {path} to fetch {spec.name} again") from None
        return folder, hub.model_id(spec)
    folder = open_folder(value)
    return folder, folder.fingerprint()


__all__ = ["load_encoder", "resolve_folder"]
