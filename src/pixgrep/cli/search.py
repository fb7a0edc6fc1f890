"""`pixgrep search QUERY...` (and its short form `pixgrep QUERY...`): index the folders, then search.

Heavy modules (numpy, the model runtime) are imported inside the handler, so `--help` is fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

from pixgrep.errors import PixgrepError

if TYPE_CHECKING:
    from pixgrep.search.options import SearchOptions

DESCRIPTION = """\
Find images by a description, by an example image, or both. By default the folders to search
(--in, default: the current folder) are indexed first (only new and changed files are encoded),
then searched; results come only from those folders."""

EPILOG = """\
query:
  A query is one or more terms joined by + and - (each operator its own word):
    pixgrep "a kitten peeking from behind a corner"
    pixgrep horse + stripes                    add terms
    pixgrep "2:golden retriever" + ./pool.jpg  WEIGHT: scales a term (default 1)
    pixgrep ./racing-car.jpg - "2:sports car" + snow
    pixgrep https://example.org/cat.jpg        an image URL (downloaded, 20 MB cap)
  Words with no + or - between them are one text: pixgrep a red fox searches "a red fox".
  A term that names an existing file is an image; one spelled like a path (/..., ./..., ~/...)
  must exist. Only the first NUMBER: is a weight: "1:3:10 to yuma" searches "3:10 to yuma".
  In one quoted argument, + and - are plain text: pixgrep "rock + roll" searches that text.
  To search for a word that is also a command name (index, stats, ...), write `pixgrep search WORD`.

examples:
  pixgrep -n -k 50 -f sunset | xargs -d '\\n' feh     paths only, no indexing, top 50
  pixgrep --in ~/Photos --in /mnt/nas "red car" --json
  pixgrep --after 2019-05 --before 2019-06 beach    taken in May 2019
  pixgrep --threshold 0.25 "a dog on a sofa"        only scores of at least 0.25
  pixgrep -p kitty                                  inline previews (Kitty, iTerm2, WezTerm, ...)

exit status: 0 matches printed, 1 no match, 2 an error (one line on stderr).
Full grammar and the rclip option mapping: docs/search.md."""


def _score(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("a cosine score is between -1 and 1")
    return value


def register(subparsers) -> None:
    from pixgrep.cli.options import add_common_options, whole_number

    parser = subparsers.add_parser(
        "search",
        help="find images by text, by example image, or both (also: pixgrep QUERY)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "query",
        nargs="+",
        metavar="QUERY",
        help="text, an image path or an image URL; join terms with + and -",
    )
    parser.add_argument(
        "-a", "--add", action="append", default=[], metavar="TERM", help="add a term (same as `+ TERM`)"
    )
    parser.add_argument(
        "-s",
        "--subtract",
        "--sub",
        action="append",
        default=[],
        metavar="TERM",
        help="subtract a term (same as `- TERM`)",
    )
    parser.add_argument(
        "--in",
        dest="roots",
        action="append",
        metavar="DIR",
        help="folder to index and search, repeatable (default: the current folder)",
    )
    parser.add_argument(
        "-k",
        "-t",
        "--top",
        dest="top",
        type=whole_number(1),
        default=10,
        metavar="N",
        help="number of results (default: 10)",
    )
    parser.add_argument(
        "--offset", type=whole_number(0), default=0, metavar="N", help="skip the first N results (paging)"
    )
    parser.add_argument(
        "-n",
        "--no-index",
        "--no-indexing",
        "--skip-index",
        "--skip-indexing",
        dest="no_index",
        action="store_true",
        help="search what the catalog holds; do not walk the folders first",
    )
    parser.add_argument("--threshold", type=_score, metavar="S", help="only results scoring at least S")
    parser.add_argument(
        "--after", metavar="DATE", help="only images taken on or after DATE (YYYY, YYYY-MM, YYYY-MM-DD)"
    )
    parser.add_argument("--before", metavar="DATE", help="only images taken before DATE")
    parser.add_argument(
        "--exclude",
        "--exclude-dir",
        action="append",
        default=[],
        metavar="GLOB",
        help="skip files and folders matching GLOB (name, relative or absolute path), repeatable",
    )
    parser.add_argument(
        "--include-hidden", action="store_true", help="also index and show hidden (dot) files and folders"
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "-f",
        "--paths-only",
        "--filepath-only",
        dest="paths_only",
        action="store_true",
        help="print one path per line, nothing else (for pipes)",
    )
    output.add_argument(
        "--json",
        action="store_true",
        help="print JSON lines: path, score, size, width, height, taken_at",
    )
    output.add_argument(
        "-p",
        "--preview",
        action="store_true",
        help="draw each result in the terminal (Kitty and iTerm2 image protocols)",
    )
    parser.add_argument(
        "-H",
        "--preview-height",
        type=whole_number(1),
        default=400,
        metavar="PX",
        help="preview height in pixels (default: 400)",
    )
    add_common_options(parser)
    parser.set_defaults(func=run)


def options_from_args(args: argparse.Namespace, roots: list[str]) -> SearchOptions:
    """The search flags as the engine's SearchOptions (validated there, before any work)."""
    from pixgrep.search.options import SearchOptions

    return SearchOptions(
        k=args.top,
        offset=args.offset,
        threshold=args.threshold,
        roots=tuple(roots),
        after=args.after,
        before=args.before,
        exclude=tuple(args.exclude),
        include_hidden=args.include_hidden,
    )


