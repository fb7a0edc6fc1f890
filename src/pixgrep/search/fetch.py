"""Download an image URL for a query term: a size cap, a deadline, and one-line errors."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

from pixgrep import __version__
from pixgrep.errors import PixgrepError

MAX_BYTES = 20 * 1024 * 1024
TIMEOUT_S = 15.0
_CHUNK = 64 * 1024


def fetch_image_bytes(url: str, *, max_bytes: int = MAX_BYTES, timeout: float = TIMEOUT_S) -> bytes:
    """The body of `url` if it is at most `max_bytes` and arrives within `timeout` seconds overall.

    Raises PixgrepError: HTTP status, unreachable host, timeout, too big, or an HTML/text page.
    Whether the bytes are a readable image is checked by the decoder that gets them.
    """
    request = urllib.request.Request(url, headers={"User-Agent": f"pixgrep/{__version__}"})
    deadline = time.monotonic() + timeout
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise PixgrepError(f"{url}: {_mb(int(length))} is over the {_mb(max_bytes)} download cap")
            kind = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if kind.startswith("text/") or kind in ("application/json", "application/xhtml+xml"):
                raise PixgrepError(f"{url}: not an image (the server sent {kind})")
            body = bytearray()
            while True:
                if time.monotonic() > deadline:
                    raise PixgrepError(f"{url}: timed out after {timeout:g} s")
                chunk = response.read(_CHUNK)
                if not chunk:
                    return bytes(body)
                body += chunk
                if len(body) > max_bytes:
                    raise PixgrepError(f"{url}: more than the {_mb(max_bytes)} download cap")
    except urllib.error.HTTPError as exc:
        raise PixgrepError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise PixgrepError(f"{url}: timed out after {timeout:g} s") from None
        text = getattr(reason, "strerror", None) or str(reason)
        raise PixgrepError(f"{url}: cannot download: {text}") from None
    except TimeoutError:
        raise PixgrepError(f"{url}: timed out after {timeout:g} s") from None
    except (OSError, ValueError) as exc:  # a reset connection, a malformed URL
        raise PixgrepError(f"{url}: cannot download: {exc}") from None


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB" if size < 10 * 1024 * 1024 else f"{size // (1024 * 1024)} MB"
