"""The search options over HTTP, declared once: every `SearchOptions` field as a request parameter.

`SearchParams` is read as the query string of the GET search routes, as the form of the upload
route and (extended by `SearchIn`) as the JSON body of POST /api/search, so a new option is one
field here and every search route takes it. `query_options` and `form_options` are the FastAPI
dependencies that turn it into a checked `SearchOptions`.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

from fastapi import Depends, Form, Query
from pydantic import BaseModel, Field

from pixgrep.search.options import SearchOptions
from pixgrep.server.guards import PlainText
from pixgrep.server.querying import check_model, normalise_roots
from pixgrep.server.state import ServerState, get_state

__all__ = ["FormOptions", "MetadataFilters", "QueryOptions", "SearchParams", "form_options", "query_options"]

Fusion = Literal["auto", "combiner", "sum"]


class MetadataFilters(BaseModel):
    """The photo-metadata filters (also the facets route's parameters)."""

    near: str | None = Field(None, description='"Florence", "Florence, 5", "LAT,LON" or "LAT,LON,KM"')
    camera: str | None = Field(None, description='case-insensitive part of "make model"')
    tag: str | None = Field(None, description='a keyword, a parent ("Places" for "Places|Italy"), or "pre*"')
    place: str | None = Field(None, description="a city, region or country (or the start of one)")


class SearchParams(MetadataFilters):
    """Every SearchOptions field (and the model check). In a query string or a form the folder
    scope is the repeatable `root`; in a JSON body it is the list `roots` (SearchIn)."""

    k: int = Field(20, ge=1, le=1000, description="results per page")
    offset: int = Field(0, ge=0, le=1_000_000, description="results to skip (paging)")
    threshold: float | None = Field(
        None, ge=-1.0, le=1.0, description="drop results scoring below this cosine similarity"
    )
    roots: list[PlainText] = Field(
        default_factory=list, alias="root", description="only images under these folders (repeatable)"
    )
    after: str | None = Field(None, description="captured on or after: YYYY, YYYY-MM, YYYY-MM-DD or ISO")
    before: str | None = Field(None, description="captured before: YYYY, YYYY-MM, YYYY-MM-DD or ISO")
    exclude: list[str] = Field(
        default_factory=list, description="leave out files and folders matching these globs (repeatable)"
    )
    include_hidden: bool = Field(True, description="false: leave out dot-files and junk folders")
    fusion: Fusion = Field(
        "auto", description="image + text: the model's Combiner (auto: when it has one) or the sum"
    )
    exact: bool = Field(False, description="score every image by brute force, never the ANN index")
    all_parts: bool = Field(False, description="rank by how well images match every part of a detailed text")
    ignore_tone: bool = Field(False, description="remove the tone (messy, elegant, ...) of the query")
    tone: str | None = Field(None, description="tone words to add on purpose: 'cozy, bright'")
    dedup: bool = Field(True, description="fold near-identical images into one result with a count")
    words: Literal["auto", "only", "off"] = Field(
        "auto", description="text in pictures, names, keywords: with the meaning, alone, or not at all"
    )
    model: str | None = Field(None, description="must name the served model, if given")

    def options(self, state: ServerState) -> SearchOptions:
        """The checked SearchOptions (PixgrepError, a 400, for a value the engine refuses)."""
        check_model(state, self.model)
        # Field by field from the dataclass: a SearchOptions field this model lacks fails here
        # (and in tests/test_server_search_params.py), never silently at its default.
        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(SearchOptions)}
        values.update(
            roots=normalise_roots(self.roots),
            exclude=tuple(self.exclude),
            tone=(self.tone,) if self.tone else (),
            # after/before stay date strings: SearchOptions.__post_init__ turns them into seconds
        )
        return SearchOptions(**values)


def query_options(
    state: Annotated[ServerState, Depends(get_state)], params: Annotated[SearchParams, Query()]
) -> SearchOptions:
    return params.options(state)


def form_options(
    state: Annotated[ServerState, Depends(get_state)], params: Annotated[SearchParams, Form()]
) -> SearchOptions:
    return params.options(state)


QueryOptions = Annotated[SearchOptions, Depends(query_options)]
FormOptions = Annotated[SearchOptions, Depends(form_options)]
