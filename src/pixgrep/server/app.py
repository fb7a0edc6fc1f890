"""The FastAPI application: `create_app` wires the shared state, the guards, the routes and the page.

    from pixgrep.server.app import create_app
    app = create_app("catalog.db", model="pixgrep-mini")      # uvicorn.run(app)

Every error a client can cause is answered with a 4xx status and a short JSON body
`{"error": "..."}`; the OpenAPI page is at /docs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from pixgrep import __version__
from pixgrep.api import open_catalog
from pixgrep.errors import CatalogUnavailable, PixgrepError
from pixgrep.images.decode import ImageDecodeError, ImageTooLarge
from pixgrep.models.base import Encoder
from pixgrep.search.fetch import DownloadsBusy
from pixgrep.server.browser_guard import PAGE_CSP, BrowserGuard
from pixgrep.server.guards import BodySizeLimit, TokenGuard
from pixgrep.server.indexing import IndexBusy, IndexRunner
from pixgrep.server.state import MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS, ServerState

STATIC_DIR = Path(__file__).parent / "static"

DESCRIPTION = """\
Search a pixgrep catalog by text, by image, or both.

* `/api/...`: pixgrep's own API (search, images by catalog id, stats, models, index runs).
* `/knn-service`, `/indices-list`, `/metadata`: compatible with clip-retrieval's back end, so its
  `ClipClient` and front end work against pixgrep.
* `/`: the web page.

