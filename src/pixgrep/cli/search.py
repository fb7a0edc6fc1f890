"""`pixgrep search QUERY...` (and its short form `pixgrep QUERY...`): index the folders, then search.

Heavy modules (numpy, the model runtime) are imported inside the handler, so `--help` is fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import TYPE_CHECKING, Any

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
    pixgrep ./beach.jpg + "at night"           image + text: a composed query (see --fusion)
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
  pixgrep --near Florence                           photos taken within 10 km of Florence, newest first
  pixgrep --near 43.77,11.25,2 --camera nikon bridge  a query inside those filters
  pixgrep --tag holiday --place italy               keywords from XMP/IPTC and darktable/digiKam sidecars

exit status: 0 matches printed, 1 no match, 2 an error (one line on stderr).
Full grammar and the rclip option mapping: docs/search.md."""


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
        nargs="*",
        metavar="QUERY",
        help="text, an image path or an image URL; join terms with + and - "
        "(none with a filter below: list the matching images, newest first)",
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
    add_search_options(parser)
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
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="say on stderr how the search was done (ANN or exact)"
    )
    parser.add_argument(
        "--local",
        action="store_true",
        help="with -n: search in this process even when a `pixgrep serve` of this catalog and model is "
        "running (by default a text query is handed to it: the same answer, without loading the model)",
    )
    from pixgrep.cli.words_options import add_words_options  # words: text in pictures, names

    add_words_options(parser)
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
    add_common_options(parser, lang=False)  # --lang is a search option (SearchOptions.lang)
    parser.set_defaults(func=run)


def add_search_options(parser: argparse.ArgumentParser) -> None:
    """One flag per SearchOptions field, made from its declaration (search/options.py: names,
    spellings, bounds, help, the CLI's default); the parsed value lands under the field's name."""
    from pixgrep.cli.options import number_between, whole_number
    from pixgrep.search.options import CLI, front_end_default, option_docs

    sections: dict[str, argparse._ArgumentGroup] = {}
    for field, doc in option_docs():
        target: argparse._ActionsContainer = parser
        if doc.section is not None:
            target = sections.get(doc.section) or sections.setdefault(
                doc.section, parser.add_argument_group(doc.section)
            )
        default = front_end_default(field, CLI)
        text = doc.cli_help or doc.help
        kwargs: dict[str, Any] = {"dest": field.name, "help": text}
        if isinstance(default, bool):
            kwargs.update(action="store_false" if default else "store_true", default=default)
        elif doc.repeatable:
            kwargs.update(action="append", default=None if field.name == "roots" else [], metavar=doc.metavar)
        else:
            kwargs.update(default=default, metavar=doc.metavar)
            if doc.choices:
                kwargs.update(choices=doc.choices, metavar=None)
            elif isinstance(field.default, int) and doc.low is not None:
                kwargs["type"] = whole_number(int(doc.low))
            elif doc.low is not None and doc.high is not None:
                kwargs["type"] = number_between(doc.low, doc.high, "a cosine score")
            if default:
                kwargs["help"] = f"{text} (default: {default})"
        target.add_argument(*doc.flags, **kwargs)


def option_values(args: argparse.Namespace, roots: list[str]) -> dict:
    """The search flags by SearchOptions field, as given (dates and places still text, lists for
    the repeatable ones): what SearchOptions checks here, and what a hand-off sends to the
    server's POST /api/search."""
    from pixgrep.cli.words_options import words_mode
    from pixgrep.search.options import option_docs

    values = {field.name: getattr(args, field.name) for field, _ in option_docs()}
    values.update(roots=list(roots), exclude=list(args.exclude), words=words_mode(args))
    return values


def options_from_args(args: argparse.Namespace, roots: list[str]) -> SearchOptions:
    """The search flags as the engine's SearchOptions (validated there, before any work)."""
    from pixgrep.search.options import SearchOptions

    return SearchOptions(**option_values(args, roots))


