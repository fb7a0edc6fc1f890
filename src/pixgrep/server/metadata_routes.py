"""Photo metadata over HTTP: facets (places, cameras, years, tags with counts) and one image's
metadata (camera, lens, place, coordinates, keywords), plus the page's favicon and a /docs page
whose Swagger UI assets are served from this server (the swagger-ui-bundle-v2 package), not a CDN.
"""

from __future__ import annotations

import io
from functools import lru_cache
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse, Response

from pixgrep.server.guards import ImageIdPath
from pixgrep.server.querying import not_found
from pixgrep.server.search_params import MetadataFilters
from pixgrep.server.state import ServerState, get_state

router = APIRouter()


@router.get("/api/facets", tags=["catalog"])
def facets(
    state: Annotated[ServerState, Depends(get_state)],
    filters: Annotated[MetadataFilters, Query()],
    limit: Annotated[int, Query(ge=1, le=200)] = 12,
):
    """The most common places, countries, cameras, years and tags, with image counts; with filters
    given, counted over the images that pass them (what a click on a facet would narrow down to)."""
    from pixgrep.search.options import SearchOptions

    options = SearchOptions(**filters.model_dump())
    with state.lock:
        return state.catalog.facets(options, limit=limit)


@router.get("/api/images/{image_id}/meta", tags=["images"])
def image_meta(image_id: ImageIdPath, state: Annotated[ServerState, Depends(get_state)]):
    """Camera, lens, place, coordinates, altitude, title, description and keywords of one image
    (null fields where the file has none)."""
    with state.lock:
        if not state.catalog.images([image_id]):
            raise not_found(f"no image with id {image_id} in the catalog")
        meta = state.catalog.photo_metadata([image_id]).get(image_id)
    if meta is None:  # indexed before metadata existed and not refreshed yet
        return {"id": image_id, "keywords": []}
    return {"id": image_id, **meta.to_json()}


@lru_cache(maxsize=1)
def favicon_bytes() -> bytes:
    """A small magnifier in the page's accent colour, drawn once (no binary file in the repository)."""
    from PIL import Image, ImageDraw

    size = 64
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((6, 6, 42, 42), outline=(108, 182, 255, 255), width=7)
    draw.line((37, 37, 58, 58), fill=(108, 182, 255, 255), width=9)
    out = io.BytesIO()
    image.save(out, format="ICO", sizes=[(16, 16), (32, 32), (48, 48), (64, 64)])
    return out.getvalue()


@router.get("/favicon.ico", include_in_schema=False)
def favicon():
    return Response(favicon_bytes(), media_type="image/x-icon", headers={"Cache-Control": "max-age=86400"})


DOCS_ASSETS = "/docs-assets"


def swagger_dir():
    """The Swagger UI files of the swagger-ui-bundle-v2 package, or None when it is not installed."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    return swagger_ui_path


@router.get("/docs", include_in_schema=False)
def docs():
    from fastapi.openapi.docs import get_swagger_ui_html

    if swagger_dir() is None:
        return HTMLResponse(
            "<!doctype html><title>pixgrep API</title><p>The interactive API page needs the "
            "swagger-ui-bundle-v2 package (<code>pip install 'pixgrep[serve]'</code>); the API "
            'description itself is at <a href="/openapi.json">/openapi.json</a>.</p>'
        )
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="pixgrep API",
        swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
        swagger_favicon_url="/favicon.ico",
    )
