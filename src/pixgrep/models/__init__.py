"""Encoders: a model is a folder (docs/model-format.md) run by one ONNX Runtime encoder.

`load_encoder(reference)` accepts a registry name (`pixgrep models list`), `hf:OWNER/REPO` (a hub
repository), a path to a model folder, or None for the default; `resolve_model` (reference.py)
is the one place that tells them apart. Nothing heavy is imported until a tower is first used.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pixgrep.models.folder import ModelFolder
    from pixgrep.models.onnx_encoder import OnnxEncoder


def load_encoder(
    reference: str | os.PathLike[str] | None = None,
    *,
    device: str | None = None,
    language: str | None = None,
) -> OnnxEncoder:
    """An encoder for a registry name, `hf:OWNER/REPO`, a model folder path, or the default (None).

    Hub models are downloaded (or, for pixgrep-mini, built) into the cache on first use;
    `NAME@int8` is the int8 variant of any of them, built into the cache on first use
    (models/quantize.py). `device`: "cpu", "cuda" or "auto" (default: models.devices). `language`:
    of text queries, for towers that take one (NLLB; default: models.languages).
    Raises PixgrepError with one clear line for unknown names, bad folders and no network.
    """
    from pixgrep.models.onnx_encoder import OnnxEncoder
    from pixgrep.models.quantize import ensure_variant, parse_variant, variant_id

    if language is not None:
        from pixgrep.models.languages import flores_code

        language = flores_code(language)  # an unknown language fails here, before any download
    variant = parse_variant(os.fspath(reference)) if reference is not None else None
    if variant is not None:  # vectors filed under their own id: never mixed with float32's
        base, base_id = resolve_folder(variant.base)
        encoder = OnnxEncoder(ensure_variant(base, base_id), model_id=variant_id(base_id), device=device)
    else:
        folder, model_id = resolve_folder(reference)
        encoder = OnnxEncoder(folder, model_id=model_id, device=device)
    encoder.language = language
    return encoder


def resolve_folder(reference: str | os.PathLike[str] | None) -> tuple[ModelFolder, str]:
    """The model folder (downloaded or built if need be) and model id for a model reference."""
    from pixgrep.errors import PixgrepError
    from pixgrep.models import hub
    from pixgrep.models.folder import open_folder
    from pixgrep.models.reference import resolve_model

    resolved = resolve_model(reference)
    if resolved.spec is not None:
        spec = resolved.spec
        path = hub.ensure_folder(spec)
        try:
            folder = open_folder(path)
        except PixgrepError as exc:  # a damaged cache entry: say how to get a fresh one
            raise PixgrepError(f"{exc}; delete {path} to fetch {spec.name} again") from None
        return folder, hub.model_id(spec)
    assert resolved.folder is not None
    folder = open_folder(resolved.folder)
    return folder, folder.fingerprint()


__all__ = ["load_encoder", "resolve_folder"]
