"""What a `--model` value names: a registry name, a hub repository, or a model folder.

    hf:OWNER/REPO      a Hugging Face repository in the model-folder layout (docs/model-format.md)
    ./b32, ~/m, a/b    a folder: anything with a path separator or starting with . or ~
    ViT-B-32__openai   a registry name (`pixgrep models list`), any case or Immich's spelling

An exact registry name wins over a folder of the same name in the current directory (write
`./NAME` for the folder); any other existing path is a folder. This is the only place that decides.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from pixgrep.errors import PixgrepError
from pixgrep.models import registry
from pixgrep.models.registry import ModelSpec

HUB_PREFIX = "hf:"
_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class ModelReference:
    """Exactly one of `spec` (a registry entry or a hub repository) and `folder` is set."""

    spec: ModelSpec | None = None
    folder: Path | None = None


def hub_spec(repo: str) -> ModelSpec:
    """The registry entry for this repository, or an unlisted one named `hf:OWNER/REPO`."""
    if not _REPO.fullmatch(repo):
        raise PixgrepError(
            f"{HUB_PREFIX}{repo}: a hub reference is hf:OWNER/REPO, e.g. hf:immich-app/ViT-B-32__openai"
        )
    listed = registry.spec_for_repo(repo)
    if listed is not None:
        return listed
    return ModelSpec(
        f"{HUB_PREFIX}{repo}", "hub", repo, None, None, None, note="hub repository, not in the registry"
    )


def is_folder_reference(value: str) -> bool:
    """True when `value` names a path rather than a registry entry (see the module doc)."""
    separators = [s for s in (os.sep, os.altsep) if s]
    return (
        any(s in value for s in separators)
        or value.startswith((".", "~"))
        or Path(value).expanduser().exists()
    )


def resolve_model(value: str | os.PathLike[str] | None) -> ModelReference:
    """The model that a `--model` value (or the API's `model=`) names; None is the default model.
    Unknown names raise PixgrepError with close names. Nothing is read or downloaded here."""
    if value is None:
        return ModelReference(spec=registry.MODELS[registry.DEFAULT_MODEL])
    if not isinstance(value, str):
        return ModelReference(folder=Path(os.fspath(value)).expanduser())
    if value.startswith(HUB_PREFIX):
        return ModelReference(spec=hub_spec(value[len(HUB_PREFIX) :]))
    if value in registry.MODELS or not is_folder_reference(value):
        return ModelReference(spec=registry.get_spec(value))
    return ModelReference(folder=Path(value).expanduser())
