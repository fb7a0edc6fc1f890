"""Small JPEG previews made with Pillow, kept in a little in-memory LRU cache."""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable

from PIL import Image

from pixgrep.images.decode import open_image

THUMB_SIZES = (128, 256, 512, 1024)  # a fixed set, so the cache cannot be filled with odd sizes


class ThumbnailCache:
    def __init__(self, max_bytes: int = 48 * 1024 * 1024):
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, path: str, content_hash: str, size: int, load: Callable[[], bytes] | None = None) -> bytes:
        """The preview of the file at `path`, or of the bytes `load` returns (an object-store image),
        called only when the cache does not hold it."""
        # Keyed by content, so a changed file never gets a stale preview.
        key = (content_hash, size)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        data = make_thumbnail(load() if load is not None else path, size)
        with self._lock:
            if key not in self._items:
                self._items[key] = data
                self._bytes += len(data)
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old)
        return data


def make_thumbnail(source: str | bytes, size: int) -> bytes:
    image = open_image(source, draft_size=size)
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    return to_jpeg(image)


def to_jpeg(image: Image.Image, quality: int = 85) -> bytes:
    if image.mode in ("RGBA", "LA", "P", "PA"):  # flatten transparency onto white, not black
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        image = flat
    elif image.mode != "RGB":
        image = image.convert("RGB")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()
