"""Options and argument types shared by the command modules (one definition each)."""

from __future__ import annotations

import argparse
import os


def add_model_option(parser: argparse.ArgumentParser, *, lang: bool = True) -> None:
    """--model, --device and (unless `lang` is False: search declares its own, SearchOptions.lang)
    --lang, the process's query language."""
    parser.add_argument(
        "--model",
        metavar="NAME_OR_DIR",
        default=os.environ.get("PIXGREP_MODEL"),
        help="model name from `pixgrep models list`, hf:OWNER/REPO (a hub repository), or a model "
        "folder; NAME@int8 for its int8 variant (default: $PIXGREP_MODEL, else the catalog's model when it "
        "holds vectors of one model, else the registry default; a catalog of several asks for --model)",
    )
    parser.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default=None,
        help="where the model runs: cuda needs onnxruntime-gpu and a GPU; auto (default) takes the GPU "
        "when both are there, else the CPU ($PIXGREP_DEVICE)",
    )
    if not lang:
        return
    parser.add_argument(
        "--lang",
        metavar="LANG",
        type=_query_language,
        help="language of text queries, for models whose text tower takes one (NLLB-CLIP): de, zh, "
        "pt_BR or deu_Latn (default: $PIXGREP_LANG, else the locale, else English)",
    )


def _query_language(value: str) -> str:
    """--lang: checked now, and made the language of every encoder this command creates."""
    from pixgrep.errors import PixgrepError
    from pixgrep.models.languages import set_default_language

    try:
        set_default_language(value)
    except PixgrepError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def add_common_options(parser: argparse.ArgumentParser, *, model: bool = True, lang: bool = True) -> None:
    """Options shared by every command that opens a catalog."""
    parser.add_argument(
        "--catalog",
        metavar="PATH",
        default=os.environ.get("PIXGREP_CATALOG"),
        help="catalog file (default: $PIXGREP_CATALOG or the user data directory)",
    )
    if model:
        add_model_option(parser, lang=lang)


# The largest count any option takes: past it a number overflows the C libraries it reaches
# (SQLite, numpy, pyarrow), and no catalog, page or batch is that big.
MAX_COUNT = 10**9


def whole_number(minimum: int, maximum: int = MAX_COUNT):
    """An argparse type: a whole number from `minimum` to `maximum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}")
        return value

    return parse


def number_between(low: float, high: float, what: str, *, low_open: bool = False):
    """An argparse type: a finite number in [low, high] ((low, high] with low_open); `what` names it
    in the error ("a cosine score")."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        # NaN fails both comparisons, so it is refused here too
        if not ((low < value) if low_open else (low <= value)) or not value <= high:
            raise argparse.ArgumentTypeError(f"{what} is between {low:g} and {high:g}")
        return value

    return parse


def add_json_option(parser: argparse.ArgumentParser, help: str = "print one JSON object instead of a table"):
    parser.add_argument("--json", action="store_true", help=help)


def add_in_option(parser: argparse.ArgumentParser, help: str) -> None:
    """--in DIR (repeatable) into args.roots: the folders a command looks under."""
    parser.add_argument("--in", dest="roots", action="append", metavar="DIR", help=help)


def add_walk_options(parser: argparse.ArgumentParser, *, exclude_help: str, hidden_help: str) -> None:
    """--exclude GLOB (repeatable; --exclude-dir is the same) and --include-hidden: what a walk skips."""
    parser.add_argument(
        "--exclude", "--exclude-dir", action="append", default=[], metavar="GLOB", help=exclude_help
    )
    parser.add_argument("--include-hidden", action="store_true", help=hidden_help)


def add_batch_size_option(parser: argparse.ArgumentParser, *, default: int | None, help: str) -> None:
    parser.add_argument("--batch-size", type=whole_number(1), default=default, metavar="N", help=help)


def add_training_options(parser: argparse.ArgumentParser, *, epochs: int, epochs_help: str) -> None:
    """--seed, --epochs and --threads of a training command (torch threads: results are reproducible
    for a fixed count)."""
    parser.add_argument("--seed", type=whole_number(0), default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--epochs", type=whole_number(1), default=epochs, help=f"{epochs_help} (default: {epochs})"
    )
    parser.add_argument(
        "--threads",
        type=whole_number(1, 1024),
        default=1,
        help="torch threads (default: 1; small matrices gain nothing from more, and results are "
        "reproducible for a fixed count)",
    )


def add_images_option(parser: argparse.ArgumentParser, help: str) -> None:
    """--images DIR (required): the folder a data set's image names are relative to."""
    parser.add_argument("--images", required=True, metavar="DIR", help=help)


def add_captions_options(parser: argparse.ArgumentParser, *, split_required: bool) -> None:
    """--captions FILE (required) and --split LIST: a captioned data set and one split of it."""
    parser.add_argument(
        "--captions", required=True, metavar="FILE", help="captions TSV or JSON (docs/quality.md)"
    )
    parser.add_argument(
        "--split",
        required=split_required,
        metavar="LIST",
        help="the split's image names, one per line" + ("" if split_required else " (default: every image)"),
    )


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
