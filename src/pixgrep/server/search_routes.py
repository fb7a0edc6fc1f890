"""Search endpoints: text (query language), image URL, catalog id, uploaded image, combined terms."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from pydantic import BaseModel, Field

from pixgrep.errors import PixgrepError
from pixgrep.search.options import SearchOptions
from pixgrep.search.query import MAX_TERMS, Term, bytes_term
from pixgrep.server.guards import ImageIdPath, ImageIdQuery, PlainText
from pixgrep.server.querying import check_image, fusion_ran, make_term, parse_terms, response_json, run_search
from pixgrep.server.search_params import FormOptions, QueryOptions, SearchParams
from pixgrep.server.state import ServerState, get_state

router = APIRouter(prefix="/api", tags=["search"])


class SearchResponse(BaseModel):
    results: list[dict]
    k: int
    offset: int
    next_offset: int | None = Field(description="offset of the next page, or null at the end")
    took_ms: float
    fusion: str = Field("sum", description="how image and text terms were fused: combiner or sum")
    warnings: list[str] = Field(default_factory=list, description="e.g. a query cut at the context length")


@router.get("/search", response_model=SearchResponse)
def search_get(
    state: Annotated[ServerState, Depends(get_state)],
    options: QueryOptions,
    q: Annotated[str | None, Query(description='query language: "cat + 0.5:night - dog"')] = None,
    image_url: Annotated[str | None, Query(description="an http(s) URL of a query image")] = None,
    like: ImageIdQuery = None,
):
    """Search by text, by an image URL, by a catalog image ("more like this"), or any mix of them."""
    terms = []
    if q is not None and q.strip():
        terms += parse_terms(q)
    if image_url:
        terms.append(make_term("url", image_url))
    if like is not None:
        terms.append(make_term("image_id", like))
    return _answer(state, terms, options)


class TermIn(BaseModel):
    kind: Literal["text", "url", "image_id", "bytes", "vector"] = Field(
        description="text; url (http/https); image_id (catalog id); bytes (base64 image); vector (numbers)"
    )
    value: str | int | list[float]
    weight: float = Field(1.0, ge=-10, le=10, description="negative weights push results away")


class SearchIn(SearchParams):
    """The JSON body: the query, weighted terms, and every search option (SearchParams)."""

    q: str | None = Field(None, description="a query in pixgrep's query language, added to the terms")
    terms: list[TermIn] = Field(default_factory=list, max_length=MAX_TERMS)
    roots: list[PlainText] = Field(default_factory=list, description="only images under these folders")

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "terms": [
                        {"kind": "image_id", "value": 42, "weight": 1},
                        {"kind": "text", "value": "in red", "weight": 1},
                        {"kind": "image_id", "value": 7, "weight": -0.5},
                    ],
                    "k": 20,
                }
            ]
        }
    }


@router.post("/search", response_model=SearchResponse)
def search_post(body: SearchIn, state: Annotated[ServerState, Depends(get_state)]):
    """Combined weighted terms: the refine loop sends [chosen image (+1), the change as text (+1),
    rejected images (negative)]."""
    options = body.options(state)
    terms = parse_terms(body.q) if body.q and body.q.strip() else []
    terms += [make_term(t.kind, t.value, t.weight, state) for t in body.terms]
    return _answer(state, terms, options)


@router.post("/search/image", response_model=SearchResponse)
def search_image(
    state: Annotated[ServerState, Depends(get_state)],
    file: Annotated[UploadFile, File(description="the query image (JPEG, PNG, WebP, HEIC, ...)")],
    options: FormOptions,
    q: Annotated[str | None, Form(description="text to add to the image, e.g. 'in red'")] = None,
    weight: Annotated[float, Form(ge=-10, le=10, description="weight of the image term")] = 1.0,
):
    """Search by an uploaded image (multipart), optionally plus text in the query language."""
    data = file.file.read(state.max_upload + 1)
    if not data:
        raise PixgrepError("the uploaded file is empty")
    check_image(state, data, decode=True)  # 413 / 415 from the header first, then a decode
    terms = [bytes_term(data, weight)]
    if q and q.strip():
        terms += parse_terms(q)
    return _answer(state, terms, options)


@router.get("/images/{image_id}/similar", response_model=SearchResponse, tags=["images"])
def similar(image_id: ImageIdPath, state: Annotated[ServerState, Depends(get_state)], options: QueryOptions):
    """More like this: the images nearest to a catalog image (the image itself is left out)."""
    return _answer(state, [make_term("image_id", image_id)], options)


def _answer(state: ServerState, terms: list[Term], options: SearchOptions) -> dict:
    """Run the search and shape the response every search route gives."""
    notes: list[str] = []  # the query-cut warnings
    results, took = run_search(state, terms, options, notes)
    return response_json(
        results,
        k=options.k,
        offset=options.offset,
        took_ms=took,
        fusion=fusion_ran(state, terms, options),
        warnings=notes,
    )
