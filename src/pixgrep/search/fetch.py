"""Download an image URL for a query term: which addresses may be fetched, a size cap, a total
deadline, a cap on concurrent downloads, and one-line errors.

Addresses (the server's default; the CLI, run on the user's own machine, allows every address):
the URL's host is resolved once, every address it names must be public (not loopback, private,
link-local, shared, multicast, reserved or unspecified, nor an IPv4-mapped or 6to4 form of one),
and the connection goes to an address that was checked: there is no second lookup for a DNS answer
to change in between. TLS still checks the certificate against the host name. Every redirect hop
is a new request through the same connection class, so it is checked the same way; only http and
https are followed, and no proxy is used (a proxy would resolve the name again).

The deadline covers the whole download (connect, headers, body), not each read: a server that
sends one byte per second is cut off when the time is up. A watchdog timer shuts the connection's
socket down at the deadline, which wakes whatever read is blocked on it; the body is read with
read1, so the loop also sees the clock between the bytes that do arrive.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from pixgrep import __version__
from pixgrep.errors import PixgrepError
from pixgrep.settings import seconds

MAX_BYTES = 20 * 1024 * 1024
DEFAULT_TIMEOUT_S = 15.0  # the whole download, in seconds; $PIXGREP_URL_TIMEOUT changes it
MAX_DOWNLOADS = 4  # at once in one process (a server's requests share it); more wait, then fail
# How long a download waits for a slot. Briefly: a server's request holds a worker thread while it
# waits, and waiting out slow hosts' deadlines let a burst of their URLs take every thread.
SLOT_WAIT_S = 0.5
_CHUNK = 64 * 1024

_slots = threading.BoundedSemaphore(MAX_DOWNLOADS)


def url_timeout() -> float:
    """The download deadline: $PIXGREP_URL_TIMEOUT seconds (checked: one line if unusable), or 15."""
    return seconds("PIXGREP_URL_TIMEOUT", DEFAULT_TIMEOUT_S)


class DownloadsBusy(PixgrepError):
    """Every download slot was taken (and stayed taken for SLOT_WAIT_S)."""


class AddressRefused(PixgrepError):
    """The URL's host is, or resolves to, an address that is not fetched (private, loopback, ...)."""


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """May a refusing fetch connect here? Only globally routable unicast addresses; an IPv6 form
    that carries an IPv4 address (::ffff:a.b.c.d, 2002:a.b.c.d::) must carry a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:  # the IPv4 address itself, reached over IPv6
            return is_public(address.ipv4_mapped)
        if address.sixtofour is not None and not is_public(address.sixtofour):
            return False
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_link_local or address.is_loopback
    )


def checked_addresses(host: str, port: int) -> list[tuple[Any, ...]]:
    """(family, type, proto, sockaddr) to connect to for `host`: resolved once here; AddressRefused
    when any address it names is not public (a name that also points inward is not trusted)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise OSError(f"cannot resolve {host}: {getattr(exc, 'strerror', None) or exc}") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not is_public(address):
            raise AddressRefused(f"{host} is not a public address ({address}): not fetched")
    return [(family, kind, proto, sockaddr) for family, kind, proto, _, sockaddr in infos]


def _connect_checked(
    address: tuple[str, int], timeout: object = None, _source: object = None
) -> socket.socket:
    """socket.create_connection, to the checked addresses of the host only."""
    host, port = address
    last: OSError | None = None
    for family, kind, proto, sockaddr in checked_addresses(host, port):
        sock = socket.socket(family, kind, proto)
        try:
            if isinstance(timeout, int | float):
                sock.settimeout(timeout)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last or OSError(f"cannot connect to {host}")


