"""Catalog stats, the models, and index runs (one at a time, in the background, polled)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from pixgrep.errors import CatalogUnavailable
from pixgrep.server.querying import model_mismatch, not_found
from pixgrep.server.state import ServerState, get_state

router = APIRouter(prefix="/api")


@router.get("/stats", tags=["catalog"])
def stats(state: Annotated[ServerState, Depends(get_state)]):
    """Images, unreadable files, vectors per model and file size of the catalog."""
    with state.lock:
        info = state.catalog.stats()
    info["model"] = state.model_id
    info["searchable"] = int(info.get("vectors", {}).get(state.model_id, 0))
    return info


@router.get("/folders", tags=["catalog"])
def folders(state: Annotated[ServerState, Depends(get_state)], limit: int = 200):
    """Folders that hold catalog images, the fullest first: choices for the folder scope."""
    with state.lock:
        counts = state.catalog.folders()
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[: max(1, min(limit, 2000))]
    return {"folders": [{"folder": folder, "images": n} for folder, n in ranked]}


def known_models() -> list[dict]:
    """The registry's models (name, dimensions, quality figures)."""
    from pixgrep.models.registry import DEFAULT_MODEL, MODELS

    return [dict(spec.as_dict(), default=name == DEFAULT_MODEL) for name, spec in MODELS.items()]


def _served(state: ServerState) -> dict:
    """The served model. `languages`: what queries may be written in ("en" or "multilingual ...");
    `query_language`: for a text tower that takes a language token (NLLB), the server's default
    (FLORES-200) and the choices a request's `lang` may name, with BCP 47 tags; else null."""
    from pixgrep.models.languages import is_multilingual

    encoder = state.catalog.encoder
    languages = encoder.languages
    query_language = None
    if encoder.multilingual_tokens:
        query_language = {"default": encoder.query_language, "choices": encoder.language_choices()}
    return {
        "name": state.model_name,
        "model_id": encoder.model_id,
        "dim": int(encoder.dim),
        "languages": languages,
        "multilingual": is_multilingual(languages),
        "query_language": query_language,
    }


@router.get("/models", tags=["models"])
def models(state: Annotated[ServerState, Depends(get_state)]):
    """The model this server loaded (one, shared by every request) and the models pixgrep knows."""
    return {"served": _served(state), "known": known_models()}


@router.get("/models/{name:path}", tags=["models"])
def model_info(name: str, state: Annotated[ServerState, Depends(get_state)]):
    """The served model by name or id; 404 for any other."""
    if not state.serves_model(name):
        raise not_found(model_mismatch(state, name))
    return _served(state)


class IndexIn(BaseModel):
    folder: str = Field(description="an absolute folder path on the server's machine")
    ocr: bool | None = Field(None, description="read text in the pictures (remembered); null: as before")


@router.post("/index", status_code=202, tags=["catalog"])
def start_index(body: IndexIn, state: Annotated[ServerState, Depends(get_state)]):
    """Start indexing a folder in the background (409 while another run is going, 503 for a
    catalog opened read-only); poll GET /api/index."""
    if state.catalog.read_only:  # refused now, not as the run's error after a 202
        from pixgrep.catalog.paths import shown_path

        raise CatalogUnavailable(
            f"catalog {shown_path(state.catalog.path)}: it is read-only: "
            "it can be searched but not indexed into"
        )
    return JSONResponse(state.runner.start(body.folder, ocr=body.ocr), status_code=202)


@router.get("/index", tags=["catalog"])
def index_status(state: Annotated[ServerState, Depends(get_state)]):
    """The current or last index run: state (idle, running, done, failed), folder, running summary."""
    return state.runner.status()