def run(args: argparse.Namespace) -> int:
    from pixgrep.search.query import parse_query

    # Everything a user can get wrong is checked before the catalog is opened or a folder walked.
    tokens = list(args.query)
    for term in args.add:
        tokens += ["+", term]
    for term in args.subtract:
        tokens += ["-", term]
    terms = parse_query(tokens)
    roots = [os.path.abspath(os.path.expanduser(root)) for root in (args.roots or ["."])]
    for given, root in zip(args.roots or ["."], roots, strict=True):
        if not os.path.exists(root):
            raise PixgrepError(f"--in {given}: no such folder")
        if not os.path.isdir(root):
            raise PixgrepError(f"--in {given}: not a folder")
    options = options_from_args(args, roots)

    import pixgrep

    with pixgrep.open_catalog(args.catalog, args.model) as catalog:
        if not args.no_index:
            catalog.index(roots, exclude=args.exclude, include_hidden=args.include_hidden, progress=True)
        results = catalog.search(terms, options)
    _render(results, args)
    if not results:
        hint = " (-n searches only what was indexed before; run without -n to index)" if args.no_index else ""
        print(f"pixgrep: no matching images{hint}", file=sys.stderr)
        return 1
    return 0


def _render(results, args: argparse.Namespace) -> None:
    if args.paths_only:
        for result in results:
            _write(result.path + "\n")
    elif args.json:
        for result in results:
            # A path that is not valid UTF-8 stays a JSON \udcXX escape, so every line is valid JSON.
            _write(json.dumps(result.to_json(), ensure_ascii=False) + "\n", errors="backslashreplace")
    else:
        if results:
            _write("score  path\n")
        for result in results:
            _write(f"{result.score:5.3f}  {result.path}\n")
            if args.preview:
                from pixgrep.search.preview import preview

                try:
                    _write(preview(result.path, args.preview_height))
                except PixgrepError as exc:
                    _write(f"       (no preview: {exc})\n")
    sys.stdout.flush()


def _write(text: str, errors: str = "surrogateescape") -> None:
    """Write to stdout as bytes: a path that is not valid UTF-8 comes out as it is on disk."""
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:  # a replaced stdout (tests, notebooks) takes text
        sys.stdout.write(text)
    else:
        buffer.write(text.encode("utf-8", errors))
