"""Options and argument types shared by the command modules (one definition each)."""

from __future__ import annotations

import argparse
import os


def add_model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        metavar="NAME_OR_DIR",
        default=os.environ.get("PIXGREP_MODEL"),
        help="model name from `pixgrep models list`, hf:OWNER/REPO (a hub repository), or a model "
        "folder; NAME@int8 for its int8 variant (default: $PIXGREP_MODEL or the registry default)",
    )
    parser.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default=None,
        help="where the model runs: cuda needs onnxruntime-gpu and a GPU; auto (default) takes the GPU "
        "when both are there, else the CPU ($PIXGREP_DEVICE)",
    )


def add_common_options(parser: argparse.ArgumentParser, *, model: bool = True) -> None:
    """Options shared by every command that opens a catalog."""
    parser.add_argument(
        "--catalog",
        metavar="PATH",
        default=os.environ.get("PIXGREP_CATALOG"),
        help="catalog file (default: $PIXGREP_CATALOG or the user data directory)",
    )
    if model:
        add_model_option(parser)


def whole_number(minimum: int):
    """An argparse type: a whole number no smaller than `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return value

    return parse


def human_size(count: int | None) -> str:
    """Bytes for people: 512 B, 3.4 MB, 1.2 GB; '-' when unknown."""
    if count is None:
        return "-"
    size = float(count)
    for unit in ("B", "KB", "MB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"
