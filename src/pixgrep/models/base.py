"""The interface every encoder offers. The catalog, search, eval and server layers use only this."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
from PIL import Image


def unit_rows(x: np.ndarray) -> np.ndarray:
    """float32 vectors along the last axis scaled to length 1 (zero vectors stay zero): what every
    encoder returns, and what eval re-applies after averaging or float16 storage."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class Encoder(ABC):
    """Turns images and texts into L2-normalised float32 vectors of one shared space.

    `preprocess` is thread-safe and cheap to call from a decode pool; `encode_pixels` runs the
    image tower on a batch of preprocessed arrays. Towers load lazily: encoding only texts never
    loads the image tower, and the other way round.
    """

    model_id: str  # stable key for stored vectors, e.g. "ViT-B-32__laion2b_s34b_b79k"
    dim: int  # embedding size
    logit_scale: float  # exp(learned temperature); 100.0 for OpenAI/open_clip CLIP models
    logit_bias: float | None = None  # SigLIP family: probabilities are sigmoid(scale * cos + bias)
    image_size: tuple[int, int]  # (height, width) of what `preprocess` returns: the image tower's input

    @abstractmethod
    def preprocess(self, image: Image.Image) -> np.ndarray:
        """One PIL image (any mode) -> float32 array (3, H, W), exactly as the reference does it."""

    def preprocess_for_index(self, image: Image.Image) -> np.ndarray:
        """`preprocess` where the indexer may trade exactness for speed (its JPEG draft decode
        already does); encoders without a faster way keep the default, the exact one."""
        return self.preprocess(image)

    @abstractmethod
    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """float32 (n, 3, H, W) -> float32 (n, dim), rows of unit length."""

    @abstractmethod
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """n strings -> float32 (n, dim), rows of unit length."""

    @property
    def languages(self) -> str:
        """What text queries may be written in: "en", or "multilingual ..." (models.languages)."""
        return "en"

    @property
    def multilingual_tokens(self) -> bool:
        """True when the text tower takes a source-language token (NLLB): `in_language` matters."""
        return False

    @property
    def query_language(self) -> str | None:
        """The language token text queries get when none is asked (a FLORES-200 code); None when
        the text tower takes none."""
        return None

    def language_choices(self) -> list[dict[str, object]]:
        """The languages `in_language` may be given, for a language picker: [] when the text tower
        takes no language token (see OnnxEncoder.language_choices)."""
        return []

    def in_language(self, language: str | None) -> Encoder:
        """This encoder with its text queries in `language` (any code models.languages knows; None:
        its own default), sharing its towers. An encoder whose text tower takes no language token
        reads every language alike (or only English): it is its own answer."""
        return self

    def prepare_texts(self) -> None:
        """Start loading what encode_texts needs, in the background (a hint; the default ignores it)."""
        return None

    def cut_texts(self, texts: Sequence[str]) -> list[str | None]:
        """For each text, what the text tower would cut off (past its context length), or None.

        Encoders without a length limit keep the default: nothing is ever cut."""
        return [None] * len(texts)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), np.float32)
        return self.encode_pixels(np.stack([self.preprocess(im) for im in images]))
