"""What guards every request: ASGI middleware for the access token and the body size cap, and the
shared validators routes declare their inputs with (image ids SQLite can hold, text without NUL,
JSON bodies of bounded depth), plus the error responses the OpenAPI schema lists for each route.

The middleware is plain ASGI (not BaseHTTPMiddleware) so an oversized body is refused while it
streams in, before anything is parsed or spooled to disk.
"""

from __future__ import annotations

import hmac
import json
from http.cookies import SimpleCookie
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import Path, Query
from pydantic import AfterValidator, BaseModel

from pixgrep.errors import PixgrepError

TOKEN_COOKIE = "pixgrep_token"

# SQLite stores 64-bit signed integers: a bigger id names no image and must not reach it.
MAX_IMAGE_ID = 2**63 - 1
MAX_PATH_CHARS = 4096  # PATH_MAX on Linux; longer names fail in the kernel anyway
MAX_JSON_DEPTH = 64  # far deeper than any request pixgrep takes; Python's parser overflows near 1000


def _no_nul(value: str) -> str:
    if "\0" in value:
        raise ValueError("must not contain a NUL character")
    return value


# A str that the file system can take (no NUL) : folder scopes and the like.
PlainText = Annotated[str, AfterValidator(_no_nul)]
ImageIdPath = Annotated[int, Path(ge=0, le=MAX_IMAGE_ID, description="a catalog image id")]
ImageIdQuery = Annotated[
    int | None, Query(ge=0, le=MAX_IMAGE_ID, description="a catalog image id: more like this")
]


def check_folder_text(folder: str) -> None:
    """PixgrepError for a folder name no file system call could take."""
    if "\0" in folder:
        raise PixgrepError("a folder path must not contain a NUL character")
    if len(folder) > MAX_PATH_CHARS:
        raise PixgrepError(f"a folder path of {len(folder)} characters is over the {MAX_PATH_CHARS} limit")


def _depth_ok(raw: bytes, limit: int) -> bool:
    """Is the JSON nesting (brackets outside strings) at most `limit` deep? One pass, no parse."""
    depth, in_string, escaped = 0, False, False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return False
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return True


def loads_json_body(raw: bytes) -> Any:
    """A request body as JSON, or PixgrepError (400) for one that is not JSON or nests too deep."""
    if not _depth_ok(raw, MAX_JSON_DEPTH):
        raise PixgrepError(f"the request body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        raise PixgrepError("the request body is not JSON") from None


class ErrorBody(BaseModel):
    """Every error a client can cause is answered with this body."""

    error: str


_ERROR_TEXT = {
    400: "bad input (a query, an image, a folder or a field that cannot be used)",
    401: "the server needs a token, or got a wrong one",
    403: "the catalog's file is a link out of the catalog; not served",
    404: "no such image or model",
    409: "another index run is still going",
    413: "the request body or the image is too big",
    415: "the upload or download is not an image pixgrep can read",
    416: "no byte the Range header asks for is in the file",
    422: "a field has the wrong type or is out of range",
    503: "every image download slot is busy; try again",
}


def error_text(code: int) -> str:
    return _ERROR_TEXT.get(code, "request failed")


async def send_json_error(send, status: int, message: str, headers: list | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _wants_page(scope) -> bool:
    """A browser opening a page (GET, HTML accepted, not an API path)."""
    accept = _header(scope, b"accept") or ""
    return scope.get("method") == "GET" and "text/html" in accept and not scope["path"].startswith("/api/")


async def send_token_page(send) -> None:
    """401 with static/needs-token.html: what the token is and where to find it."""
    from pathlib import Path as FilePath

    body = (FilePath(__file__).with_name("static") / "needs-token.html").read_bytes()
    headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [*headers, (b"www-authenticate", b"Bearer")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


class TokenGuard:
    """Every request must carry the token: `Authorization: Bearer T`, `?token=T` (for <img> URLs
    and the first page load) or the cookie the server sets after a good `?token=`."""

    def __init__(self, app, token: str):
        self.app = app
        self.token = token.encode()

    def _matches(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self.token)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        auth = _header(scope, b"authorization") or ""
        bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [None])[0]
        cookie = None
        if raw := _header(scope, b"cookie"):
            jar = SimpleCookie()
            try:
                jar.load(raw)
                cookie = jar[TOKEN_COOKIE].value if TOKEN_COOKIE in jar else None
            except Exception:  # a malformed cookie header is just "no token"
                cookie = None
        if not (self._matches(bearer) or self._matches(query) or self._matches(cookie)):
            given = bearer is not None or query is not None or cookie is not None
            reason = "wrong token" if given else "this server needs a token (Bearer header or ?token=)"
            if _wants_page(scope):  # a person's browser: a page that explains, not raw JSON
                return await send_token_page(send)
            return await send_json_error(send, 401, reason, [(b"www-authenticate", b"Bearer")])
        if self._matches(query) and not self._matches(cookie):
            # Remember a token given in the URL, so the page's scripts, styles and images load too.
            cookie_value = f"{TOKEN_COOKIE}={self.token.decode()}; Path=/; HttpOnly; SameSite=Strict"

            async def send_with_cookie(message):
                if message["type"] == "http.response.start":
                    message = dict(message)
                    message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie_value.encode())]
                await send(message)

            return await self.app(scope, receive, send_with_cookie)
        return await self.app(scope, receive, send)


class _TooLarge(Exception):
    pass


class BodySizeLimit:
    """Refuse request bodies over `max_bytes` with 413, by Content-Length or while streaming."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = f"request body is over the {self.max_bytes // (1024 * 1024)} MB limit"
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await send_json_error(send, 413, message)
        seen = 0
        started = exceeded = False

        async def counting_receive():
            nonlocal seen, exceeded
            event = await receive()
            if event["type"] == "http.request":
                seen += len(event.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True
                    raise _TooLarge()
            return event

        async def tracking_send(event):
            nonlocal started
            if exceeded:
                # The body parser turned the cut-off into an error of its own (FastAPI: a 400):
                # the answer is the 413, whatever else the app says.
                if not started:
                    started = True
                    await send_json_error(send, 413, message)
                return
            if event["type"] == "http.response.start":
                started = True
            await send(event)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await send_json_error(send, 413, message)