def run(args: argparse.Namespace) -> int:
    from pixgrep.search.filters import is_uri_scope
    from pixgrep.search.query import parse_query

    # Everything a user can get wrong is checked before the catalog is opened or a folder walked.
    tokens = list(args.query)
    for term in args.add:
        tokens += ["+", term]
    for term in args.subtract:
        tokens += ["-", term]
    options_only = not tokens
    terms = [] if options_only else parse_query(tokens)
    given_roots = args.roots or ["."]
    # An object-store prefix (s3://bucket/photos) scopes the search to what was indexed or imported
    # there; it is never walked here (indexing URIs needs --ray: docs/distributed.md).
    uris = {root for root in given_roots if is_uri_scope(root)}
    roots = [root if root in uris else os.path.abspath(os.path.expanduser(root)) for root in given_roots]
    for given, root in zip(given_roots, roots, strict=True):
        if root in uris:
            continue
        if not os.path.exists(root):
            continue  # an unmounted drive the catalog knows: answered from it (checked below)
        if not os.path.isdir(root):
            raise PixgrepError(f"--in {given}: not a folder")
    options = options_from_args(args, roots)
    if options_only and not options.lists_without_query():
        raise PixgrepError(
            "give a query (text, an image or a URL) or a filter (--near, --camera, --tag, --place, "
            "--after, --before)"
        )

    present = all(root in uris or os.path.exists(root) for root in roots)
    handed = _hand_off(args, terms, roots) if args.no_index and not uris and present else None
    if handed is not None:
        results, notes = handed
        for note in notes:
            print(f"pixgrep: warning: {note}", file=sys.stderr)
        if not results and args.offset:  # the server does not say how many there are
            _render(results, args)
            print(f"pixgrep: no results past offset {args.offset}", file=sys.stderr)
            return 1
        return _finish(results, args, listing=False)

    import pixgrep
    from pixgrep.search.ann import lists_only

    # Only a search that indexes makes a catalog: a mistyped --catalog with -n is an error. One
    # question in this process: a large catalog's ANN graph would cost more to open than to use.
    with lists_only(), pixgrep.open_catalog(args.catalog, args.model, create=not args.no_index) as catalog:
        local = [root for root in roots if root not in uris]
        absent = [(given, root) for given, root in zip(given_roots, roots, strict=True) if root in local]
        absent = [(given, root) for given, root in absent if not os.path.exists(root)]
        if absent:
            _say_absent(catalog, absent)
            local = [root for root in local if os.path.exists(root)]  # never indexed: rows kept
        if not args.no_index and local:
            from pixgrep.catalog.ingest import IndexRunBusy

            try:  # never wait for another run (of another folder, maybe for hours): search what is there
                catalog.index(
                    local,
                    exclude=args.exclude,
                    include_hidden=args.include_hidden,
                    progress=True,
                    ocr=args.ocr,
                    wait=False,
                )
            except IndexRunBusy as busy:
                print(f"pixgrep: warning: {busy}; searching what is already indexed", file=sys.stderr)
        results = _search_with_warnings(catalog, terms or None, options)
        if args.verbose and terms:
            print(f"pixgrep: {_describe_search(catalog.search_index())}", file=sys.stderr)
        if not results and options.offset:
            before = _count_before_offset(catalog, terms or None, options)
            if before:
                _render(results, args, listing=not terms)
                shown = f"{before} or more" if before >= OFFSET_COUNT_CAP else str(before)
                print(f"pixgrep: no results past offset {options.offset} ({shown} in all)", file=sys.stderr)
                return 1
    return _finish(results, args, listing=not terms)


# An --offset past the end is answered with how many results there are, counted up to this many.
OFFSET_COUNT_CAP = 10_000


def _count_before_offset(catalog, terms, options) -> int:
    """How many results the search has before its offset (at most OFFSET_COUNT_CAP)."""
    from pixgrep.search.options import SearchOptions

    first = SearchOptions.of(options, offset=0, k=min(options.offset, OFFSET_COUNT_CAP))
    return len(catalog.search(terms, first))


def _say_absent(catalog, absent: list[tuple[str, str]]) -> None:
    """A folder that is not there now (an unmounted drive) is searched in the catalog, said once
    on stderr; one the catalog holds nothing under stays an error."""
    for given, root in absent:
        if not catalog.holds_under(root):
            raise PixgrepError(f"--in {given}: no such folder")
        print(
            f"pixgrep: warning: --in {given}: the folder is not present; the answer comes from the catalog",
            file=sys.stderr,
        )


def _finish(results, args: argparse.Namespace, listing: bool) -> int:
    _render(results, args, listing=listing)
    if not results:
        hint = " (-n searches only what was indexed before; run without -n to index)" if args.no_index else ""
        print(f"pixgrep: no matching images{hint}", file=sys.stderr)
        return 1
    return 0


def _hand_off(args: argparse.Namespace, terms, roots: list[str]):
    """(results, warnings) from a running `pixgrep serve` of this catalog and model, or None to
    search here (server/handoff.py says when). Text terms only: image terms name files here."""
    if args.local or args.verbose or not terms or any(term.kind != "text" for term in terms):
        return None
    if args.ocr:  # words: reading text is asked of this process
        return None
    from pixgrep.server import handoff

    catalog = args.catalog
    if not catalog:
        from pixgrep.catalog.paths import default_catalog_path

        catalog = default_catalog_path()
    body = option_values(args, roots)
    tone = body["tone"]  # a request carries tone words as one text, as the page sends them
    body["tone"] = (tone if isinstance(tone, str) else ", ".join(tone)) or None
    body["terms"] = [{"kind": "text", "value": term.value, "weight": term.weight} for term in terms]
    if body["lang"] is None:  # this process's language ($PIXGREP_LANG, locale), not the server's
        from pixgrep.models.languages import flores_code

        with contextlib.suppress(PixgrepError):  # a bad $PIXGREP_LANG matters only to NLLB models
            body["lang"] = flores_code(None)
    return handoff.ask(catalog, args.model, body)


