"""What a search may be asked besides its query: one typed record from every front end to the engine.

Each field is declared once here: its name, type, default and help (its `OptionDoc`). The CLI's
search flags are generated from these declarations (cli/search.py), the HTTP parameters take their
defaults and descriptions from them (server/search_params.py, checked field by field by
tests/test_server_search_params.py), and the engine reads the record. A front end whose default
differs says so in the field's OptionDoc, with the reason. A new filter or switch is one field here
(with a default that keeps today's behaviour) read where it acts.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pixgrep.errors import PixgrepError
from pixgrep.search.filters import NearValue, date_bound

FUSIONS = ("auto", "combiner", "sum")  # search/fusion.py says what each does


def check_fusion(fusion: str) -> str:
    if fusion not in FUSIONS:
        raise PixgrepError(f"unknown fusion {fusion!r}; choose from {', '.join(FUSIONS)}")
    return fusion


__all__ = ["CLI", "HTTP", "OptionDoc", "SearchOptions", "front_end_default", "option_docs"]

CLI, HTTP = "cli", "http"  # the front ends that offer the options by name
_SAME = object()  # a front end's default is the field's own


@dataclass(frozen=True)
class OptionDoc:
    """How a SearchOptions field is offered by name: the one declaration the CLI flags
    (cli/search.py) and the HTTP parameters (server/search_params.py) are made from.

    help: what it does. flags: the CLI's spellings, the main one first. low/high: bounds of a
    number. repeatable: given once per value (a list). http_name: the query-string and form name
    where it differs from the field's. cli_help: where the CLI does more with it (it walks the
    folders too). defaults: a front end whose default differs, by front end, with `why` saying the
    reason (declared here and nowhere else). section: the CLI --help section it is listed in."""

    help: str
    flags: tuple[str, ...]
    metavar: str | None = None
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    repeatable: bool = False
    http_name: str | None = None
    cli_help: str | None = None
    defaults: tuple[tuple[str, Any], ...] = ()
    why: str = ""
    section: str | None = None


PHOTO = "photo metadata filters (EXIF, XMP and IPTC keywords, sidecars)"
WORDS = "words (text in pictures, file and folder names, keywords)"


def _option(default: Any, doc: OptionDoc) -> Any:
    return dataclasses.field(default=default, metadata={"doc": doc})


def option_docs() -> list[tuple[dataclasses.Field, OptionDoc]]:
    """Every SearchOptions field with its OptionDoc, in declaration order."""
    return [(field, field.metadata["doc"]) for field in dataclasses.fields(SearchOptions)]


def front_end_default(field: dataclasses.Field, front_end: str) -> Any:
    """The default `front_end` (CLI or HTTP) uses for `field`: the field's own unless declared."""
    declared = dict(field.metadata["doc"].defaults).get(front_end, _SAME)
    return field.default if declared is _SAME else declared


