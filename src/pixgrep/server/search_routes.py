"""Search endpoints: text (query language), image URL, catalog id, uploaded image, combined terms."""

from __future__ import annotations

from typing import Annotated, Literal, cast

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, UploadFile
from pydantic import BaseModel, Field

from pixgrep.errors import PixgrepError
from pixgrep.search.options import SearchOptions
from pixgrep.search.query import Term, bytes_term
from pixgrep.server.guards import ImageIdPath, ImageIdQuery, PlainText
from pixgrep.server.metadata_routes import CAMERA, NEAR, PLACE, TAG
from pixgrep.server.querying import (
    check_model,
    fusion_ran,
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
ROOTS = Annotated[list[PlainText], Query(description="only images under these folders (repeatable)")]
AFTER = Annotated[str | None, Query(description="captured on or after: YYYY, YYYY-MM, YYYY-MM-DD or ISO")]
BEFORE = Annotated[str | None, Query(description="captured before: YYYY, YYYY-MM, YYYY-MM-DD or ISO")]
ALL_PARTS = Annotated[bool, Query(description="rank by how well images match every part of a detailed text")]
IGNORE_TONE = Annotated[
    bool, Query(description="remove the tone component (messy, elegant, ...) of the query")
]
TONE = Annotated[str | None, Query(description="tone words to add on purpose: 'cozy, bright'")]
DEDUP = Annotated[bool, Query(description="fold near-identical images into one result with a count")]


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
    q: Annotated[str | None, Query(description='query language: "cat + 0.5:night - dog"')] = None,
    image_url: Annotated[str | None, Query(description="an http(s) URL of a query image")] = None,
    like: ImageIdQuery = None,
    k: K = 20,
    offset: OFFSET = 0,
    threshold: THRESHOLD = None,
    root: ROOTS = [],  # noqa: B006 (FastAPI copies defaults)
    after: AFTER = None,
    before: BEFORE = None,
    near: NEAR = None,
    camera: CAMERA = None,
    tag: TAG = None,
    place: PLACE = None,
    all_parts: ALL_PARTS = False,
    ignore_tone: IGNORE_TONE = False,
    tone: TONE = None,
    dedup: DEDUP = True,
    model: Annotated[str | None, Query(description="must name the served model, if given")] = None,
    fusion: Annotated[Literal["auto", "combiner", "sum"], Query(description="image + text fusion")] = "auto",
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
        k=k,
        offset=offset,
        threshold=threshold,
        roots=normalise_roots(root),
        # a date string or epoch seconds: SearchOptions.__post_init__ turns a date into seconds
        after=cast("float | None", after),
        before=cast("float | None", before),
        fusion=fusion,
        near=near,
        camera=camera,
        tag=tag,
        place=place,
        all_parts=all_parts,
        ignore_tone=ignore_tone,
        tone=(tone,) if tone else (),
        dedup=dedup,
    )
    return _answer(state, terms, options)


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
    roots: list[PlainText] = Field(default_factory=list, description="only images under these folders")
    after: str | None = Field(None, description="captured on or after (YYYY, YYYY-MM, YYYY-MM-DD, ISO)")
    before: str | None = Field(None, description="captured before (YYYY, YYYY-MM, YYYY-MM-DD, ISO)")
    near: str | None = Field(None, description='"Florence", "Florence, 5", "LAT,LON" or "LAT,LON,KM"')
    camera: str | None = Field(None, description='case-insensitive part of "make model"')
    tag: str | None = Field(None, description='a keyword, a parent ("Places" for "Places|Italy"), or "pre*"')
    place: str | None = Field(None, description="a city, region or country (or the start of one)")
    all_parts: bool = Field(False, description="rank by how well images match every part of the text")
    ignore_tone: bool = Field(False, description="remove the tone component of the query")
    tone: str | None = Field(None, description="tone words to add on purpose: 'cozy, bright'")
    dedup: bool = Field(True, description="fold near-identical images into one result with a count")
    model: str | None = None
    fusion: Literal["auto", "combiner", "sum"] = Field(
        "auto", description="image + text: the model's Combiner (auto: when it has one) or the sum"
    )

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
        after=cast("float | None", body.after),
        before=cast("float | None", body.before),
        fusion=body.fusion,
        near=body.near,
        camera=body.camera,
        tag=body.tag,
        place=body.place,
        all_parts=body.all_parts,
        ignore_tone=body.ignore_tone,
        tone=(body.tone,) if body.tone else (),
        dedup=body.dedup,
    )
    return _answer(state, terms, options)


@router.post("/search/image", response_model=SearchResponse)
def search_image(
    state: Annotated[ServerState, Depends(get_state)],
    file: Annotated[UploadFile, File(description="the query image (JPEG, PNG, WebP, HEIC, ...)")],
    q: Annotated[str | None, Form(description="text to add to the image, e.g. 'in red'")] = None,
    weight: Annotated[float, Form(ge=-10, le=10, description="weight of the image term")] = 1.0,
    k: Annotated[int, Form(ge=1, le=1000)] = 20,
    offset: Annotated[int, Form(ge=0, le=1_000_000)] = 0,
    threshold: Annotated[float | None, Form(ge=-1.0, le=1.0)] = None,
    root: Annotated[list[PlainText], Form()] = [],  # noqa: B006
    after: Annotated[str | None, Form()] = None,
    before: Annotated[str | None, Form()] = None,
    near: Annotated[str | None, Form()] = None,
    camera: Annotated[str | None, Form()] = None,
    tag: Annotated[str | None, Form()] = None,
    place: Annotated[str | None, Form()] = None,
    all_parts: Annotated[bool, Form()] = False,
    ignore_tone: Annotated[bool, Form()] = False,
    dedup: Annotated[bool, Form()] = True,
    model: Annotated[str | None, Form()] = None,
    fusion: Annotated[Literal["auto", "combiner", "sum"], Form()] = "auto",
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
    options = SearchOptions(
        k=k,
        offset=offset,
        threshold=threshold,
        roots=normalise_roots(root),
        # a date string or epoch seconds: SearchOptions.__post_init__ turns a date into seconds
        after=cast("float | None", after),
        before=cast("float | None", before),
        near=near,
        camera=camera,
        tag=tag,
        place=place,
        fusion=fusion,
        all_parts=all_parts,
        ignore_tone=ignore_tone,
        dedup=dedup,
    )
    return _answer(state, terms, options)


@router.get("/images/{image_id}/similar", response_model=SearchResponse, tags=["images"])
def similar(
    image_id: ImageIdPath,
    state: Annotated[ServerState, Depends(get_state)],
    k: K = 20,
    offset: OFFSET = 0,
    threshold: THRESHOLD = None,
    root: ROOTS = [],  # noqa: B006
    dedup: DEDUP = True,
):
    """More like this: the images nearest to a catalog image (the image itself is left out)."""
    options = SearchOptions(k=k, offset=offset, threshold=threshold, roots=normalise_roots(root), dedup=dedup)
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
