"""Prompt templates for zero-shot classification.

`single` is the one prompt of the rclip paper and CLIP's simplest baseline; `ensemble` is the list
of 80 prompts CLIP used for ImageNet (Radford et al. 2021, the `imagenet_templates` of the CLIP
repository's prompt-engineering notebook; the copy in open_clip's zero_shot_metadata.py is the
same list), stored as data in imagenet_templates.txt, one `{}` per line.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pixgrep.errors import PixgrepError
from pixgrep.textfiles import read_lines

SINGLE_TEMPLATE = "a photo of a {}."
TEMPLATE_MODES = ("single", "ensemble")


def imagenet_templates() -> list[str]:
    text = resources.files("pixgrep.tagging").joinpath("imagenet_templates.txt").read_text("utf-8")
    return [line for line in text.splitlines() if line.strip()]


def read_template_file(path: str | Path) -> list[str]:
    """One template per line with a `{}` where the class name goes; blank lines and # comments skipped."""
    templates = [line for line in read_lines(path, "templates file") if not line.startswith("#")]
    if not templates:
        raise PixgrepError(f"templates file {path} has no templates")
    for template in templates:
        if template.count("{}") != 1:
            raise PixgrepError(
                f"templates file {path}: {template!r} needs exactly one {{}} for the class name"
            )
    return templates


def templates_for(mode: str) -> list[str]:
    """`single`, `ensemble`, or a path to a templates file."""
    if mode == "single":
        return [SINGLE_TEMPLATE]
    if mode == "ensemble":
        return imagenet_templates()
    return read_template_file(mode)
