"""Split a detailed description into the features it lists, for all-of search (`--all`).

The splitter is deterministic and purely textual (no model), so a user can predict it:

1. sentences: a break after `.`, `!` or `?` followed by a space or the end (not inside "3.5");
2. each sentence at `;` and at `,` (not a digit grouping such as "1,000");
3. each piece at the word "and" or "with" when it joins two phrases: the words before it are at
   least two and the word after it opens a noun phrase (an article, a number, a possessive,
   "some", "many", ...). "a bed with a striped couch" splits, "black and white" and "rock and roll"
   do not, nor does "a man running with speed";
4. leading joining words ("and", "with", "also", "plus", "then", "but") and surrounding
   punctuation are trimmed; empty pieces and exact repeats (case-insensitive) are dropped.

`split_parts("A bed with a striped couch, and an air conditioner.")` gives
`["A bed", "a striped couch", "an air conditioner"]`. A query with one part is searched as usual.
"""

from __future__ import annotations

import re

__all__ = ["MAX_PARTS", "split_parts"]

MAX_PARTS = 16  # more parts than this are joined into the last one (each part is a text-tower run)

_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+")
_CLAUSE_BREAK = re.compile(r";|(?<!\d),|,(?!\d)")
_JOINERS = {"and", "with"}
_LEADING = {"and", "with", "also", "plus", "then", "but", "or"}
# Words that open a noun phrase: "... and a lamp", "... with two chairs", "... and his dog".
_PHRASE_OPENERS = {
    "a",
    "an",
    "the",
    "some",
    "many",
    "several",
    "few",
    "lots",
    "plenty",
    "no",
    "this",
    "that",
    "these",
    "those",
    "my",
    "your",
    "his",
    "her",
    "its",
    "our",
    "their",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "another",
    "other",
    "each",
    "every",
}
_TRIM = " \t\r\n.,;:!?\"'()[]"


def split_parts(text: str) -> list[str]:
    """The parts of a query text, in order (see the module docstring for the rules)."""
    parts: list[str] = []
    seen: set[str] = set()
    for sentence in _SENTENCE_BREAK.split(text.strip()):
        for clause in _CLAUSE_BREAK.split(sentence):
            for phrase in _split_phrases(clause):
                key = phrase.lower()
                if phrase and key not in seen:
                    seen.add(key)
                    parts.append(phrase)
    if len(parts) > MAX_PARTS:
        parts = parts[: MAX_PARTS - 1] + [", ".join(parts[MAX_PARTS - 1 :])]
    return parts


def _split_phrases(clause: str) -> list[str]:
    words = clause.split()
    pieces: list[list[str]] = [[]]
    for i, word in enumerate(words):
        current = pieces[-1]
        bare = word.lower().strip(_TRIM)
        following = words[i + 1].lower().strip(_TRIM) if i + 1 < len(words) else ""
        if bare in _JOINERS and len(_content(current)) >= 2 and following in _PHRASE_OPENERS:
            pieces.append([])
            continue
        current.append(word)
    return [_trimmed(piece) for piece in pieces]


def _content(words: list[str]) -> list[str]:
    return [w for w in words if w.strip(_TRIM) and w.lower().strip(_TRIM) not in _LEADING]


def _trimmed(words: list[str]) -> str:
    while words and words[0].lower().strip(_TRIM) in _LEADING:
        words = words[1:]
    return " ".join(words).strip(_TRIM)
