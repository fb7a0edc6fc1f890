"""Known models, as data. A name resolves to a folder: downloaded from the hub, or built locally.

Quality figures are open_clip's published zero-shot results (docs/openclip_results.csv and the
retrieval tables of the open_clip repository): ImageNet-1k top-1, and image-to-text / text-to-image
Recall@1 on Flickr30k and MSCOCO (5k test). None where we have not checked the published number.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass

from pixgrep.errors import PixgrepError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str  # "hub": download `repo` from Hugging Face; "build": pixgrep-mini, built locally
    repo: str | None
    dim: int | None
    image_size: int | None
    context_length: int | None
    imagenet_top1: float | None = None  # zero-shot, %
    flickr_i2t_r1: float | None = None  # image -> text Recall@1, %
    flickr_t2i_r1: float | None = None  # text -> image Recall@1, %
    coco_i2t_r1: float | None = None
    coco_t2i_r1: float | None = None
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _hub(name: str, dim: int, image_size: int, context_length: int = 77, **figures) -> ModelSpec:
    return ModelSpec(name, "hub", f"immich-app/{name}", dim, image_size, context_length, **figures)


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _hub("ViT-B-32__laion2b_s34b_b79k", 512, 224, note="default: best quality per CPU second"),
        _hub("ViT-B-32__openai", 512, 224),
        _hub("ViT-B-16__laion2b_s34b_b88k", 512, 224),
        _hub("ViT-B-16__openai", 512, 224),
        _hub("ViT-L-14__laion2b_s32b_b82k", 768, 224),
        _hub("ViT-L-14__openai", 768, 224),
        ModelSpec(
            "pixgrep-mini",
            "build",
            None,
            None,
            None,
            None,
            note="small and fast; built on first use (pip install 'pixgrep[mini]')",
        ),
    )
}

DEFAULT_MODEL = "ViT-B-32__laion2b_s34b_b79k"


def get_spec(name: str) -> ModelSpec:
    """The registry entry called `name`; PixgrepError with close names if there is none."""
    if name in MODELS:
        return MODELS[name]
    folded = {n.lower(): n for n in MODELS}
    if name.lower() in folded:
        return MODELS[folded[name.lower()]]
    close = difflib.get_close_matches(name, list(MODELS), n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise PixgrepError(
        f"unknown model {name!r}{hint} (see `pixgrep models list`, or pass a model folder path)"
    )
