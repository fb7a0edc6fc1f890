"""Text inside pictures (OCR) with RapidOCR: PP-OCRv4 detection and recognition ONNX models that
ship inside the `rapidocr-onnxruntime` wheel, so reading text needs no download (`[ocr]` extra).

Cost is kept down three ways: the picture fed to the detector is capped at OCR_MAX_SIDE pixels
(never enlarged); the detector first looks at the picture at half size, and one in which it finds
no text box costs nothing more (most photos); and the angle classifier is off (it only flips
upside-down lines; a sign tilted a few degrees is read without it). RapidOCR and OpenCV are
imported on first use.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pixgrep.errors import PixgrepError

if TYPE_CHECKING:
    from PIL import Image

OCR_MAX_SIDE = 960  # longest side fed to the detector and cropped for the recogniser
# The first look at half size (see TextReader._may_hold_text): pixel and box score thresholds
# well below RapidOCR's (0.3, 0.5), so faint or small text still sends the picture to the full pass.
FIRST_LOOK_THRESHOLDS = (0.1, 0.2)
FIRST_LOOK_MIN_SIDE = 32
MIN_CONFIDENCE = 0.5  # recognised lines below this are dropped (RapidOCR's own default)
INSTALL_HINT = "reading text in images needs the ocr extra: pip install 'pixgrep[ocr]'"


@dataclass(frozen=True)
class TextLine:
    text: str
    confidence: float
    box: tuple[tuple[int, int], ...]  # four corners, in the file's pixels


@dataclass
class PageText:
    """What OCR found in one picture. `text_free`: the detector found no text box at all."""

    lines: list[TextLine] = field(default_factory=list)
    text_free: bool = False
    seconds: float = 0.0

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)


def ocr_available() -> bool:
    try:
        import rapidocr_onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def require_ocr() -> None:
    """PixgrepError with the install line when the extra is missing (before any work starts)."""
    if not ocr_available():
        raise PixgrepError(INSTALL_HINT)


class TextReader:
    """One RapidOCR engine, loaded on the first picture; threads share it one at a time (an index
    run gives each of its threads a reader of its own, threads=1: catalog/ocr_pass.py)."""

    def __init__(self, threads: int | None = None):
        self._threads = threads
        self._engine: Any = None
        self._lock = threading.Lock()
        self._boxes = 0  # text boxes the detector found in the last picture
        self._detector: Any = None  # RapidOCR's own text detector (for the first look)

    def _load(self) -> Any:
        if self._engine is None:
            require_ocr()
            import logging

            from rapidocr_onnxruntime import RapidOCR

            options: dict[str, Any] = {
                "det_limit_type": "max",  # shrink a big picture, never enlarge a small one
                "det_limit_side_len": OCR_MAX_SIDE,
                "max_side_len": OCR_MAX_SIDE,
                "use_cls": False,
                "text_score": MIN_CONFIDENCE,
            }
            if self._threads:
                options["intra_op_num_threads"] = self._threads
            engine = RapidOCR(**options)
            detect = engine.text_det

            def counting_detect(pixels: Any) -> Any:  # RapidOCR answers None for both "no box"
                boxes, seconds = detect(pixels)  # and "boxes, but nothing legible": tell them apart
                self._boxes = 0 if boxes is None else len(boxes)
                return boxes, seconds

            engine.text_det = counting_detect
            self._detector = detect
            self._engine = engine
            logging.getLogger("RapidOCR").setLevel(logging.ERROR)  # its info lines on every load
        return self._engine

    def _may_hold_text(self, picture: Image.Image) -> bool:
        """The first look: the detector at half size with low thresholds finds any box. A quarter
        of the pixels, so a photo without text costs about half of one full detection; it still
        finds 10-pixel text (5 pixels at half size), and the full pass below decides."""
        import numpy as np

        if min(picture.size) < 2 * FIRST_LOOK_MIN_SIDE:
            return True
        half = np.ascontiguousarray(np.asarray(picture.reduce(2))[:, :, ::-1])
        post = self._detector.postprocess_op
        thresholds = post.thresh, post.box_thresh
        post.thresh, post.box_thresh = FIRST_LOOK_THRESHOLDS
        try:
            boxes, _ = self._detector(half)
        finally:
            post.thresh, post.box_thresh = thresholds
        return boxes is not None and len(boxes) > 0

    def read(self, image: Image.Image, full_size: tuple[int, int] | None = None) -> PageText:
        """The text lines of a decoded picture; boxes in `full_size` pixels (the file's own size,
        when `image` was decoded smaller), else in the image's. Raises whatever the engine raises
        on odd input: the caller turns that into one warning and stores the picture without text."""
        import numpy as np

        started = time.perf_counter()
        picture = image.convert("RGB")
        if max(picture.size) > OCR_MAX_SIDE:
            picture = picture.copy()
            picture.thumbnail((OCR_MAX_SIDE, OCR_MAX_SIDE))
        width, height = full_size or image.size
        scale_x, scale_y = width / picture.width, height / picture.height
        pixels = np.ascontiguousarray(np.asarray(picture)[:, :, ::-1])  # OpenCV's BGR
        with self._lock:
            engine = self._load()
            if not self._may_hold_text(picture):
                return PageText([], text_free=True, seconds=time.perf_counter() - started)
            self._boxes = 0
            found, _ = engine(pixels)
            boxes = self._boxes
        lines = []
        for box, text, confidence in found or []:
            text = " ".join(str(text).split())
            if text and float(confidence) >= MIN_CONFIDENCE:
                corners = tuple((round(x * scale_x), round(y * scale_y)) for x, y in box)
                lines.append(TextLine(text, round(float(confidence), 4), corners))
        # No box from the detector: the cheap, text-free case (the recogniser never ran).
        return PageText(lines, text_free=boxes == 0, seconds=time.perf_counter() - started)