def _search_with_warnings(catalog, terms, options):
    """catalog.search, printing each of its notes as one `pixgrep: warning:` line."""
    results = catalog.search(terms, options)
    for note in results.notes:
        print(f"pixgrep: warning: {note}", file=sys.stderr)
    return results


def _describe_search(info: dict | None) -> str:
    """One line: how many images the search covered and whether the ANN index or brute force ran."""
    if info is None:
        return "no search index for this model"
    how = (
        f"ANN index, {info['ann']}" if info["last_method"] == "ann" else "exact (every image in scope scored)"
    )
    extra = f", {info['appended']} appended and {info['dead']} removed since the last rebuild"
    return f"searched {info['rows']} images: {how}{extra}"


_CONTROL_CHARS = {i: f"\\x{i:02x}" for i in (*range(32), 127)} | {9: "\\t", 10: "\\n", 13: "\\r"}


def _table_path(path: str) -> str:
    """A path for one table row: not-UTF-8 bytes and control characters (a newline or a tab in a
    file name) escaped, so one result is one line; -f and --json keep the name exact."""
    from pixgrep.catalog.paths import shown_path

    return shown_path(path).translate(_CONTROL_CHARS)


def _render(results, args: argparse.Namespace, listing: bool = False) -> None:
    if args.paths_only:
        for result in results:
            _write(result.path + "\n")
    elif args.json:
        for result in results:
            # A path that is not valid UTF-8 stays a JSON \udcXX escape, so every line is valid JSON.
            _write(json.dumps(result.to_json(), ensure_ascii=False) + "\n", errors="backslashreplace")
    else:
        if results:  # a listing (filters, no query) is by date: show the date, not a score
            _write("taken                path\n" if listing else "score  path\n")
        for result in results:
            # A name that is not UTF-8 is shown escaped here (caf\xe9.jpg, a\nb.jpg); -f and --json keep it.
            copies = f"  (+{len(result.duplicate_paths)} near-identical)" if result.duplicate_paths else ""
            if listing:
                when = (result.taken_at or "-")[:19].replace("T", " ")
                _write(f"{when:<19}  {_table_path(result.path)}{copies}\n")
            else:
                _write(f"{result.score:5.3f}  {_table_path(result.path)}{copies}\n")
            for copy in result.duplicate_paths:  # the folded copies, each openable by its path
                _write(f"       copy: {_table_path(copy)}\n")
            if result.words:  # why it matched: the words found in its text, name or keywords
                _write(f"       words: {' '.join(result.words)} ({', '.join(result.words_from)})\n")
            if result.parts:
                _write(
                    "       "
                    + ", ".join(f"{text} {score:.2f}" for text, score in result.parts.items())
                    + "\n"
                )
            if args.preview:
                _write(_preview_of(result.path, args.preview_height))
    sys.stdout.flush()


# An object-store result (s3://...) is fetched for its preview: at most this big, this fast.
PREVIEW_MAX_BYTES = 64 * 1024 * 1024
PREVIEW_TIMEOUT_S = 15.0


def _preview_of(path: str, height: int) -> str:
    """The terminal preview of one result, or one "(no preview: why)" line; never an exception."""
    import tempfile

    from pixgrep.images.storage import is_uri, read_bytes
    from pixgrep.search.preview import preview

    try:
        if not is_uri(path):
            return preview(path, height)
        data = read_bytes(path, max_bytes=PREVIEW_MAX_BYTES, timeout=PREVIEW_TIMEOUT_S)
        with tempfile.NamedTemporaryFile(suffix=os.path.splitext(path)[1]) as local:
            local.write(data)
            local.flush()
            return preview(local.name, height)
    except PixgrepError as exc:
        return f"       (no preview: {exc})\n"
    except FileNotFoundError:
        return "       (no preview: the object is gone)\n"
    except OSError as exc:  # unreachable store, over the cap, no answer in time
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"       (no preview: {reason})\n"


def _write(text: str, errors: str = "surrogateescape") -> None:
    """Write to stdout as bytes: a path that is not valid UTF-8 comes out as it is on disk."""
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:  # a replaced stdout (tests, notebooks) takes text
        sys.stdout.write(text)
    else:
        buffer.write(text.encode("utf-8", errors))
