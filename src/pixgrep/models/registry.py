"""Known models, as data. A name resolves to a folder: downloaded from the hub, or built locally.

Quality figures are open_clip's published zero-shot results (docs/openclip_results.csv and the
retrieval tables of the open_clip repository): ImageNet-1k top-1, and image-to-text / text-to-image
Recall@1 on Flickr30k (1k test) and MSCOCO (5k test). They were measured by open_clip with the
original PyTorch weights; the parity tests (docs/models.md) are why they hold for the ONNX exports.
None where we have not checked the published number.
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


def _hub(name: str, repo: str, dim: int, image_size: int, figures: tuple, note: str = "") -> ModelSpec:
    imagenet, f_i2t, f_t2i, c_i2t, c_t2i = figures
    return ModelSpec(
        name, "hub", f"immich-app/{repo}", dim, image_size, 77, imagenet, f_i2t, f_t2i, c_i2t, c_t2i, note
    )


# Names are open_clip's ARCH__pretrained-tag. Immich spells some tags with hyphens in its repository
# names (laion2b-s34b-b79k); those spellings are accepted as aliases. All use the CLIP BPE tokenizer.
# figures: (ImageNet top-1, Flickr30k i2t R@1, Flickr30k t2i R@1, COCO i2t R@1, COCO t2i R@1), %,
# from open_clip's docs/openclip_results.csv and docs/openclip_retrieval_results.csv.
MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _hub(
            "ViT-B-32__laion2b_s34b_b79k",
            "ViT-B-32__laion2b-s34b-b79k",
            512,
            224,
            (66.56, 84.10, 66.78, 56.32, 39.34),
            "default: best quality per CPU second",
        ),
        _hub("ViT-B-32__laion2b_e16", "ViT-B-32__laion2b_e16", 512, 224, (65.65, 84.40, 66.38, 56.24, 39.13)),
        _hub(
            "ViT-B-32__laion400m_e32",
            "ViT-B-32__laion400m_e32",
            512,
            224,
            (60.24, 77.70, 59.62, 52.44, 34.31),
        ),
        _hub("ViT-B-32__openai", "ViT-B-32__openai", 512, 224, (63.32, 78.90, 58.78, 50.12, 30.44)),
        _hub("ViT-B-16__openai", "ViT-B-16__openai", 512, 224, (68.34, 82.20, 62.16, 52.42, 33.09)),
        _hub(
            "ViT-B-16__laion400m_e32",
            "ViT-B-16__laion400m_e32",
            512,
            224,
            (67.05, 83.50, 65.66, 55.42, 38.35),
        ),
        _hub(
            "ViT-B-16-plus-240__laion400m_e32",
            "ViT-B-16-plus-240__laion400m_e32",
            640,
            240,
            (69.19, 86.50, 68.10, 58.58, 41.00),
        ),
        _hub("ViT-L-14__openai", "ViT-L-14__openai", 768, 224, (75.54, 85.20, 64.96, 56.34, 36.51)),
        _hub("ViT-L-14-336__openai", "ViT-L-14-336__openai", 768, 336, (76.56, 87.70, 66.90, 57.94, 37.09)),
        _hub(
            "ViT-L-14__laion400m_e32",
            "ViT-L-14__laion400m_e32",
            768,
            224,
            (72.77, 87.60, 70.22, 59.74, 43.00),
        ),
        _hub(
            "ViT-L-14__laion2b_s32b_b82k",
            "ViT-L-14__laion2b-s32b-b82k",
            768,
            224,
            (75.25, 89.50, 75.52, 63.36, 46.51),
        ),
        _hub(
            "ViT-L-14-quickgelu__dfn2b",
            "ViT-L-14-quickgelu__dfn2b",
            768,
            224,
            (81.41, 89.60, 75.46, 65.60, 48.56),
        ),
        _hub(
            "ViT-H-14__laion2b_s32b_b79k",
            "ViT-H-14__laion2b-s32b-b79k",
            1024,
            224,
            (77.96, 90.70, 77.64, 65.92, 49.48),
        ),
        _hub(
            "ViT-H-14-quickgelu__dfn5b",
            "ViT-H-14-quickgelu__dfn5b",
            1024,
            224,
            (83.44, 92.80, 80.12, 72.30, 53.91),
        ),
        _hub(
            "ViT-H-14-378-quickgelu__dfn5b",
            "ViT-H-14-378-quickgelu__dfn5b",
            1024,
            378,
            (84.37, 94.00, 82.02, 71.88, 55.64),
        ),
        _hub(
            "ViT-g-14__laion2b_s12b_b42k",
            "ViT-g-14__laion2b-s12b-b42k",
            1024,
            224,
            (76.63, 90.90, 76.42, 64.92, 48.02),
        ),
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


def _aliases() -> dict[str, str]:
    """Lower-cased names and Immich repository spellings -> registry name."""
    table = {}
    for spec in MODELS.values():
        table[spec.name.lower()] = spec.name
        if spec.repo:
            table[spec.repo.split("/")[-1].lower()] = spec.name
    return table


def get_spec(name: str) -> ModelSpec:
    """The registry entry called `name` (any case, or Immich's spelling); PixgrepError with close
    names if there is none."""
    if name in MODELS:
        return MODELS[name]
    aliases = _aliases()
    if name.lower() in aliases:
        return MODELS[aliases[name.lower()]]
    close = difflib.get_close_matches(name.lower(), list(aliases), n=3, cutoff=0.5)
    close = list(dict.fromkeys(aliases[c] for c in close))
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise PixgrepError(
        f"unknown model {name!r}{hint} (see `pixgrep models list`, or pass a model folder path)"
    )
