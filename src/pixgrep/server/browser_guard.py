"""What keeps other web sites out of a server that a browser can reach: the Host names it answers
(DNS rebinding), the Origin and Content-Type a POST needs (cross-site form and no-cors posts), and
the headers every answer carries (no sniffing, no referrer, no framing).

Plain ASGI, outermost: a refused request reaches no route, token check or body parser.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from pixgrep.server.guards import send_json_error

LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = ("0.0.0.0", "::", "")

# The page: its own scripts, styles and API only; previews may be blob: (a dropped picture) or data:.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_ALWAYS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]

# The media type each POST route takes. clip-retrieval's ClipClient posts JSON with no
# Content-Type at all, so its two routes also take none (a browser's cross-site post always
# carries an Origin, which is checked first).
_POST_TYPES: dict[str, tuple[str, ...]] = {
    "/api/search/image": ("multipart/form-data",),
    "/knn-service": ("application/json", ""),
    "/metadata": ("application/json", ""),
}
_JSON = ("application/json",)


def host_name(host: str) -> str:
    """The name part of a Host header or a URL's netloc, lower case: no port, no brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host[1:]
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _endpoint(netloc: str, scheme: str) -> tuple[str, int | None]:
    """(host name, port) with the scheme's default port filled in."""
    try:
        port = urlsplit(f"//{netloc}").port
    except ValueError:
        return host_name(netloc), -1
    return host_name(netloc), port or {"http": 80, "https": 443}.get(scheme)


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


class BrowserGuard:
    """Host, Origin and Content-Type checks, and the security headers on every answer.

    names: the host names answered (the bind address, localhost, 127.0.0.1, ::1 and --allowed-host
    names); with a wildcard bind (0.0.0.0, ::) any IP address literal too: no name is involved, so
    none can be rebound. cors_origins: origins whose POSTs are taken as same-origin ones.
    """

    def __init__(
        self, app, *, bind_host: str | None, allowed_hosts: Iterable[str], cors_origins: Iterable[str]
    ):
        self.app = app
        bind = host_name(bind_host or "127.0.0.1")
        self.any_ip = bind in WILDCARD_BINDS
        self.names = {*LOCAL_NAMES, bind, *(host_name(h) for h in allowed_hosts)}
        self.cors_origins = {o.rstrip("/").lower() for o in cors_origins}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), *_ALWAYS]
            await send(message)

        refusal = self._refusal(scope)
        if refusal is not None:
            status, text = refusal
            return await send_json_error(send_with_headers, status, text)
        return await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope) -> tuple[int, str] | None:
        host = _header(scope, b"host")
        if host is not None:
            name = host_name(host)
            if name not in self.names and not (self.any_ip and _is_ip(name)):
                return 400, f"this server does not answer to the name {name!r} (pixgrep serve --allowed-host)"
        origin = _header(scope, b"origin")
        method = scope.get("method", "GET")
        if method == "GET" and scope.get("path") == "/api/search" and not self._listed(origin):
            # An <img> on another site's page must not make this server search, or fetch a URL.
            if (_header(scope, b"sec-fetch-site") or "").lower() == "cross-site":
                return 403, "searches asked for by another site's page are refused"
        if method in ("GET", "HEAD", "OPTIONS"):
            return None
        if origin is not None and not (self._same_origin(origin, host, scope) or self._listed(origin)):
            shown = origin[:100]
            return (
                403,
                f"requests from another site's page ({shown}) are refused (pixgrep serve --cors-origin)",
            )
        if method != "POST":
            return None  # the routes answer 405
        wanted = _POST_TYPES.get(scope.get("path", ""), _JSON)
        kind = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        if kind not in wanted:
            shown = " or ".join(w for w in wanted if w)
            return 415, f"{method} {scope.get('path')} needs Content-Type: {shown}"
        return None

    def _listed(self, origin: str | None) -> bool:
        return origin is not None and origin.rstrip("/").lower() in self.cors_origins

    @staticmethod
    def _same_origin(origin: str, host: str | None, scope) -> bool:
        if host is None:
            return False
        parts = urlsplit(origin)
        scheme = scope.get("scheme", "http")
        return parts.scheme == scheme and _endpoint(parts.netloc, parts.scheme) == _endpoint(host, scheme)
