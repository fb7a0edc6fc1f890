"""Open any image Pillow (plus pillow-heif, plus rawpy for RAW) can read, safely, as one PIL image.

Used by indexing, by image terms in queries, and by uploads to the server, so all three accept the
same files and fail with the same one-line reasons.

What every decode does: the first frame only (animated GIF/APNG/WebP, multi-page TIFF, PSD's
composite), the EXIF orientation applied, 16-bit and float greyscale scaled to 8 bits, CIE Lab
converted to RGB, and a pixel cap checked from the header before any pixel is decoded. Nothing here
uses `warnings.catch_warnings`, which is not thread-safe: the decode pool of the indexer calls it
from several threads at once.

Memory on huge images (docs/reliability.md has the measured peaks): a picture over BIG_PIXELS is
reduced while decoding where the format allows (JPEG draft) and by an integer box reduction right
after decoding otherwise, so only one full-size copy ever exists; every decode holds its pixels
against one process-wide budget (DECODE_BUDGET, MAX_PIXELS in flight), so two huge files never
decode at once; and after a big decode the C allocator is asked to give the freed memory back.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import io
import os
import re
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image

from pixgrep.errors import PixgrepError
from pixgrep.images.formats import RAW_EXTENSIONS

MAX_PIXELS = 256_000_000  # a cap against decompression bombs (headers that claim gigapixels)
# Above this, a decode is reduced to the side its caller needs (draft_size, else BIG_IMAGE_SIDE):
# nobody searches a 40-megapixel scan at full size, and the model sees 224 px of it anyway.
# Smaller pictures decode exactly as before, so vectors of ordinary photos do not change.
BIG_PIXELS = 40_000_000
BIG_IMAGE_SIDE = 2048  # the shorter side kept when the caller asked for no particular size

RAW_HINT = "camera RAW file: install the raw extra to read it (pip install 'pixgrep[raw]')"

_registered = False


class ImageDecodeError(PixgrepError):
    """The file is not an image pixgrep can read; the message says why, in a few words."""


class ImageTooLarge(ImageDecodeError):
    """The header claims more than MAX_PIXELS: refused before any pixel is decoded (a server
    answers 413, as for its own, lower pixel cap)."""


@dataclass(frozen=True)
class ImageInfo:
    """What the catalog stores about a picture, read from its header (no pixels decoded)."""

    width: int  # as displayed, i.e. after the EXIF orientation (a portrait stays portrait)
    height: int
    format: str | None  # Pillow's format name: "JPEG", "PNG", "HEIF", "RAW", ...
    taken_at: str | None  # ISO 8601 capture time from EXIF


def register_plugins() -> None:
    """Teach Pillow the formats pixgrep reads (HEIC/HEIF, AVIF) and its pixel cap; idempotent.
    Call before Image.open, or before listing Pillow's formats (catalog.scan does)."""
    global _registered
    if _registered:
        return
    try:  # HEIC/HEIF (and AVIF on older Pillow) from phones
        import pillow_heif

        pillow_heif.register_heif_opener()
        has_avif = "AVIF" in Image.registered_extensions().values()
        if hasattr(pillow_heif, "register_avif_opener") and not has_avif:
            pillow_heif.register_avif_opener()
    except ImportError:
        pass
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    # pixgrep enforces the cap itself (one clear error, below); Pillow's own warning between 1x and
    # 2x the cap would only add a second, noisier line.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    # Pillow's UserWarnings (odd EXIF, palette transparency) say nothing a user can act on; a file
    # that cannot be read fails with its own one-line reason. A process-wide filter, not
    # catch_warnings, which is not thread-safe (module docstring).
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL(\.|$)")
    _silence_libtiff()
    _registered = True


def _libtiff_paths() -> list[str]:
    """Where the libtiff that Pillow uses is: the one mapped into this process (Linux), else the
    copy bundled in Pillow's wheel (macOS), else the system's."""
    paths: list[str] = []
    with contextlib.suppress(OSError):
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths = [line.split(None, 5)[-1].strip() for line in maps if "libtiff" in line]
    if not paths:
        import glob

        pil_dir = os.path.dirname(Image.__file__)
        paths = glob.glob(os.path.join(pil_dir, ".dylibs", "libtiff*"))
    if not paths and (name := ctypes.util.find_library("tiff")):
        paths = [name]
    return list(dict.fromkeys(paths))


def _silence_libtiff() -> None:
    """libtiff prints its warnings and errors straight to stderr ("Using code not yet in table.",
    "Unknown field with tag ...") from C, past Python's logging; Pillow turns the errors into
    exceptions anyway, which a decode reports as one line. So both of its handlers are unset."""
    for path in _libtiff_paths():
        try:
            libtiff = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("TIFFSetWarningHandler", "TIFFSetErrorHandler"):
            setter = getattr(libtiff, name, None)
            if setter is not None:
                setter.restype = ctypes.c_void_p
                setter.argtypes = [ctypes.c_void_p]
                setter(None)


