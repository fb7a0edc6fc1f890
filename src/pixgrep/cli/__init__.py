"""The `pixgrep` command: parse arguments, call the API, render. Thin on purpose.

Each area's sub-commands live in a module of this package (search, index, models, train, eval,
study, serve, transfer, composed), and the one command table, COMMANDS below, says which module
adds which commands where; shared options are in `options`. Core packages never import
from here. The command modules import heavy libraries (numpy, onnxruntime) inside their handlers,
never at import time, so `pixgrep --help` and a text query start fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

from pixgrep import __version__
from pixgrep.cli import composed, duplicates, eval_words, index, models, search, serve, study, train, transfer
from pixgrep.cli import eval as eval_commands
from pixgrep.errors import PixgrepError, was_interrupted, watch_interrupts

# The command table, in the order of `--help`: (group, register). group None: the function adds
# top-level commands; a group name: it adds sub-commands to that group, which an earlier line made.
COMMANDS = (
    (None, search.register),  # search (also the short form `pixgrep QUERY`)
    (None, index.register),  # index, stats
    (None, duplicates.register),  # duplicates
    (None, models.register),  # models list/info/download/export/quantize
    ("models", composed.register_models),  # models add-combiner
    (None, train.register),  # train mini
    ("train", composed.register_train),  # train combiner
    (None, eval_commands.register),  # eval retrieval/classes, classify
    ("eval", composed.register_eval),  # eval composed/make-cir
    ("eval", eval_words.register),  # eval words
    (None, study.register),  # study rank/probe
    (None, serve.register),  # serve
    (None, transfer.register),  # export-vectors (alias: export), import
)
# Earlier names that scripts may use: the first word becomes the command path.
ALIASES = {"rank": ("study", "rank"), "probe": ("study", "probe")}

EPILOG = """\
examples:
  pixgrep "a kitten peeking from behind a corner"       index this folder, then search it
  pixgrep --in ~/Photos "horse" + "0.5:stars" - "day"   query arithmetic with weights
  pixgrep ./ref.jpg + "in red"                          image + text (composed query)
  pixgrep -n -k 50 -f "sunset" | xargs open             paths only, no re-index
  pixgrep index ~/Photos --json                         index only, print a JSON summary
  pixgrep models list                                   known models and what is cached
  pixgrep --catalog ~/work.db index ~/Photos            options may come before the command

Options before a command name belong to that command (as with git -C): pixgrep --model M
models list is pixgrep models list --model M, and an option the command does not take is
an error. Words that are not a command name are a search: to search for the word "index",
write pixgrep search index.

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
    for group, register in COMMANDS:
        register(sub if group is None else _subcommands(sub.choices[group]))
    return parser


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise LookupError(f"{parser.prog} has no sub-commands")


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    try:
        return dict(_subcommands(parser).choices)
    except LookupError:
        return {}


def _takes_value(parsers: list[argparse.ArgumentParser], option: str) -> bool:
    """Does `option` (as written before a command) consume the next word? Asked of the parsers
    that could own it; `--opt=value` never does."""
    if "=" in option or not option.startswith("--") and len(option) > 2:
        return False
    for parser in parsers:
        action = parser._option_string_actions.get(option)
        if action is not None:
            return action.nargs != 0
    return False


def route(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """The argument list argparse reads: `pixgrep QUERY` is `pixgrep search QUERY`; an old name
    becomes its command path (ALIASES); options before a command go after its name, where the
    command reads them (`pixgrep --model M models list`); an option that command does not take
    is a one-line error, never a search for the command's name."""
    top = _commands(parser)
    if not argv or argv[0] in ("-h", "--help", "--version"):
        return argv
    leading: list[str] = []
    rest = argv
    if argv[0].startswith("-"):
        everywhere = [top["search"], *top.values(), *(p for c in top.values() for p in _commands(c).values())]
        i = 0
        while i < len(argv) and argv[i].startswith("-") and argv[i] not in ("-", "--"):
            i += 2 if _takes_value(everywhere, argv[i]) else 1
        if i >= len(argv) or (argv[i] not in top and argv[i] not in ALIASES):
            return ["search", *argv]
        leading, rest = argv[:i], argv[i:]
    if rest[0] in ALIASES:
        rest = [*ALIASES[rest[0]], *rest[1:]]
    if rest[0] not in top:
        return ["search", *argv]
    path, target = rest[:1], top[rest[0]]
    inner = _commands(target)
    if len(rest) > 1 and rest[1] in inner:
        path, target = rest[:2], inner[rest[1]]
    i = 0
    while i < len(leading):
        name = leading[i].split("=", 1)[0]
        if name not in target._option_string_actions:
            raise CommandLineError(
                f"{name} is not an option of `pixgrep {' '.join(path)}` (to search for the word "
                f"{path[0]!r}, write `pixgrep search {path[0]}`)"
            )
        i += 2 if _takes_value([target], leading[i]) else 1
    return [*path, *leading, *rest[len(path) :]]


class CommandLineError(Exception):
    """A command line that names no runnable command (one line, exit 2)."""


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
    try:
        argv = route(parser, argv)
    except CommandLineError as exc:
        print(f"pixgrep: error: {exc}", file=sys.stderr)
        return 2
    if not argv:
        parser.print_help()
        return 2
    args = parser.parse_args(argv)
    from pixgrep.cli.logs import configure_logging  # here: `pixgrep --help` needs no logging

    configure_logging()
    watch_interrupts()
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
    except (KeyboardInterrupt, ImportError) as exc:
        if isinstance(exc, ImportError) and not was_interrupted(exc):
            raise
        print("pixgrep: interrupted; the catalog is consistent, run again to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # an SQLite failure that no storage layer turned into one line
        from pixgrep.catalog.db import catalog_error_line

        line = catalog_error_line(exc, getattr(args, "catalog", None))
        if line is None:  # anything else, and errors in pixgrep's own SQL, are bugs: loud
            raise
        print(f"pixgrep: error: {line}", file=sys.stderr)
        return 2
