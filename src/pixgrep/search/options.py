"""What a search may be asked besides its query: one typed record from every front end to the engine.

The CLI, the server and the Python API each map their flags or parameters onto `SearchOptions`; the
engine reads it. A new filter or switch is one field here (with a default that keeps today's
behaviour) read where it acts.
"""

from __future__ import annotations

import dataclasses
import math
import os
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


__all__ = ["SearchOptions"]


@dataclass(frozen=True)
class SearchOptions:
    """k, offset: the page. threshold: only scores >= it. roots: only images below these folders
    (None: the whole catalog). after/before: capture time in [after, before), epoch seconds or a date
    string (YYYY, YYYY-MM, YYYY-MM-DD, ISO); images without a capture time are left out when either
    is set. exclude: globs matched against each file and folder name below the root and the relative
    path. include_hidden=False drops dot-files and junk folders, as indexing does.

    Photo metadata (filled by indexing: EXIF, XMP/IPTC, sidecars; see catalog/metadata.py) filters
    inside the ranking, never after the top-k: near: a place name ("Florence", "Florence, 5") or
    "LAT,LON[,KM]" or a (lat, lon[, km]) tuple, kept as (lat, lon, km), default radius
    filters.DEFAULT_NEAR_KM; camera: a case-insensitive part of "make model"; tag: a keyword, a parent
    of hierarchical ones ("Places" for "Places|Italy"), or a prefix ending in "*"; place: a city,
    region or country (or its start). With no query terms, the images these (or after/before) let
    through are listed newest first. fusion: how an image + text query is fused (search.fusion):
    "auto" uses the model's Combiner when it has one.

    exact: score every image in scope by brute force even where the catalog is large enough for
    the ANN index (docs/ann.md); results then never miss an image the index would not find.

    all_parts: rank by how well images match every part of a detailed text (search/allof.py).
    ignore_tone: remove the tone component from the query (search/tone.py); tone: tone words to
    add on purpose. dedup: fold near-identical images into the best-scored one (search/dedup.py)."""

    k: int = 10
    offset: int = 0
    threshold: float | None = None
    roots: tuple[str, ...] | None = None
    after: float | None = None
    before: float | None = None
    exclude: tuple[str, ...] = ()
    include_hidden: bool = True
    fusion: str = "auto"  # image + text: "auto" (the model's Combiner if it has one), "combiner", "sum"
    near: NearValue | None = None  # always (lat, lon, km) once constructed
    camera: str | None = None
    tag: str | None = None
    place: str | None = None
    exact: bool = False
    all_parts: bool = False
    ignore_tone: bool = False
    tone: tuple[str, ...] = ()
    dedup: bool = True
    words: str = "auto"  # with the words in pictures and names: "auto", "only", "off" (search/words.py)

    def __post_init__(self) -> None:
        # Validated once here, so every front end refuses the same things with the same words.
        for name in ("k", "offset"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise PixgrepError(f"{name} must be a whole number, not negative (got {value!r})")
        if self.threshold is not None:
            threshold = float(self.threshold)
            if not math.isfinite(threshold) or not -1.0 <= threshold <= 1.0:
                raise PixgrepError(
                    f"threshold must be a cosine score between -1 and 1 (got {self.threshold})"
                )
            object.__setattr__(self, "threshold", threshold)
        object.__setattr__(self, "after", _time_bound(self.after, "--after"))
        object.__setattr__(self, "before", _time_bound(self.before, "--before"))
        if self.roots is not None:
            roots = _strings(self.roots, "roots")
            object.__setattr__(self, "roots", tuple(os.path.expanduser(root) for root in roots) or None)
        check_fusion(self.fusion)
        if self.words not in ("auto", "only", "off"):  # words: search/words.py
            raise PixgrepError(f"unknown words mode {self.words!r}; choose from auto, only, off")
        object.__setattr__(self, "exclude", tuple(p for p in _strings(self.exclude, "exclude") if p.strip()))
        for name in ("include_hidden", "exact", "all_parts", "ignore_tone", "dedup"):
            if not isinstance(getattr(self, name), bool):
                raise PixgrepError(f"{name} must be true or false (got {getattr(self, name)!r})")
        if self.tone:
            from pixgrep.search.tone import parse_tone_words

            object.__setattr__(self, "tone", parse_tone_words(_strings(self.tone, "tone")))
        else:
            object.__setattr__(self, "tone", ())
        self._metadata_fields()

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
            object.__setattr__(self, name, value.strip())

    def lists_without_query(self) -> bool:
        """True when a search with no terms lists images: some metadata or date filter is set."""
        filters = (self.near, self.camera, self.tag, self.place, self.after, self.before)
        return any(value is not None for value in filters)

    @classmethod
    def of(cls, options: SearchOptions | None = None, **fields: Any) -> SearchOptions:
        """`options` (or the defaults) with `fields` replaced; unknown field names are a TypeError."""
        return dataclasses.replace(options, **fields) if options is not None else cls(**fields)


def _time_bound(value: object, option: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return date_bound(value, option)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PixgrepError(f"{option} must be a date or a time in seconds (got {value!r})")
    return float(value)


def _strings(values: object, name: str) -> tuple[str, ...]:
    if isinstance(values, str | os.PathLike):
        values = [values]
    if not isinstance(values, Sequence | tuple | list):
        raise PixgrepError(f"{name} must be a list of strings")
    return tuple(os.fspath(value) for value in values)
