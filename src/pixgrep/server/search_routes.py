"""Search endpoints: text (query language), image URL, catalog id, uploaded image, combined terms."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, UploadFile
from pydantic import BaseModel, Field

from pixgrep.errors import PixgrepError
from pixgrep.search.options import SearchOptions
from pixgrep.search.query import bytes_term
from pixgrep.server.querying import (
    check_model,
    make_term,
    normalise_roots,
    parse_terms,
    response_json,
    run_search,
)
from pixgrep.server.state import ServerState, get_state

router = APIRouter(prefix="/api", tags=["search"])

K = Annotated[int, Query(ge=1, le=1000, description="results per page")]
OFFSET = Annotated[int, Query(ge=0, le=1_000_000, description="results to skip (paging)")]
THRESHOLD = Annotated[
    float | None, Query(ge=-1.0, le=1.0, description="drop results scoring below this cosine similarity")
]
ROOTS = Annotated[list[str], Query(description="only images under these folders (repeatable)")]
AFTER = Annotated[str | None, Query(description="captured on or after: YYYY, YYYY-MM, YYYY-MM-DD or ISO")]
BEFORE = Annotated[str | None, Query(description="captured before: YYYY, YYYY-MM, YYYY-MM-DD or ISO")]


class SearchResponse(BaseModel):
    results: list[dict]
    k: int
    offset: int
    next_offset: int | None = Field(description="offset of the next page, or null at the end")
    took_ms: float


@router.get("/search", response_model=SearchResponse)
def search_get(
    state: Annotated[ServerState, Depends(get_state)],
    q: Annotated[str | None, Query(description='query language: "cat + 0.5:night - dog"')] = None,
    image_url: Annotated[str | None, Query(description="an http(s) URL of a query image")] = None,
    like: Annotated[int | None, Query(ge=0, description="a catalog image id: more like this")] = None,
    k: K = 20,
    offset: OFFSET = 0,
    threshold: THRESHOLD = None,
    root: ROOTS = [],  # noqa: B006 (FastAPI copies defaults)
    after: AFTER = None,
    before: BEFORE = None,
    model: Annotated[str | None, Query(description="must name the served model, if given")] = None,
):
    """Search by text, by an image URL, by a catalog image ("more like this"), or any mix of them."""
    check_model(state, model)
    terms = []
    if q is not None and q.strip():
        terms += parse_terms(q)
    if image_url:
        terms.append(make_term("url", image_url))
    if like is not None:
        terms.append(make_term("image_id", like))
    options = SearchOptions(
        k=k, offset=offset, threshold=threshold, roots=normalise_roots(root), after=after, before=before
    )
    results, took = run_search(state, terms, options)
    return response_json(results, k=k, offset=offset, took_ms=took)


class TermIn(BaseModel):
    kind: Literal["text", "url", "image_id", "bytes", "vector"] = Field(
        description="text; url (http/https); image_id (catalog id); bytes (base64 image); vector (numbers)"
    )
    value: str | int | list[float]
    weight: float = Field(1.0, ge=-10, le=10, description="negative weights push results away")


class SearchIn(BaseModel):
    q: str | None = Field(None, description="a query in pixgrep's query language, added to the terms")
    terms: list[TermIn] = Field(default_factory=list, max_length=64)
    k: int = Field(20, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=1_000_000)
    threshold: float | None = Field(None, ge=-1.0, le=1.0)
    roots: list[str] = Field(default_factory=list, description="only images under these folders")
    after: str | None = Field(None, description="captured on or after (YYYY, YYYY-MM, YYYY-MM-DD, ISO)")
    before: str | None = Field(None, description="captured before (YYYY, YYYY-MM, YYYY-MM-DD, ISO)")
    model: str | None = None

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
    check_model(state, body.model)
    terms = parse_terms(body.q) if body.q and body.q.strip() else []
    terms += [make_term(t.kind, t.value, t.weight) for t in body.terms]
    options = SearchOptions(
        k=body.k,
        offset=body.offset,
        threshold=body.threshold,
        roots=normalise_roots(body.roots),
        after=body.after,
        before=body.before,
    )
    results, took = run_search(state, terms, options)
    return response_json(results, k=body.k, offset=body.offset, took_ms=took)


@router.post("/search/image", response_model=SearchResponse)
def search_image(
    state: Annotated[ServerState, Depends(get_state)],
    file: Annotated[UploadFile, File(description="the query image (JPEG, PNG, WebP, HEIC, ...)")],
    q: Annotated[str | None, Form(description="text to add to the image, e.g. 'in red'")] = None,
    weight: Annotated[float, Form(ge=-10, le=10, description="weight of the image term")] = 1.0,
    k: Annotated[int, Form(ge=1, le=1000)] = 20,
    offset: Annotated[int, Form(ge=0, le=1_000_000)] = 0,
    threshold: Annotated[float | None, Form(ge=-1.0, le=1.0)] = None,
    root: Annotated[list[str], Form()] = [],  # noqa: B006
    model: Annotated[str | None, Form()] = None,
):
    """Search by an uploaded image (multipart), optionally plus text in the query language."""
    check_model(state, model)
    data = file.file.read(state.max_upload + 1)
    if len(data) > state.max_upload:
        raise HTTPException(413, f"the image is over the {state.max_upload // (1024 * 1024)} MB upload limit")
    if not data:
        raise PixgrepError("the uploaded file is empty")
    from pixgrep.images.decode import open_image

    open_image(data)  # refuse a non-image with 415 here, before it reaches the model
    terms = [bytes_term(data, weight)]
    if q and q.strip():
        terms += parse_terms(q)
    options = SearchOptions(k=k, offset=offset, threshold=threshold, roots=normalise_roots(root))
    results, took = run_search(state, terms, options)
    return response_json(results, k=k, offset=offset, took_ms=took)


@router.get("/images/{image_id}/similar", response_model=SearchResponse, tags=["images"])
def similar(
    image_id: int,
    state: Annotated[ServerState, Depends(get_state)],
    k: K = 20,
    offset: OFFSET = 0,
    threshold: THRESHOLD = None,
    root: ROOTS = [],  # noqa: B006
):
    """More like this: the images nearest to a catalog image (the image itself is left out)."""
    options = SearchOptions(k=k, offset=offset, threshold=threshold, roots=normalise_roots(root))
    results, took = run_search(state, [make_term("image_id", image_id)], options)
    return response_json(results, k=k, offset=offset, took_ms=took)
