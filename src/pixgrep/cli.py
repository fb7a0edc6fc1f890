"""The `pixgrep` command: parse arguments, call the API, render. Thin on purpose.

Each feature area registers its own sub-commands from a `commands` module, so this file only
dispatches. Those modules import heavy libraries (numpy, onnxruntime) inside their handlers, never
at import time, so `pixgrep --help` and a text query start fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from pixgrep import __version__
from pixgrep.errors import PixgrepError

COMMAND_MODULES = (
    "pixgrep.search.commands",  # search (also the short form `pixgrep QUERY`)
    "pixgrep.catalog.commands",  # index, stats
    "pixgrep.models.commands",  # models list/info/export
    "pixgrep.models.mini.commands",  # train mini
    "pixgrep.eval.commands",  # eval, rank, probe, classify
    "pixgrep.server.commands",  # serve
)

EPILOG = """\
examples:
  pixgrep "a kitten peeking from behind a corner"       index this folder, then search it
  pixgrep --in ~/Photos "horse" + "0.5:stars" - "day"   query arithmetic with weights
  pixgrep ./ref.jpg + "in red"                          image + text (composed query)
  pixgrep -n -k 50 -f "sunset" | xargs open             paths only, no re-index
  pixgrep index ~/Photos --json                         index only, print a JSON summary
  pixgrep models list                                   known models and what is cached

environment:
  PIXGREP_CATALOG   catalog file (default: the user data directory)
  PIXGREP_CACHE     model cache folder (default: the user cache directory)
  PIXGREP_MODEL     default model name or folder
"""


def add_model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        metavar="NAME_OR_DIR",
        default=os.environ.get("PIXGREP_MODEL"),
        help="model name from `pixgrep models list`, or a model folder "
        "(default: $PIXGREP_MODEL or the registry default)",
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


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit 2, like every other user error
        self.exit(2, f"pixgrep: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pixgrep",
        description="grep for pictures: find images by description, by example, or both.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pixgrep {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _subcommand_names(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # `pixgrep QUERY ...` is short for `pixgrep search QUERY ...`.
    if argv and argv[0] not in _subcommand_names(parser) and argv[0] not in ("-h", "--help", "--version"):
        argv.insert(0, "search")
    if not argv:
        parser.print_help()
        return 2
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PixgrepError as exc:
        print(f"pixgrep: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pixgrep: interrupted; the catalog is consistent, run again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `pixgrep -f ... | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
