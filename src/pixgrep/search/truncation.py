"""Say when a text query is longer than the text tower reads (CLIP: 77 tokens), instead of cutting silently.

The notice is data: the query plan (search/plan.py) carries it, the results hand it on
(`SearchResults.notes`), the CLI prints each as one `pixgrep: warning: ...` line and the server
returns them with the results. No Python warning, so no process-wide state between threads.
"""

from __future__ import annotations

from collections.abc import Sequence

from pixgrep.models.base import Encoder

__all__ = ["cut_message", "cut_notes"]

SHOWN_CHARS = 60  # how much of the cut text the warning quotes


def cut_message(text: str, cut: str, all_parts: bool = False) -> str:
    words = len(cut.split())
    # the start of the cut (where reading stops) and its end (the last words, lost too)
    shown = (
        cut
        if len(cut) <= SHOWN_CHARS
        else f"{cut[: SHOWN_CHARS // 2].rstrip()} ... {cut[-SHOWN_CHARS // 2 :].lstrip()}"
    )
    whole = f'"{text}"' if len(text) <= SHOWN_CHARS else f'"{text[: SHOWN_CHARS - 3].rstrip()}..."'
    return (
        f"query {whole} is longer than the model reads; "
        f'{"the last word is" if words == 1 else f"the last {words} words are"} ignored: "{shown}" '
        + (
            "(--all: left out of the whole-query score; each part is scored in full)"
            if all_parts
            else "(--all searches each part of a long query separately)"
        )
    )


def cut_notes(
    encoder: Encoder, texts: Sequence[str], all_parts: bool = False
) -> tuple[list[bool], list[str]]:
    """For each text, whether the model cuts it; and one notice per cut text."""
    if not texts:  # an image or vector query: nothing to check (and no text tower to ask)
        return [], []
    flags, notes = [], []
    for text, cut in zip(texts, encoder.cut_texts(list(texts)), strict=True):
        if cut:
            notes.append(cut_message(text, cut, all_parts))
        flags.append(bool(cut))
    return flags, notes
