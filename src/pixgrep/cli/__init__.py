"""The `pixgrep` command: parse arguments, call the API, render. Thin on purpose.

Each area's sub-commands live in a module of this package (search, index, models, train, eval,
serve), listed once in COMMAND_MODULES; shared options are in `options`. Core packages never import
from here. The command modules import heavy libraries (numpy, onnxruntime) inside their handlers,
never at import time, so `pixgrep --help` and a text query start fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

from pixgrep import __version__
from pixgrep.cli import duplicates, index, models, search, serve, train, transfer
from pixgrep.cli import eval as eval_commands
from pixgrep.errors import PixgrepError

# The command table: each module registers its sub-commands. Order is the order of `--help`.
COMMAND_MODULES = (
    search,  # search (also the short form `pixgrep QUERY`)
    index,  # index, stats
    duplicates,  # duplicates
    models,  # models list/info/download/export
    train,  # train mini
    eval_commands,  # eval, rank, probe, classify
    serve,  # serve
    transfer,  # export --parquet, import
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
  PIXGREP_MODEL     default model: registry name, hf:OWNER/REPO or folder
  PIXGREP_DEVICE    auto, cpu or cuda (where the model runs)
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line and exit 2, like every other user error
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
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def _subcommand_names(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def os_error_line(exc: OSError) -> str:
    """One line for an OSError: its reason and the file it names, shortened when very long."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    name = exc.filename
    if name is None:
        return reason
    text = os.fsdecode(name) if isinstance(name, bytes | os.PathLike) else str(name)
    text = text if len(text) <= 200 else f"{text[:120]}...{text[-40:]} ({len(text)} characters)"
    return f"{reason}: {text!r}" if "\n" in text else f"{reason}: {text}"


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
    from pixgrep.cli.logs import configure_logging  # here: `pixgrep --help` needs no logging

    configure_logging()
    try:
        if getattr(args, "device", None):  # one choice for every encoder this command creates
            from pixgrep.models.devices import set_default_device

            set_default_device(args.device)
        return int(args.func(args) or 0)
    except PixgrepError as exc:
        print(f"pixgrep: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `pixgrep -f ... | head`
        sys.stderr.close()
        return 0
    except OSError as exc:  # after BrokenPipeError, which is one
        # A file system refusal of what the user named (a name over the length limit, a path
        # through a file, a full disk): the storage layers keep the catalog consistent; say it once.
        print(f"pixgrep: error: {os_error_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pixgrep: interrupted; the catalog is consistent, run again to resume", file=sys.stderr)
        return 130
