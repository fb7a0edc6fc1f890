"""Say when a text query is longer than the text tower reads (CLIP: 77 tokens), instead of cutting silently.

The search layer raises a `QueryCutWarning` (a Python warning, so the API stays quiet unless asked);
the CLI prints it as one `pixgrep: warning: ...` line and the server returns it with the results.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from pixgrep.models.base import Encoder

__all__ = ["QueryCutWarning", "cut_message", "warn_if_cut"]

SHOWN_CHARS = 60  # how much of the cut text the warning quotes


class QueryCutWarning(UserWarning):
    """A query text was cut at the model's context length (the message says what was cut)."""


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


def warn_if_cut(encoder: Encoder, texts: Sequence[str], all_parts: bool = False) -> list[bool]:
    """Warn once per text the model would cut; for each text, whether it is cut."""
    if not texts:  # an image or vector query: nothing to check (and no text tower to ask)
        return []
    flags = []
    for text, cut in zip(texts, encoder.cut_texts(list(texts)), strict=True):
        if cut:
            warnings.warn(cut_message(text, cut, all_parts), QueryCutWarning, stacklevel=2)
        flags.append(bool(cut))
    return flags