class _Watchdog:
    """Shuts down the sockets of one download when its deadline passes."""

    def __init__(self, seconds: float):
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.expired = False
        self._timer = threading.Timer(max(0.0, seconds), self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def watch(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed
        pass


def _opener(watchdog: _Watchdog, allow_private: bool) -> urllib.request.OpenerDirector:
    """http(s) only, redirects followed through the same handlers; connections hand their socket
    to the watchdog, and (unless `allow_private`) connect only to checked addresses, no proxy."""

    class WatchedHTTP(http.client.HTTPConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if not allow_private:
                self._create_connection = _connect_checked

        def connect(self) -> None:
            super().connect()
            watchdog.watch(self.sock)

    class WatchedHTTPS(http.client.HTTPSConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if not allow_private:
                self._create_connection = _connect_checked

        def connect(self) -> None:
            super().connect()  # TCP to a checked address, then TLS against the URL's host name
            watchdog.watch(self.sock)

    class HTTPHandler(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(WatchedHTTP, req)

    class HTTPSHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(WatchedHTTPS, req)

    opener = urllib.request.OpenerDirector()
    proxies = urllib.request.ProxyHandler() if allow_private else urllib.request.ProxyHandler({})
    for handler in (
        proxies,
        HTTPHandler(),
        HTTPSHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPRedirectHandler(),
        urllib.request.HTTPErrorProcessor(),
        urllib.request.UnknownHandler(),  # ftp:, file:, data: (a redirect may name them): refused
    ):
        opener.add_handler(handler)
    return opener


def one_line(text: object) -> str:
    """A reason for an error line: urllib and http.client texts may span lines (HTML bodies)."""
    words = " ".join(str(text).split())
    return words[:300] + ("..." if len(words) > 300 else "")


def fetch_image_bytes(
    url: str, *, max_bytes: int = MAX_BYTES, timeout: float | None = None, allow_private: bool = True
) -> bytes:
    """The body of `url` if it is at most `max_bytes` and arrives within `timeout` seconds overall
    (default: url_timeout()). `allow_private=False` (the server's default) fetches only public
    addresses, on every redirect hop too (module docstring).

    Raises PixgrepError: HTTP status, unreachable host, timeout, too big, or an HTML/text page;
    AddressRefused for an address that is not fetched; DownloadsBusy when MAX_DOWNLOADS others are
    still running after SLOT_WAIT_S. Whether the bytes are a readable image is checked by the
    decoder that gets them.
    """
    if timeout is None:
        timeout = url_timeout()
    started = time.monotonic()
    if not _slots.acquire(timeout=min(timeout, SLOT_WAIT_S)):
        raise DownloadsBusy(f"{url}: {MAX_DOWNLOADS} other image downloads are running; try again shortly")
    try:
        remaining = timeout - (time.monotonic() - started)
        with _Watchdog(remaining) as watchdog:
            try:
                return _download(url, max_bytes, timeout, remaining, watchdog, allow_private)
            except AddressRefused as exc:
                raise AddressRefused(f"{url}: {exc}") from None
            except PixgrepError:
                raise
            except Exception as exc:
                if watchdog.expired:
                    raise PixgrepError(f"{url}: timed out after {timeout:g} s") from None
                raise PixgrepError(_reason(url, exc, timeout)) from None
    finally:
        _slots.release()


def _download(
    url: str, max_bytes: int, timeout: float, remaining: float, watchdog: _Watchdog, allow_private: bool
) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": f"pixgrep/{__version__}"})
    with _opener(watchdog, allow_private).open(request, timeout=max(0.01, remaining)) as response:
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > max_bytes:
            raise PixgrepError(f"{url}: {_mb(int(length))} is over the {_mb(max_bytes)} download cap")
        kind = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if kind.startswith("text/") or kind in ("application/json", "application/xhtml+xml"):
            raise PixgrepError(f"{url}: not an image (the server sent {one_line(kind)})")
        body = bytearray()
        while True:
            chunk = response.read1(_CHUNK)  # whatever has arrived: the loop sees the clock often
            if watchdog.expired:  # a shut-down socket reads as the end: not a complete body
                raise PixgrepError(f"{url}: timed out after {timeout:g} s")
            if not chunk:
                return bytes(body)
            body += chunk
            if len(body) > max_bytes:
                raise PixgrepError(f"{url}: more than the {_mb(max_bytes)} download cap")


def _reason(url: str, exc: Exception, timeout: float) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"{url}: HTTP {exc.code} {one_line(exc.reason)}"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return f"{url}: timed out after {timeout:g} s"
        text = getattr(reason, "strerror", None) or reason
        return f"{url}: cannot download: {one_line(text)}"
    if isinstance(exc, TimeoutError):
        return f"{url}: timed out after {timeout:g} s"
    # a reset connection, a malformed URL or answer
    return f"{url}: cannot download: {one_line(exc) or type(exc).__name__}"


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB" if size < 10 * 1024 * 1024 else f"{size // (1024 * 1024)} MB"
