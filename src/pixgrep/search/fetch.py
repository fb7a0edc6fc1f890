"""Download an image URL for a query term: a size cap, a total deadline, a cap on concurrent
downloads, and one-line errors.

The deadline covers the whole download (connect, headers, body), not each read: a server that
sends one byte per second is cut off when the time is up. A watchdog timer shuts the connection's
socket down at the deadline, which wakes whatever read is blocked on it; the body is read with
read1, so the loop also sees the clock between the bytes that do arrive.
"""

from __future__ import annotations

import http.client
import os
import socket
import threading
import time
import urllib.error
import urllib.request

from pixgrep import __version__
from pixgrep.errors import PixgrepError

MAX_BYTES = 20 * 1024 * 1024
TIMEOUT_S = float(os.environ.get("PIXGREP_URL_TIMEOUT") or 15.0)  # the whole download, in seconds
MAX_DOWNLOADS = 4  # at once in one process (a server's requests share it); more wait, then fail
_CHUNK = 64 * 1024

_slots = threading.BoundedSemaphore(MAX_DOWNLOADS)


class DownloadsBusy(PixgrepError):
    """Every download slot stayed taken until the deadline."""


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


def _opener(watchdog: _Watchdog) -> urllib.request.OpenerDirector:
    """urllib's opener, with connections that hand their socket to the watchdog once connected."""

    class WatchedHTTP(http.client.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            watchdog.watch(self.sock)

    class WatchedHTTPS(http.client.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            watchdog.watch(self.sock)

    class HTTPHandler(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(WatchedHTTP, req)

    class HTTPSHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(WatchedHTTPS, req)

    return urllib.request.build_opener(HTTPHandler, HTTPSHandler)


def one_line(text: object) -> str:
    """A reason for an error line: urllib and http.client texts may span lines (HTML bodies)."""
    words = " ".join(str(text).split())
    return words[:300] + ("..." if len(words) > 300 else "")


def fetch_image_bytes(url: str, *, max_bytes: int = MAX_BYTES, timeout: float = TIMEOUT_S) -> bytes:
    """The body of `url` if it is at most `max_bytes` and arrives within `timeout` seconds overall.

    Raises PixgrepError: HTTP status, unreachable host, timeout, too big, or an HTML/text page;
    DownloadsBusy when MAX_DOWNLOADS others are running for the whole `timeout`.
    Whether the bytes are a readable image is checked by the decoder that gets them.
    """
    started = time.monotonic()
    if not _slots.acquire(timeout=timeout):
        raise DownloadsBusy(
            f"{url}: {MAX_DOWNLOADS} other image downloads kept every slot busy for {timeout:g} s; try again"
        )
    try:
        remaining = timeout - (time.monotonic() - started)
        with _Watchdog(remaining) as watchdog:
            try:
                return _download(url, max_bytes, timeout, remaining, watchdog)
            except PixgrepError:
                raise
            except Exception as exc:
                if watchdog.expired:
                    raise PixgrepError(f"{url}: timed out after {timeout:g} s") from None
                raise PixgrepError(_reason(url, exc, timeout)) from None
    finally:
        _slots.release()


def _download(url: str, max_bytes: int, timeout: float, remaining: float, watchdog: _Watchdog) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": f"pixgrep/{__version__}"})
    with _opener(watchdog).open(request, timeout=max(0.01, remaining)) as response:
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
