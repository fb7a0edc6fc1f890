"""The search options over HTTP: every `SearchOptions` field as a request parameter, with the name,
default and description its declaration in search/options.py gives.

`SearchParams` is read as the query string of the GET search routes, as the form of the upload
route and (extended by `SearchIn`) as the JSON body of POST /api/search, so a new option is one
field here and every search route takes it. `query_options` and `form_options` are the FastAPI
dependencies that turn it into a checked `SearchOptions`.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from fastapi import Depends, Form, Query
from pydantic import BaseModel, Field

from pixgrep.search.options import HTTP, OptionDoc, SearchOptions, front_end_default, option_docs
from pixgrep.server.guards import PlainText
from pixgrep.server.querying import check_model, normalise_roots
from pixgrep.server.state import ServerState, get_state

__all__ = ["FormOptions", "MetadataFilters", "QueryOptions", "SearchParams", "form_options", "query_options"]

Fusion = Literal["auto", "combiner", "sum"]
Words = Literal["auto", "only", "off"]
_FIELDS = {field.name: field for field, _ in option_docs()}


def _param(name: str, *, most: float | None = None) -> Any:
    """The request parameter of SearchOptions field `name`: its declared HTTP default, help and
    bounds (search/options.py); `most`: the server's own cap on what one request may ask."""
    field = _FIELDS[name]
    doc: OptionDoc = field.metadata["doc"]
    if doc.repeatable:  # a list over HTTP (repeated in a query string or a form)
        return Field(default_factory=list, alias=doc.http_name, description=doc.help)
    default = front_end_default(field, HTTP)
    high = most if most is not None else doc.high
    return Field(None if default == () else default, description=doc.help, ge=doc.low, le=high)


class MetadataFilters(BaseModel):
    """The photo-metadata filters (also the facets route's parameters)."""

    near: str | None = _param("near")
    camera: str | None = _param("camera")
    tag: str | None = _param("tag")
    place: str | None = _param("place")


class SearchParams(MetadataFilters):
    """Every SearchOptions field (and the model check). In a query string or a form the folder
    scope is the repeatable `root`; in a JSON body it is the list `roots` (SearchIn). Names,
    defaults and descriptions come from SearchOptions; the types are what a request carries
    (dates and tone words as text, SearchOptions checks them)."""

    k: int = _param("k", most=1000)
    offset: int = _param("offset", most=1_000_000)
    threshold: float | None = _param("threshold")
    roots: list[PlainText] = _param("roots")
    after: str | None = _param("after")
    before: str | None = _param("before")
    exclude: list[str] = _param("exclude")
    include_hidden: bool = _param("include_hidden")
    fusion: Fusion = _param("fusion")
    exact: bool = _param("exact")
    all_parts: bool = _param("all_parts")
    ignore_tone: bool = _param("ignore_tone")
    tone: str | None = _param("tone")
    dedup: bool = _param("dedup")
    words: Words = _param("words")
    lang: str | None = _param("lang")
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
