"""clip-retrieval compatible endpoints: POST /knn-service, GET /indices-list, POST /metadata.

Same request fields and the same answer shape as clip-retrieval's back end (`clip back`), so its
`ClipClient` and its web front end can query a pixgrep catalog. pixgrep's one "index" is named
`pixgrep`. Differences, by design: pixgrep indexes only images, so `modality: "text"` also
searches images; safety, violence and aesthetic options are accepted and ignored. The served
model is the one text encoder: `use_mclip: true` (clip-retrieval's multilingual text encoder) is
honoured when that model reads many languages (models.languages) and refused with a 400 for a text
query when it reads English only (clip-retrieval's own back end fails without its M-CLIP model);
`lang`, pixgrep's own field, is the query language of NLLB towers (SearchOptions.lang).
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pixgrep.errors import PixgrepError
from pixgrep.search.options import SearchOptions
from pixgrep.search.query import bytes_term
from pixgrep.server.querying import check_image, decode_base64, make_term, run_search
from pixgrep.server.state import ServerState, get_state

router = APIRouter(tags=["clip-retrieval"])

INDEX_NAME = "pixgrep"
DEDUP_SIMILARITY = 0.94  # clip-retrieval's threshold for "the same picture"


class KnnRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # clients send more options than pixgrep uses

    text: str | None = None
    image: str | None = Field(None, description="base64 of an image file")
    image_url: str | None = None
    embedding_input: list[float] | None = None
    modality: Literal["image", "text"] = "image"
    num_images: int = Field(40, ge=1, le=10000, description="results with metadata")
    num_result_ids: int | None = Field(None, ge=1, le=10000, description="results in all (ids beyond)")
    indice_name: str | None = INDEX_NAME
    deduplicate: bool = True
    use_mclip: bool = Field(
        False,
        description="query text in any language: needs a multilingual served model (400 otherwise)",
    )
    lang: str | None = Field(
        None, description="language of the text (de, zh, deu_Latn), for models that take one (NLLB-CLIP)"
    )
    use_safety_model: bool = False
    use_violence_detector: bool = False
    aesthetic_score: int | str | None = None
    aesthetic_weight: float | str | None = None


def _check_index(name: str | None) -> None:
    if name not in (None, "", INDEX_NAME):
        raise PixgrepError(f"unknown index {name!r}: this server has one, {INDEX_NAME!r}")


def _query_term(state: ServerState, body: KnnRequest):
    """clip-retrieval's order: text, then image or image URL, then an embedding."""
    if body.text:
        return make_term("text", body.text)
    if body.image:
        data = decode_base64(body.image)
        check_image(state, data, decode=True)  # 413 / 415 from the header first, then a decode
        return bytes_term(data)
    if body.image_url:
        return make_term("url", body.image_url)
    if body.embedding_input:
        with np.errstate(over="ignore"):  # a number past float32 becomes inf, refused just below
            vector = np.asarray(body.embedding_input, dtype=np.float32)
            norm = float(np.linalg.norm(vector))
        if not np.isfinite(norm) or norm == 0:
            raise PixgrepError("embedding_input must be a non-zero vector")
        return make_term("vector", (vector / norm).tolist())
    raise PixgrepError("give one of text, image, image_url or embedding_input")


def _check_multilingual(state: ServerState) -> None:
    """use_mclip asks for a text encoder of many languages: the served model must be one."""
    from pixgrep.models.languages import is_multilingual

    languages = state.catalog.encoder.languages
    if not is_multilingual(languages):
        raise PixgrepError(
            f"use_mclip: the catalog's model {state.model_id} is not multilingual (languages: "
            f"{languages}); send use_mclip false, or serve a multilingual model (pixgrep models "
            "list, lang column: multi)"
        )


