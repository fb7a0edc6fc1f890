"""The command-line options of words search and OCR (docs/words.md), shared by `search` and `index`."""

from __future__ import annotations

import argparse


def add_words_options(parser: argparse.ArgumentParser) -> None:
    """--words / --no-words (short for --words-mode only / off, SearchOptions.words) and --ocr for
    `pixgrep search`, in the words section that the declared --words-mode opened."""
    from pixgrep.search.options import WORDS

    groups = [g for g in parser._action_groups if g.title == WORDS]
    group = groups[0] if groups else parser.add_argument_group(WORDS)
    mode = group.add_mutually_exclusive_group()
    mode.add_argument(
        "--words",
        dest="words_shortcut",  # merged into --words-mode by words_mode()
        action="store_const",
        const="only",
        default=None,
        help="search the words only (text read in the pictures, names, keywords), best word match "
        "first; same as a query starting with 'words:'. By default a text query is ranked by its "
        "meaning and its words together",
    )
    mode.add_argument(
        "--no-words",
        dest="words_shortcut",
        action="store_const",
        const="off",
        help="rank by the picture's meaning alone (no word index)",
    )
    add_ocr_option(group)


def words_mode(args: argparse.Namespace) -> str:
    """--words-mode, or what --words / --no-words say; the two saying different things is refused
    (one of them would otherwise win without a word)."""
    from pixgrep.errors import PixgrepError

    shortcut, mode = getattr(args, "words_shortcut", None), args.words
    if shortcut is None:
        return mode
    if mode not in ("auto", shortcut):
        flag = "--words" if shortcut == "only" else "--no-words"
        raise PixgrepError(f"{flag} and --words-mode {mode} say different things: give one of them")
    return shortcut


def add_ocr_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--ocr",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="read the text in new and changed pictures while indexing (RapidOCR, the ocr extra); "
        "the catalog remembers it, so later runs keep reading; --no-ocr stops",
    )