@dataclass(frozen=True)
class SearchOptions:
    """What a search may be asked besides its query; each field's OptionDoc says what it does.

    after/before: capture time in [after, before), epoch seconds or a date string (YYYY, YYYY-MM,
    YYYY-MM-DD, ISO); images without a capture time are left out when either is set. exclude:
    globs matched against each file and folder name below the root and the relative path.

    Photo metadata (filled by indexing: EXIF, XMP/IPTC, sidecars; see catalog/metadata.py) filters
    inside the ranking, never after the top-k: near is kept as (lat, lon, km), default radius
    filters.DEFAULT_NEAR_KM. With no query terms, the images these (or after/before) let through
    are listed newest first. fusion: search.fusion; exact: docs/ann.md; all_parts:
    search/allof.py; ignore_tone, tone: search/tone.py; dedup: search/dedup.py; lang: kept as its
    FLORES-200 code (models/languages.py), applied by Encoder.in_language."""

    k: int = _option(
        10,
        OptionDoc(
            "number of results",
            ("-k", "-t", "--top"),
            "N",
            low=1,
            defaults=((HTTP, 20),),
            why="a grid of thumbnails holds more than a terminal's screenful (the page asks for its own "
            "page size)",
        ),
    )
    offset: int = _option(0, OptionDoc("skip the first N results (paging)", ("--offset",), "N", low=0))
    threshold: float | None = _option(
        None,
        OptionDoc(
            "only results scoring at least S (a cosine score)", ("--threshold",), "S", low=-1.0, high=1.0
        ),
    )
    roots: tuple[str, ...] | None = _option(
        None,
        OptionDoc(
            "only images under these folders (repeatable)",
            ("--in",),
            "DIR",
            repeatable=True,
            http_name="root",
            cli_help="folder to index and search, repeatable (default: the current folder); an "
            "object-store prefix (s3://bucket/photos) is searched, not indexed",
        ),
    )
    after: float | None = _option(
        None,
        OptionDoc(
            "only images taken on or after DATE (YYYY, YYYY-MM, YYYY-MM-DD or ISO)", ("--after",), "DATE"
        ),
    )
    before: float | None = _option(None, OptionDoc("only images taken before DATE", ("--before",), "DATE"))
    exclude: tuple[str, ...] = _option(
        (),
        OptionDoc(
            "leave out files and folders matching GLOB (name, relative or absolute path), repeatable",
            ("--exclude", "--exclude-dir"),
            "GLOB",
            repeatable=True,
            cli_help="skip files and folders matching GLOB (name, relative or absolute path), repeatable",
        ),
    )
    include_hidden: bool = _option(
        True,
        OptionDoc(
            "show hidden (dot) files and files in junk folders that the catalog holds",
            ("--include-hidden",),
            cli_help="also index and show hidden (dot) files and folders",
            defaults=((CLI, False),),
            why="the CLI indexes the folders before it searches, and its walk skips hidden files unless "
            "asked: its results then match what it indexes. The API and the server search the catalog "
            "as it is",
        ),
    )
    fusion: str = _option(
        "auto",
        OptionDoc(
            "how an image + text query becomes one vector. auto: the model's trained Combiner when it "
            "has one (pixgrep-mini ships one; `pixgrep models add-combiner` adds one), else the sum; "
            "combiner: require it; sum: add the unit vectors (the behaviour before Combiners). Weights "
            "and - terms apply around the Combiner",
            ("--fusion",),
            choices=FUSIONS,
        ),
    )
    near: NearValue | None = _option(
        None,
        OptionDoc(
            "taken within KM (default 10) of a place ('Florence', 'Paris, Texas', 'Florence, 5') or of "
            "LAT,LON (great-circle distance)",
            ("--near",),
            "PLACE|LAT,LON[,KM]",
            section=PHOTO,
        ),
    )
    camera: str | None = _option(
        None, OptionDoc("camera make and model contain TEXT (any case)", ("--camera",), "TEXT", section=PHOTO)
    )
    tag: str | None = _option(
        None,
        OptionDoc(
            "a keyword (any case): exact, a parent of 'A|B' keywords, or 'pre*'",
            ("--tag",),
            "TEXT",
            section=PHOTO,
        ),
    )
    place: str | None = _option(
        None, OptionDoc("taken in a city, region or country named TEXT", ("--place",), "TEXT", section=PHOTO)
    )
    exact: bool = _option(
        False,
        OptionDoc(
            "score every image by brute force, even where the catalog is large enough for the ANN index",
            ("--exact",),
        ),
    )
    all_parts: bool = _option(
        False,
        OptionDoc(
            "detailed queries: split the text at sentences, commas, 'and', 'with' and prefer images "
            "matching every part (--json shows each part's score)",
            ("--all",),
        ),
    )
    ignore_tone: bool = _option(
        False,
        OptionDoc(
            "discount tone words (messy, elegant, sad, ...): rank by what the picture shows",
            ("--ignore-tone",),
        ),
    )
    tone: tuple[str, ...] = _option(
        (), OptionDoc("ask for a tone on purpose, e.g. 'cozy, bright'", ("--tone",), "WORDS")
    )
    dedup: bool = _option(
        True,
        OptionDoc(
            "fold near-identical images into one result with a count",
            ("--no-dedup",),
            cli_help="show near-identical copies separately (default: once, with a count)",
        ),
    )
    words: str = _option(
        "auto",
        OptionDoc(
            "text in pictures, file and folder names, keywords: ranked with the meaning (auto), "
            "alone (only) or not at all (off); search/words.py",
            ("--words-mode",),
            choices=("auto", "only", "off"),
            cli_help="how the word index ranks a text query (--words and --no-words are short for "
            "only and off)",
            section=WORDS,
        ),
    )

    lang: str | None = _option(
        None,
        OptionDoc(
            "language of text queries, for models whose text tower takes a language token (NLLB-CLIP): "
            "de, zh, pt_BR or deu_Latn (default: the server's, from pixgrep serve --lang, $PIXGREP_LANG "
            "or its locale); other models read the languages they know without it",
            ("--lang",),
            "LANG",
            cli_help="language of text queries, for models whose text tower takes a language token "
            "(NLLB-CLIP): de, zh, pt_BR or deu_Latn (default: $PIXGREP_LANG, else the locale, else "
            "English); other models read the languages they know without it",
        ),
    )

    def __post_init__(self) -> None:
        # Validated once here, so every front end refuses the same things with the same words.
        for name, least in (("k", 1), ("offset", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                at_least = "at least 1" if least else "not negative"
                raise PixgrepError(f"{name} must be a whole number, {at_least} (got {value!r})")
        if self.threshold is not None:
            try:
                threshold = math.nan if isinstance(self.threshold, bool) else float(self.threshold)
            except (TypeError, ValueError):
                threshold = math.nan
            if not math.isfinite(threshold) or not -1.0 <= threshold <= 1.0:
                raise PixgrepError(
                    f"threshold must be a cosine score between -1 and 1 (got {self.threshold})"
                )
            object.__setattr__(self, "threshold", threshold)
        object.__setattr__(self, "after", _time_bound(self.after, "--after"))
        object.__setattr__(self, "before", _time_bound(self.before, "--before"))
        if self.roots is not None:
            roots = string_list(self.roots, "roots")
            for root in roots:
                try:  # a lone surrogate past \udc80-\udcff (non-UTF-8 bytes) names no file
                    os.fsencode(root)
                except UnicodeEncodeError:
                    raise PixgrepError(f"folder scope {root!r} holds a lone surrogate: not a path") from None
                if "\0" in root:
                    raise PixgrepError(f"folder scope {root!r} holds a NUL character: not a path")
            object.__setattr__(self, "roots", tuple(os.path.expanduser(root) for root in roots) or None)
        check_fusion(self.fusion)
        if self.words not in ("auto", "only", "off"):  # words: search/words.py
            raise PixgrepError(f"unknown words mode {self.words!r}; choose from auto, only, off")
        excluded = string_list(self.exclude, "exclude")
        object.__setattr__(self, "exclude", tuple(p for p in excluded if p.strip()))
        for name in ("include_hidden", "exact", "all_parts", "ignore_tone", "dedup"):
            if not isinstance(getattr(self, name), bool):
                raise PixgrepError(f"{name} must be true or false (got {getattr(self, name)!r})")
        if self.tone:
            from pixgrep.search.tone import parse_tone_words

            object.__setattr__(self, "tone", parse_tone_words(string_list(self.tone, "tone")))
        else:
            object.__setattr__(self, "tone", ())
        self._metadata_fields()
        object.__setattr__(self, "lang", _language(self.lang))

    def _metadata_fields(self) -> None:
        from pixgrep.search.filters import near_bounds

        if self.near is not None:
            object.__setattr__(self, "near", near_bounds(self.near))
        for name in ("camera", "tag", "place"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, str) or not value.strip():
                raise PixgrepError(f"--{name} needs some text (got {value!r})")
            if _LONE_SURROGATE.search(value):  # metadata is stored as UTF-8: such text matches nothing
                raise PixgrepError(f"--{name} must be text: {value!r} holds a lone surrogate")
            object.__setattr__(self, name, value.strip())

    def lists_without_query(self) -> bool:
        """True when a search with no terms lists images: some metadata or date filter is set."""
        filters = (self.near, self.camera, self.tag, self.place, self.after, self.before)
        return any(value is not None for value in filters)

    @classmethod
    def of(cls, options: SearchOptions | None = None, **fields: Any) -> SearchOptions:
        """`options` (or the defaults) with `fields` replaced; unknown field names are a TypeError."""
        return dataclasses.replace(options, **fields) if options is not None else cls(**fields)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # in a JSON "\ud800", or a non-UTF-8 byte of argv


def _time_bound(value: object, option: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return date_bound(value, option)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PixgrepError(f"{option} must be a date or a time in seconds (got {value!r})")
    return float(value)


def _language(value: object) -> str | None:
    """The FLORES-200 code of a query language (models.languages); none given (or empty): None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise PixgrepError(f"lang must be a language code such as de or deu_Latn (got {value!r})")
    from pixgrep.models.languages import flores_code

    return flores_code(value)


def string_list(values: object, name: str) -> tuple[str, ...]:
    """One string or path, or a list of them, as strings (bytes: a file name as the kernel has it)."""
    if isinstance(values, str | bytes | os.PathLike):
        values = [values]
    if not isinstance(values, Sequence) or not all(isinstance(v, str | bytes | os.PathLike) for v in values):
        raise PixgrepError(f"{name} must be a string or a list of strings")
    return tuple(os.fsdecode(value) for value in values)