def _deduplicate(state: ServerState, results: list) -> list:
    """Drop identical files (same content) and near-identical pictures, keeping the best-scored."""
    if not results:
        return results
    with state.lock:
        records = state.catalog.images([r.image_id for r in results])
        vectors = state.catalog.vectors_of(records.values())
    hashes = [records[r.image_id].content_hash if r.image_id in records else None for r in results]
    stored: dict[str | None, np.ndarray | None] = {records[i].content_hash: v for i, v in vectors.items()}
    dim = next((len(v) for v in stored.values() if v is not None), 1)
    zero = np.zeros(dim, np.float32)
    matrix = np.stack(
        [np.asarray(stored.get(h), np.float32) if stored.get(h) is not None else zero for h in hashes]
    )
    similarity = matrix @ matrix.T  # one product for all pairs; a missing vector (zeros) matches nothing
    kept: list[int] = []
    seen: set[str] = set()
    for row, digest in enumerate(hashes):
        if digest in seen or (kept and float(similarity[row, kept].max()) >= DEDUP_SIMILARITY):
            continue
        if digest:
            seen.add(digest)
        kept.append(row)
    return [results[row] for row in kept]


def _metadata(request: Request, image_id: int, path: str) -> dict:
    import os

    return {
        "url": str(request.url_for("full_image", image_id=image_id)),
        "image_path": path,
        "caption": os.path.basename(path),
    }


async def _json_body(request: Request, model: type[BaseModel]):
    """clip-retrieval's client posts JSON without a Content-Type (its back end reads it with
    force=True), so read the body as JSON whatever the header says."""
    from pixgrep.server.guards import loads_json_body

    data = loads_json_body(await request.body())  # bounded depth: 100,000 "[" is a 400, not a crash
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None


def _documented(model: type[BaseModel]) -> dict:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": model.model_json_schema(ref_template="#/components/schemas/{model}")
                }
            },
        }
    }


@router.post("/knn-service", openapi_extra=_documented(KnnRequest))
async def knn_service(request: Request, state: Annotated[ServerState, Depends(get_state)]):
    body = await _json_body(request, KnnRequest)
    return await run_in_threadpool(_knn, body, request, state)


def _knn(body: KnnRequest, request: Request, state: ServerState) -> list[dict]:
    """Nearest images to a text, an image (base64), an image URL or an embedding; clip-retrieval's
    answer shape: `[{"url", "image_path", "caption", "id", "similarity"}, ...]`, the first
    `num_images` with metadata and the rest, up to `num_result_ids`, as `{"id", "similarity"}`."""
    _check_index(body.indice_name)
    wanted = max(body.num_images, body.num_result_ids or body.num_images)
    term = _query_term(state, body)
    if body.use_mclip and term.kind == "text":
        _check_multilingual(state)
    # Ask for more when deduplicating, since some of them will be dropped.
    fetch = min(wanted * 2 + 10, 20000) if body.deduplicate else wanted
    options = SearchOptions(k=fetch, dedup=False, lang=body.lang)  # knn dedups itself
    results, _ = run_search(state, [term], options)
    if body.deduplicate:
        results = _deduplicate(state, results)
    results = results[:wanted]
    out = []
    for position, result in enumerate(results):
        row = _metadata(request, result.image_id, result.path) if position < body.num_images else {}
        row["id"] = result.image_id
        row["similarity"] = float(result.score)
        out.append(row)
    return out


@router.get("/indices-list")
def indices_list() -> list[str]:
    """The indices this back end serves (clip-retrieval's front end asks first)."""
    return [INDEX_NAME]


class MetadataRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    ids: list[int] = Field(max_length=10000)
    indice_name: str | None = INDEX_NAME


@router.post("/metadata", openapi_extra=_documented(MetadataRequest))
async def metadata(request: Request, state: Annotated[ServerState, Depends(get_state)]):
    """Metadata for result ids (clip-retrieval's front end fetches it for results beyond num_images)."""
    body = await _json_body(request, MetadataRequest)
    _check_index(body.indice_name)
    with state.lock:
        records = state.catalog.images(body.ids)
    return [{"id": i, "metadata": _metadata(request, i, records[i].path)} for i in body.ids if i in records]
