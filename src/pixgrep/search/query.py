"""The query language: text, image paths and URLs combined with `+` / `-` and `WEIGHT:` prefixes.

Two spellings reach `parse_query`:

- argv tokens from the shell, rclip style: `pixgrep "horse" + "0.5:stars" - "day"` arrives as
  ['horse', '+', '0.5:stars', '-', 'day']. A token that is exactly `+` or `-` is an operator;
  every other token is one term, verbatim (the shell already grouped it, so "rock + roll" is text).
- one string, from the API and the web page: "horse + 0.5:stars - day". Here `+` and `-` are
  operators only when they stand alone between spaces ("t-shirt" stays one word), and double
  quotes group a term so it can hold an operator or leading/trailing spaces: `"rock + roll" - crowd`.

A term is `[WEIGHT:]BODY`. Only the first `NUMBER:` is a weight, so `1:3:10 to yuma` searches the
text "3:10 to yuma" with weight 1. The body is an image URL (http:// or https://), an image file
(an existing file, or anything spelled like a path: /..., ./..., ../..., ~/..., file://...; such a
path must exist), or else text; from an HTTP client (`remote`) the file system is never asked: a
path spelling is refused, anything else is text. docs/search.md has the full grammar.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pixgrep.errors import PixgrepError

TermKind = Literal["text", "path", "url", "bytes", "image_id", "vector"]


# What a client of the HTTP API may send: never "path", which would let it probe the server's disk.
REMOTE_TERM_KINDS: tuple[TermKind, ...] = ("text", "url", "bytes", "image_id", "vector")
MAX_IMAGE_ID = 2**63 - 1  # SQLite's largest rowid: anything bigger names no image
# Terms one query may combine (a query string, or a request's list): each is a tower run, and
# 3,000 of them kept a server busy for 11 s.
MAX_TERMS = 64


@dataclass(frozen=True)
class Term:
    """One part of a query. `weight` is signed: a subtracted term has a negative weight.

    value by kind: text -> str; path -> absolute path str; url -> str; bytes -> encoded image bytes;
    image_id -> int (an images.id of the catalog); vector -> a float32 vector of the model's space.
    `source` names where a bytes term came from (a URL already downloaded), for messages.
    Build terms with the constructors below (or `make_term`): they validate once, for every caller.
    """

    weight: float
    kind: TermKind
    value: object
    source: str | None = None


# Only the ratios between weights matter; past this, the weighted sum of float32 vectors (and its
# norm) overflows, and an overflowed sum would read as terms that cancel out.
MAX_WEIGHT = 1e6


def _weight(weight: object) -> float:
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
        raise PixgrepError(f"a term's weight must be a finite number (got {weight!r})")
    if abs(weight) > MAX_WEIGHT:
        limit = f"{MAX_WEIGHT:,.0f}"
        raise PixgrepError(f"a term's weight must be between -{limit} and {limit} (got {weight!r})")
    return float(weight)


def text_term(text: object, weight: float = 1.0) -> Term:
    if not isinstance(text, str) or not text.strip():
        raise PixgrepError("a text term needs non-empty text")
    return Term(_weight(weight), "text", text)


def url_term(url: object, weight: float = 1.0) -> Term:
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        raise PixgrepError("a url term needs an http:// or https:// URL")
    return Term(_weight(weight), "url", url)


def bytes_term(data: object, weight: float = 1.0, *, source: str | None = None) -> Term:
    if not isinstance(data, bytes | bytearray | memoryview) or not len(data):
        raise PixgrepError("an image term needs the image file's bytes")
    return Term(_weight(weight), "bytes", bytes(data), source)


def image_id_term(image_id: object, weight: float = 1.0) -> Term:
    text = str(image_id).strip() if isinstance(image_id, int | str) and not isinstance(image_id, bool) else ""
    if not text.isdigit() or int(text) > MAX_IMAGE_ID:
        raise PixgrepError(f"an image_id term needs a catalog image id (a whole number), not {image_id!r}")
    return Term(_weight(weight), "image_id", int(text))


def vector_term(values: object, weight: float = 1.0) -> Term:
    import numpy as np

    try:
        vector = np.asarray(values, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        raise PixgrepError("a vector term needs a list of numbers") from None
    if vector.size == 0 or not np.all(np.isfinite(vector)):
        raise PixgrepError("a vector term needs a non-empty list of finite numbers")
    return Term(_weight(weight), "vector", vector)


def path_term(path: object, weight: float = 1.0) -> Term:
    if not isinstance(path, str | os.PathLike) or not os.path.isfile(path):
        raise PixgrepError(f"no such image file: {path}")
    return Term(_weight(weight), "path", os.path.abspath(path))


_CONSTRUCTORS = {
    "text": text_term,
    "url": url_term,
    "bytes": bytes_term,
    "image_id": image_id_term,
    "vector": vector_term,
    "path": path_term,
}


def make_term(
    kind: str, value: object, weight: float = 1.0, *, allowed: Sequence[str] = REMOTE_TERM_KINDS
) -> Term:
    """A validated term of `kind` (one of `allowed`; by default the kinds a remote client may send)."""
    if kind not in allowed:
        raise PixgrepError(f"unknown term kind {kind!r}; use one of {', '.join(allowed)}")
    return _CONSTRUCTORS[kind](value, weight)


# A weight: an optional sign, digits with an optional fraction (or a bare fraction), an optional
# exponent, then a colon. Anything else before the first colon is just text ("note: red car").
_WEIGHT = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?):(.*)$", re.DOTALL)
# Looks like an attempt at a number but is not one ("0.5.3:", "1e:"): a typo worth reporting.
_BAD_WEIGHT = re.compile(r"^([+-]?(?=[\d.]*\d)[\d.]+(?:[eE][+-]?[\d.]*)?):", re.DOTALL)
_PATH_PREFIXES = ("/", "./", "../", "~/", "~" + os.sep, "." + os.sep, ".." + os.sep, "file://")
_WINDOWS_ABS = re.compile(r"^[A-Za-z]:[\\/]")


def parse_query(query: str | Sequence[str], *, remote: bool = False) -> list[Term]:
    """Parse a query (one string, or argv tokens) into weighted terms.

    `remote`: the query comes from a client of the HTTP API, which may not name the server's files:
    the file system is not looked at, a term spelled like a path is refused (whether it exists or
    not, with the same words) and every other term is text.
    Raises PixgrepError with one line saying what is wrong and where.
    """
    if isinstance(query, str):
        try:
            tokens = _split_string(query)
        except _QuoteError:
            if _HAS_OPERATOR.search(query):
                raise  # the query is written in the syntax: say where it goes wrong
            # an ordinary sentence with quotation marks (a sign saying "open", a 12" pizza): its text
            tokens = [_Token("quoted", query.strip())]
    else:
        tokens = _join_words([_Token("op" if t in ("+", "-") else "raw", t) for t in map(str, query)])
    if not tokens:
        raise PixgrepError("empty query: give some text, an image path or an image URL")

    terms: list[Term] = []
    sign = 1.0
    pending: str | None = None  # the operator waiting for its term
    for position, token in enumerate(tokens, start=1):
        if token.kind == "op":
            if pending is not None:
                raise PixgrepError(
                    f"query has two operators in a row ('{pending} {token.text}') at token {position}"
                )
            pending = token.text
            sign = 1.0 if token.text == "+" else -1.0
            continue
        if terms and pending is None:
            raise PixgrepError(f"missing '+' or '-' before term {len(terms) + 1} ({token.text!r})")
        if len(terms) == MAX_TERMS:
            raise PixgrepError(f"the query has more than {MAX_TERMS} terms: combine at most {MAX_TERMS}")
        terms.append(_parse_term(token, sign, len(terms) + 1, remote))
        sign, pending = 1.0, None
    if pending is not None:
        raise PixgrepError(f"query ends with a dangling '{pending}': add a term after it")
    return terms


def _join_words(tokens: list[_Token]) -> list[_Token]:
    """`pixgrep a red fox` means the text "a red fox": shell words with no operator between them
    are one text term. Only plain words join; an image, a URL or a second weight needs an operator."""
    joined: list[_Token] = []
    for token in tokens:
        previous = joined[-1] if joined else None
        if token.kind == "raw" and previous is not None and previous.kind == "raw":
            for word in (previous.text, token.text):
                if _is_image_like(_WEIGHT.sub(r"\2", word, count=1).strip()):
                    raise PixgrepError(f"missing '+' or '-' between {previous.text!r} and {token.text!r}")
            if _WEIGHT.match(token.text.strip()) or _BAD_WEIGHT.match(token.text.strip()):
                raise PixgrepError(f"missing '+' or '-' before {token.text!r} (a weight starts a new term)")
            joined[-1] = _Token("raw", f"{previous.text} {token.text}")
        else:
            joined.append(token)
    return joined


def _is_image_like(body: str) -> bool:
    """A URL, something spelled like a path, or an existing file."""
    if body.lower().startswith(("http://", "https://")):
        return True
    if body.startswith(_PATH_PREFIXES) or _WINDOWS_ABS.match(body):
        return True
    return os.path.isfile(os.path.expanduser(body))


@dataclass(frozen=True)
class _Token:
    kind: Literal["op", "raw", "quoted"]  # quoted: `text` is literal, `weight` was written before it
    text: str
    weight: str | None = None


_WEIGHT_ONLY = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?:")


class _QuoteError(PixgrepError):
    """Quotes that do not follow the query syntax."""


_HAS_OPERATOR = re.compile(r"(?:^|\s)[+-](?:\s|$)")  # a lone + or -, as the syntax writes them


def _split_string(query: str) -> list[_Token]:
    """One query string -> tokens. Double quotes group a term; a lone + or - is an operator."""
    tokens: list[_Token] = []
    current: list[str] = []
    closed: _Token | None = None  # a quoted term just closed: only spaces or an operator may follow
    i, n = 0, len(query)

    def flush() -> None:
        nonlocal closed
        if closed is not None:
            tokens.append(closed)
        elif "".join(current).strip():
            tokens.append(_Token("raw", "".join(current).strip()))
        current.clear()
        closed = None

    while i < n:
        char = query[i]
        alone = (i == 0 or query[i - 1].isspace()) and (i + 1 == n or query[i + 1].isspace())
        if char in "+-" and alone:
            flush()
            tokens.append(_Token("op", char))
        elif char.isspace() and (closed is not None or not current):
            pass
        elif closed is not None:
            raise _QuoteError(f"missing '+' or '-' after a quoted term, at character {i + 1}")
        elif char == '"':
            prefix = "".join(current).strip()
            if prefix and not _WEIGHT_ONLY.fullmatch(prefix):
                raise _QuoteError(f"quote in the middle of a term at character {i + 1}")
            chunk: list[str] = []
            end = i + 1
            while end < n and query[end] != '"':
                if query[end] == "\\" and end + 1 < n and query[end + 1] in '"\\':
                    end += 1
                chunk.append(query[end])
                end += 1
            if end >= n:
                raise _QuoteError(f"query has an unclosed quote at character {i + 1}")
            current.clear()
            closed = _Token("quoted", "".join(chunk), prefix[:-1] if prefix else None)
            i = end
        else:
            current.append(char)
        i += 1
    flush()
    return tokens


def _parse_term(token: _Token, sign: float, number: int, remote: bool) -> Term:
    weight_text: str | None = token.weight
    body = token.text
    if token.kind == "raw":
        body = body.strip()
        match = _WEIGHT.match(body)
        if match:
            weight_text, body = match.group(1), match.group(2).strip()
            if not body.strip():
                raise PixgrepError(f"term {number} ({token.text!r}) has a weight but nothing to search for")
        elif bad := _BAD_WEIGHT.match(body):
            raise PixgrepError(
                f"term {number} ({token.text!r}): cannot read the weight {bad.group(1)!r} as a number"
            )
    if not body.strip():
        raise PixgrepError(f"term {number} is empty")
    weight = float(weight_text) if weight_text is not None else 1.0
    if not math.isfinite(weight) or abs(weight) > MAX_WEIGHT:
        raise PixgrepError(
            f"term {number}: the weight {weight_text} is too large (at most {MAX_WEIGHT:,.0f} either way; "
            "only the ratios between weights matter)"
        )
    return _classify(body, sign * weight, number, remote)


def _classify(body: str, weight: float, number: int, remote: bool) -> Term:
    lowered = body.lower()
    if lowered.startswith(("http://", "https://")):
        return Term(weight, "url", body)
    looks_like_path = body.startswith(_PATH_PREFIXES) or bool(_WINDOWS_ABS.match(body))
    if remote:  # the spelling alone decides: no answer may tell what is on the server's disk
        if looks_like_path:
            raise PixgrepError(
                f"term {number}: image paths are not accepted over HTTP ({body}): "
                "upload the image or use its catalog id"
            )
        return Term(weight, "text", body)
    candidate = body[len("file://") :] if body.startswith("file://") else body
    candidate = os.path.expanduser(candidate)
    if looks_like_path or os.path.isfile(candidate):
        if os.path.isdir(candidate):
            raise PixgrepError(f"term {number}: {body} is a folder, not an image (use --in to search it)")
        if not os.path.isfile(candidate):
            if os.path.exists(candidate):  # a FIFO, socket or device: reading it could block forever
                raise PixgrepError(f"term {number}: {body} is {_special_kind(candidate)}, not an image file")
            raise PixgrepError(f"term {number}: no such image file: {body}")
        return Term(weight, "path", os.path.abspath(candidate))
    return Term(weight, "text", body)


def _special_kind(path: str) -> str:
    import stat

    mode = os.stat(path).st_mode
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"