When the server was started with a token, every request must carry it: `Authorization: Bearer TOKEN`,
or `?token=TOKEN` in the URL (which also sets an HttpOnly cookie, so the page's images load).
Only the server's own host names are answered; a POST needs `Content-Type: application/json`
(multipart for the upload) and, from a browser, a same-origin `Origin`.
"""


class PathSafeJSONResponse(JSONResponse):
    """JSON whose strings may hold file names that are not UTF-8 (surrogateescape): such a
    character goes out as its JSON escape (\\udce9), so the body is valid JSON and a client
    gets the exact name back (os.fsencode of the decoded string gives the bytes on disk)."""

    def render(self, content) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))
        return text.encode("utf-8", "backslashreplace")


def _error(status: int, message: str) -> JSONResponse:
    return PathSafeJSONResponse({"error": message}, status_code=status)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path", "form"))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg", "invalid"))
    return "; ".join(parts) or "invalid request"


# The error statuses each route can answer, beyond 400 and 422 (every route) and 413 (every POST).
_ROUTE_ERRORS: dict[str, tuple[int, ...]] = {
    "/api/search": (404, 415, 503),
    "/api/search/image": (404, 415, 503),
    "/api/images/{image_id}": (404,),
    "/api/images/{image_id}/thumb": (403, 404),
    "/api/images/{image_id}/file": (403, 404, 416),
    "/api/images/{image_id}/similar": (404,),
    "/api/images/{image_id}/meta": (404,),
    "/api/models/{name}": (404,),
    "/api/index": (409,),
    "/knn-service": (404, 415, 503),
}


def _document_errors(app: FastAPI, token: bool) -> None:
    """List in the OpenAPI schema every error status a route gives, all with the {"error": ...}
    body (FastAPI's own 422 entry describes a body pixgrep never sends, so it is replaced)."""
    from pixgrep.server.guards import ErrorBody, error_text

    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        schema.setdefault("components", {}).setdefault("schemas", {})["ErrorBody"] = (
            ErrorBody.model_json_schema()
        )
        body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                codes = {400, 422, *_ROUTE_ERRORS.get(path, ())}
                if method == "post":
                    codes.update((403, 413, 415))
                if token:
                    codes.add(401)
                responses = operation.setdefault("responses", {})
                for code in sorted(codes):
                    responses[str(code)] = {"description": error_text(code), "content": body}
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(
    catalog_path: str | os.PathLike | None = None,
    model: str | None = None,
    encoder: Encoder | None = None,
    token: str | None = None,
    *,
    max_upload: int = MAX_UPLOAD_BYTES,
    max_pixels: int = MAX_UPLOAD_PIXELS,
    cors_origins: list[str] | tuple[str, ...] = (),
    bind_host: str | None = None,
    allowed_hosts: list[str] | tuple[str, ...] = (),
    allow_private_urls: bool = False,
) -> FastAPI:
    """Build the app. The model is loaded here, once, so an unknown model fails at start-up.

    Host names answered: `bind_host` (what uvicorn listens on; default 127.0.0.1), localhost,
    127.0.0.1, ::1 and `allowed_hosts`. Image URLs are fetched from public addresses only unless
    `allow_private_urls`. Uploaded or fetched query images may have at most `max_pixels`."""
    catalog = open_catalog(catalog_path, model, encoder=encoder)
    shared_encoder = catalog.encoder  # raises PixgrepError for an unknown model
    state = ServerState(
        catalog=catalog,
        model_name=model or str(getattr(shared_encoder, "model_id", "model")),
        token=token or None,
        runner=IndexRunner(catalog.path, lambda: shared_encoder),
        max_upload=max_upload,
        max_pixels=max_pixels,
        allow_private_urls=allow_private_urls,
    )

    app = FastAPI(
        title="pixgrep",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,  # served by metadata_routes from local assets: /docs works offline
        redoc_url=None,
        default_response_class=PathSafeJSONResponse,
    )
    app.state.pixgrep = state

    @app.exception_handler(PixgrepError)
    async def _pixgrep_error(request: Request, exc: PixgrepError):
        if isinstance(exc, ImageTooLarge):  # over pixgrep's own cap: over this server's too
            return _error(413, f"cannot use the image: {exc}")
        if isinstance(exc, ImageDecodeError):
            return _error(415, f"cannot use the image: {exc}")
        if isinstance(exc, IndexBusy):
            return _error(409, str(exc))
        if isinstance(exc, (DownloadsBusy, CatalogUnavailable)):  # the server's trouble, not the request's
            return _error(503, str(exc))
        return _error(400, str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        # A catalog read that no storage layer turned into one line (a damaged page): that line,
        # as the command line gives it. Anything else is a bug: 500 (the server logs it).
        from pixgrep.catalog.db import catalog_error_line

        line = catalog_error_line(exc, state.catalog.path)
        return _error(503, line) if line is not None else _error(500, "internal error")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        return PathSafeJSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        return _error(422, _validation_message(exc))

    from pixgrep.server import catalog_routes, images, knn, metadata_routes, search_routes

    app.include_router(search_routes.router)
    app.include_router(images.router)
    app.include_router(catalog_routes.router)
    app.include_router(knn.router)
    app.include_router(metadata_routes.router)

    _document_errors(app, bool(state.token))

    @app.get("/", include_in_schema=False)
    def page():
        headers = {"Cache-Control": "no-cache", "Content-Security-Policy": PAGE_CSP}
        return FileResponse(STATIC_DIR / "index.html", headers=headers)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    swagger = metadata_routes.swagger_dir()
    if swagger is not None:
        app.mount(metadata_routes.DOCS_ASSETS, StaticFiles(directory=swagger), name="docs-assets")

    # add_middleware wraps what is there: the last added runs first. CORS answers preflights (which
    # carry no token), then the token check runs before anything reads the body.
    # Base64 in JSON is 4/3 of the bytes, plus room for the other form fields.
    app.add_middleware(BodySizeLimit, max_bytes=max_upload * 4 // 3 + 1024 * 1024)
    if state.token:
        app.add_middleware(TokenGuard, token=state.token)
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )
    # Outermost: a request for another host name, or a cross-site post, reaches nothing else.
    app.add_middleware(
        BrowserGuard, bind_host=bind_host, allowed_hosts=list(allowed_hosts), cors_origins=list(cors_origins)
    )

    return app
