"""Open any image Pillow (plus pillow-heif) can read, safely, as one PIL image ready to preprocess.

Used by indexing, by image terms in queries, and by uploads to the server, so all three accept the
same files and fail with the same one-line reasons.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import BinaryIO

from PIL import Image, ImageOps

from pixgrep.errors import PixgrepError

MAX_PIXELS = 256_000_000  # a cap against decompression bombs (headers that claim gigapixels)

_registered = False


class ImageDecodeError(PixgrepError):
    """The file is not an image pixgrep can read; the message says why, in a few words."""


def _register_plugins() -> None:
    global _registered
    if _registered:
        return
    try:  # HEIC/HEIF (and AVIF on older Pillow) from phones
        import pillow_heif

        pillow_heif.register_heif_opener()
        if hasattr(pillow_heif, "register_avif_opener") and "AVIF" not in Image.registered_extensions().values():
            pillow_heif.register_avif_opener()
    except ImportError:
        pass
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    _registered = True


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and float greyscale would clip to white in convert('RGB'); scale them to 8 bits."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        import numpy as np

        data = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or data.max() > 255 else 255.0
        return Image.fromarray(np.clip(data / top * 255.0 + 0.5, 0, 255).astype("uint8"), "L")
    return image


def open_image(
    source: str | os.PathLike | bytes | BinaryIO, *, draft_size: int | None = None
) -> Image.Image:
    """Decode the first frame, apply the EXIF orientation, and return a loaded PIL image.

    draft_size: for JPEGs, let libjpeg decode at a reduced scale whose shorter side is still at
    least this many pixels (much faster for big photos, and the model downsizes anyway).
    Raises ImageDecodeError with a short reason for anything that is not a readable image.
    """
    _register_plugins()
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source)
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageDecodeError(f"{width}x{height} pixels is over the {MAX_PIXELS:,} pixel cap")
            if getattr(image, "n_frames", 1) > 1 and image.tell() != 0:
                image.seek(0)
            if draft_size and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))
            image.load()
            image = _to_8bit(image)
            try:
                image = ImageOps.exif_transpose(image)
            except Exception:  # a broken EXIF block must not lose an otherwise good picture
                pass
            return image
    except ImageDecodeError:
        raise
    except Image.UnidentifiedImageError:
        raise ImageDecodeError("not an image pixgrep can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"decompression bomb: {exc}".split(". ")[0]) from None
    except FileNotFoundError:
        raise ImageDecodeError("no such file") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageDecodeError(f"cannot decode: {reason}") from None