class PixelBudget:
    """A counting semaphore measured in pixels: decodes wait until their pixels fit, so the pixels
    being decoded at once, in all threads of the process, stay under `total`. A decode bigger
    than `total` waits for all others to finish and then runs alone."""

    def __init__(self, total: int):
        self.total = total
        self.free = total
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        need = min(max(int(pixels), 0), self.total)
        with self._changed:
            self._changed.wait_for(lambda: self.free >= need)
            self.free -= need
        try:
            yield
        finally:
            with self._changed:
                self.free += need
                self._changed.notify_all()


DECODE_BUDGET = PixelBudget(MAX_PIXELS)


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


_LIBC = _libc()
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
if _LIBC is not None and hasattr(_LIBC, "mallopt"):
    # Pillow keeps pixels in 16 MB blocks; glibc would move its mmap threshold up to that size
    # after the first big free and then serve such blocks from heaps it keeps. A fixed 4 MB
    # threshold keeps every block mmap'ed, so freeing a decoded picture returns its memory.
    _LIBC.mallopt(_M_MMAP_THRESHOLD, 4 * 1024 * 1024)


def release_memory() -> None:
    """Hand freed heap memory back to the system (glibc): a long-lived server would otherwise keep
    the peak of its biggest decode for good."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _reduction(size: tuple[int, int], side: int) -> int:
    """The integer box factor that keeps the shorter side at least `side` (1: none)."""
    return max(1, min(size) // max(1, side))


def raw_supported() -> bool:
    """True when the optional rawpy (LibRaw) is installed, so RAW files can be decoded."""
    try:
        import rawpy  # noqa: F401
    except ImportError:
        return False
    return True


def is_raw(path: str | os.PathLike) -> bool:
    return os.path.splitext(os.fspath(path))[1].lower() in RAW_EXTENSIONS


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and float greyscale would clip to white in convert('RGB'); scale them to 8 bits."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        import numpy as np

        data = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or data.max() > 255 else 255.0
        return Image.fromarray(np.clip(data / top * 255.0 + 0.5, 0, 255).astype("uint8"), "L")
    if image.mode == "LAB":  # Pillow's convert('RGB') would copy L, a, b into R, G, B as they are
        from PIL import ImageCms

        lab_to_rgb = ImageCms.buildTransform(
            ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"
        )
        converted = ImageCms.applyTransform(image, lab_to_rgb)
        return converted if converted is not None else image
    return image


# EXIF orientation -> the transpose that shows the picture upright (as ImageOps.exif_transpose).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _header_exif(image: Image.Image) -> Image.Exif:
    """The EXIF found before the pixels. Pillow's PNG getexif decodes the whole image when no
    eXIf chunk came before the image data (to look after it): for a 250 Mpx PNG that is 1 GB,
    outside any budget, just to read a date. The base method reads only the chunks seen so far;
    the PNG spec puts eXIf before the image data."""
    if image.format == "PNG":
        return Image.Image.getexif(image)
    return image.getexif()


def _orientation(image: Image.Image) -> int:
    try:
        return int(_header_exif(image).get(0x0112) or 1)
    except Exception:  # unreadable EXIF: show the picture as stored
        return 1


def _capture_time(image: Image.Image) -> str | None:
    from pixgrep.images.exif import capture_time

    try:
        return capture_time(_header_exif(image))
    except Exception:  # EXIF parsers raise anything on corrupt blocks; the date is optional
        return None


def _header_info(image: Image.Image) -> ImageInfo:
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageTooLarge(f"{width}x{height} pixels is over the {MAX_PIXELS:,} pixel cap")
    if _orientation(image) in (5, 6, 7, 8):  # stored rotated by 90 degrees
        width, height = height, width
    return ImageInfo(width, height, image.format, _capture_time(image))


def _decode_error(exc: BaseException) -> ImageDecodeError:
    bomb = isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning))
    return (ImageTooLarge if bomb else ImageDecodeError)(_decode_reason(exc))


def _decode_reason(exc: BaseException) -> str:
    if isinstance(exc, Image.UnidentifiedImageError):
        return "not an image pixgrep can read"
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        claimed = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = f"{int(claimed.group(1)):,} pixels" if claimed else "too many pixels"
        return f"decompression bomb: the header claims {pixels}, over the {MAX_PIXELS:,} pixel cap"
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, MemoryError):
        return "cannot decode: out of memory"
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"cannot decode: {reason}"


def _open(
    source: str | os.PathLike | BinaryIO, draft_size: int | None, want_pixels: bool
) -> tuple[Image.Image | None, ImageInfo]:
    register_plugins()
    try:
        with Image.open(source) as image:
            info = _header_info(image)
            if not want_pixels:
                return None, info
            orientation = _orientation(image)
            big = image.size[0] * image.size[1] > BIG_PIXELS
            side = draft_size or (BIG_IMAGE_SIDE if big else None)
            if side and image.format in ("JPEG", "MPO"):
                # libjpeg decodes at 1/2, 1/4 or 1/8 scale, the shorter side still >= side.
                image.draft("RGB", (side, side))
            with DECODE_BUDGET.hold(image.size[0] * image.size[1]):
                out = _decoded(image, orientation, side if big else None, detach=big)
                if big:  # before the next big decode may start
                    image.close()
                    release_memory()
            return out, info
    except ImageDecodeError:
        raise
    except Exception as exc:  # Pillow's plugins raise nearly anything on bad input
        raise _decode_error(exc) from None


def _decoded(image: Image.Image, orientation: int, reduce_to: int | None, *, detach: bool) -> Image.Image:
    """Load the pixels; box-reduce a big picture to `reduce_to` (shorter side); orient; 8 bits.
    detach: the caller closes `image` next, so the result must not share its pixels. Otherwise it
    may be `image` itself: leaving the `with` only closes the file, and the loaded pixels stay (a
    copy of a 1000x750 draft cost 2.8 ms per photo, a tenth of its decode and preprocess)."""
    image.load()
    out = image
    factor = _reduction(image.size, reduce_to) if reduce_to else 1
    if factor > 1:
        try:
            out = image.reduce(factor)  # the one full-size copy is dropped with `image`
        except (ValueError, NotImplementedError):  # a mode reduce does not take (16-bit, Lab)
            out = _to_8bit(image)
            out = out.reduce(factor) if out is not image else out
    method = _TRANSPOSE.get(orientation)
    if method is not None:
        out = out.transpose(method)
    if out is image and detach:
        out = image.copy()
    return _to_8bit(out)


def _open_raw(
    path: str | os.PathLike, draft_size: int | None, want_pixels: bool
) -> tuple[Image.Image | None, ImageInfo]:
    """RAW through LibRaw: the embedded JPEG preview when it is big enough, else a half-size develop."""
    try:
        import rawpy
    except ImportError:
        raise ImageDecodeError(RAW_HINT) from None
    from pixgrep.images.exif import image_capture_time

    taken_at = None
    try:  # most RAW formats are TIFF containers: Pillow reads their EXIF dates without the pixels
        with Image.open(path) as header:
            taken_at = image_capture_time(header)
    except Exception:
        pass
    try:
        with rawpy.imread(os.fspath(path)) as raw:
            flip = raw.sizes.flip  # LibRaw's orientation: 0 none, 3 180 degrees, 5 / 6 90 degrees
            width, height = raw.sizes.width, raw.sizes.height
            if flip in (5, 6):
                width, height = height, width
            if width * height > MAX_PIXELS:
                raise ImageTooLarge(f"{width}x{height} pixels is over the {MAX_PIXELS:,} pixel cap")
            info = ImageInfo(width, height, "RAW", taken_at)
            if not want_pixels:
                return None, info
            image = None
            try:
                thumb = raw.extract_thumb()
                if thumb.format == rawpy.ThumbFormat.JPEG:
                    with Image.open(io.BytesIO(thumb.data)) as preview:
                        if min(preview.size) >= (draft_size or min(width, height)):
                            if draft_size:
                                preview.draft("RGB", (draft_size, draft_size))
                            preview.load()
                            image = preview.convert("RGB")
                            rotate = {
                                3: Image.Transpose.ROTATE_180,
                                5: Image.Transpose.ROTATE_90,
                                6: Image.Transpose.ROTATE_270,
                            }.get(flip)
                            if rotate is not None:
                                image = image.transpose(rotate)
            except Exception:  # no usable preview: develop the sensor data instead
                image = None
            if image is None:  # LibRaw applies the orientation itself here
                image = Image.fromarray(raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8))
            return image, info
    except ImageDecodeError:
        raise
    except Exception as exc:
        raise _decode_error(exc) from None


def open_image(source: str | os.PathLike | bytes | BinaryIO, *, draft_size: int | None = None) -> Image.Image:
    """Decode the first frame, apply the EXIF orientation, and return a loaded PIL image.

    draft_size: for JPEGs, let libjpeg decode at a reduced scale whose shorter side is still at
    least this many pixels (much faster for big photos, and the model downsizes anyway).
    Raises ImageDecodeError with a short reason for anything that is not a readable image.
    """
    return decode_file(source, draft_size=draft_size)[0]


def decode_file(
    source: str | os.PathLike | bytes | BinaryIO, *, draft_size: int | None = None
) -> tuple[Image.Image, ImageInfo]:
    """open_image plus the header facts the catalog stores (full-size dimensions, format, date)."""
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    if isinstance(source, (str, os.PathLike)) and is_raw(source):
        image, info = _open_raw(source, draft_size, True)
    else:
        image, info = _open(source, draft_size, True)
    assert image is not None
    return image, info


def read_image_info(source: str | os.PathLike | BinaryIO) -> ImageInfo:
    """The header facts only (no pixels decoded): for files whose vector is reused."""
    if isinstance(source, (str, os.PathLike)) and is_raw(source):
        return _open_raw(source, None, False)[1]
    return _open(source, None, False)[1]
