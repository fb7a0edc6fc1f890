"""Known models, as data: `registry.json` (package data) read into typed `ModelSpec` records.

A name resolves to a folder: downloaded from the hub, or built locally (pixgrep-mini). Quality
figures are open_clip's published zero-shot results: ImageNet-1k top-1, and image-to-text /
text-to-image Recall@1 on Flickr30k (1k test) and MSCOCO (5k test), measured by open_clip with the
original PyTorch weights; the parity tests (docs/models.md) are why they hold for the ONNX exports.
None where we have not checked the published number. docs/models.md's table is this data
(`python -m pixgrep.models.registry` prints it; a test keeps the two equal). Costs are measured
here by benchmarks/bench_models.py (docs/models.md has the full table).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any, Literal

from pixgrep.errors import PixgrepError

Source = Literal["hub", "build", "export"]


@dataclass(frozen=True)
class Cost:
    """What an architecture's towers cost on CPU, measured with random weights (the cost of a
    forward pass does not depend on them): CPU time, which a shared machine inflates far less
    than wall time."""

    image_rel: float  # image tower CPU time per image, int8, batch 32, relative to ViT-B-32 int8
    image_ms: float  # that CPU time in ms
    text_ms: float  # text tower CPU ms per query (float32, one query at a time)
    measured: str  # date of the measurement, YYYY-MM-DD


@dataclass(frozen=True)
class ModelSpec:
    name: str  # open_clip's ARCH__pretrained-tag, or pixgrep's own name
    # "hub": download `repo` from Hugging Face; "build": pixgrep-mini, built locally; "export":
    # open_clip's `arch` with its `pretrained` weights, exported locally (the export extra)
    source: Source
    repo: str | None  # Hugging Face repository (owner/name) of a hub model
    dim: int | None  # embedding size; None: read from the built folder
    image_size: int | None  # input side in pixels
    context_length: int | None  # text tokens
    imagenet_top1: float | None = None  # zero-shot, %
    flickr_i2t_r1: float | None = None  # image -> text Recall@1, %
    flickr_t2i_r1: float | None = None  # text -> image Recall@1, %
    coco_i2t_r1: float | None = None
    coco_t2i_r1: float | None = None
    note: str = ""
    arch: str | None = None  # open_clip architecture of an "export" model
    pretrained: str | None = None  # its open_clip pretrained tag
    languages: str = "en"  # what queries may be written in
    xm3600_i2t_r1: float | None = None  # Crossmodal-3600, mean over its 36 languages, %
    xm3600_t2i_r1: float | None = None
    # image-image cosine from which two pictures are near-identical copies (folded in results),
    # measured per model (docs/quality.md); None: only identical files are folded
    duplicate_threshold: float | None = None
    cost: Cost | None = None  # None: not measured (docs/models.md says why)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_FIELDS = {f.name for f in dataclasses.fields(ModelSpec)}
_REQUIRED = {f.name for f in dataclasses.fields(ModelSpec) if f.default is dataclasses.MISSING}


def parse_registry(data: dict[str, Any]) -> tuple[dict[str, ModelSpec], str]:
    """(name -> spec, default name) from the JSON object; ValueError naming the bad entry."""
    models: dict[str, ModelSpec] = {}
    for entry in data["models"]:
        name = entry.get("name", "?")
        unknown = set(entry) - _FIELDS
        missing = _REQUIRED - set(entry)
        if unknown or missing:
            raise ValueError(
                f"registry entry {name}: unknown fields {unknown or '{}'}, missing {missing or '{}'}"
            )
        source = entry["source"]
        if source not in ("hub", "build", "export") or (source == "hub") != bool(entry["repo"]):
            raise ValueError(f"registry entry {name}: a hub model needs a repo, a built one none")
        if (source == "export") != bool(entry.get("arch") and entry.get("pretrained")):
            raise ValueError(f"registry entry {name}: an exported model needs arch and pretrained")
        if name in models:
            raise ValueError(f"registry entry {name} appears twice")
        try:
            cost = Cost(**entry["cost"]) if entry.get("cost") else None
        except TypeError as exc:
            raise ValueError(f"registry entry {name}: bad cost ({exc})") from None
        models[name] = ModelSpec(**dict(entry, cost=cost))
    default = data["default"]
    if default not in models:
        raise ValueError(f"registry default {default!r} is not an entry")
    return models, default


def _load() -> tuple[dict[str, ModelSpec], str]:
    text = resources.files("pixgrep.models").joinpath("registry.json").read_text(encoding="utf-8")
    return parse_registry(json.loads(text))


MODELS, DEFAULT_MODEL = _load()


def _aliases() -> dict[str, str]:
    """Lower-cased names and Immich repository spellings -> registry name."""
    table = {}
    for spec in MODELS.values():
        table[spec.name.lower()] = spec.name
        if spec.repo:
            table[spec.repo.split("/")[-1].lower()] = spec.name
    return table


def find_spec(name: str) -> ModelSpec | None:
    """The registry entry called `name` (any case, or Immich's spelling), or None."""
    if name in MODELS:
        return MODELS[name]
    name = _aliases().get(name.lower(), "")
    return MODELS.get(name)


def spec_for_repo(repo: str) -> ModelSpec | None:
    """The registry entry downloaded from this hub repository, if there is one."""
    return next((s for s in MODELS.values() if s.repo and s.repo.lower() == repo.lower()), None)


def get_spec(name: str) -> ModelSpec:
    """The registry entry called `name` (any case, or Immich's spelling); PixgrepError with close
    names if there is none."""
    spec = find_spec(name)
    if spec is not None:
        return spec
    aliases = _aliases()
    close = difflib.get_close_matches(name.lower(), list(aliases), n=3, cutoff=0.5)
    close = list(dict.fromkeys(aliases[c] for c in close))
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise PixgrepError(
        f"unknown model {name!r}{hint} (see `pixgrep models list`, pass hf:OWNER/REPO for a hub "
        "repository, or a model folder path)"
    )


def cost_label(cost: Cost | None) -> str:
    """'2.9x' (image cost relative to ViT-B-32 int8), '-' where not measured."""
    return "-" if cost is None else f"{cost.image_rel:.1f}x"


def markdown_table() -> str:
    """The registry table of docs/models.md, generated from the data."""

    def figure(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    lines = [
        "| name | dims | px | languages | ImageNet top-1 | Flickr30k i2t / t2i R@1 | COCO i2t / t2i R@1 "
        "| XM3600 i2t / t2i R@1 | image cost |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for spec in MODELS.values():
        name = f"**{spec.name}** (default)" if spec.name == DEFAULT_MODEL else spec.name
        if spec.source == "build":
            cost = cost_label(spec.cost)
            lines.append(f"| {name} | from the built folder | | {spec.languages} | | | | | {cost} |")
            continue
        lines.append(
            f"| {name} | {spec.dim} | {spec.image_size} | {spec.languages} | {figure(spec.imagenet_top1)} | "
            f"{figure(spec.flickr_i2t_r1)} / {figure(spec.flickr_t2i_r1)} | "
            f"{figure(spec.coco_i2t_r1)} / {figure(spec.coco_t2i_r1)} | "
            f"{figure(spec.xm3600_i2t_r1)} / {figure(spec.xm3600_t2i_r1)} | {cost_label(spec.cost)} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m pixgrep.models.registry > the table for docs/models.md
    print(markdown_table(), end="")
