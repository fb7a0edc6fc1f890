"""ASGI middleware that runs before any route: the access token and the request body size cap.

Both are plain ASGI (not BaseHTTPMiddleware) so an oversized body is refused while it streams in,
before anything is parsed or spooled to disk.
"""

from __future__ import annotations

import hmac
import json
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

TOKEN_COOKIE = "pixgrep_token"


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
        started = False

        async def counting_receive():
            nonlocal seen
            event = await receive()
            if event["type"] == "http.request":
                seen += len(event.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge()
            return event

        async def tracking_send(event):
            nonlocal started
            if event["type"] == "http.response.start":
                started = True
            await send(event)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await send_json_error(send, 413, message)
