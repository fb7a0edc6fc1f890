"""A tiny deterministic encoder for fast plumbing tests that do not need a real model.

Image vectors come from the pixels (so identical content gives identical vectors), text vectors
from a hash of the text. It counts how many images it encoded, to prove reuse.
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from pixgrep.models.base import Encoder


class FakeEncoder(Encoder):
    dim = 192
    logit_scale = 100.0
    image_size = (8, 8)

    def __init__(self, model_id: str = "fake"):
        self.model_id = model_id
        self.images_encoded = 0
        self.texts_encoded = 0

    def preprocess(self, image: Image.Image) -> np.ndarray:
        small = image.convert("RGB").resize((8, 8), Image.Resampling.BILINEAR)
        return (np.asarray(small, np.float32) / 255.0).transpose(2, 0, 1).copy()

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        self.images_encoded += len(pixels)
        flat = pixels.reshape(len(pixels), -1) - 0.5 + 1e-3
        return (flat / np.linalg.norm(flat, axis=1, keepdims=True)).astype(np.float32)

    def encode_texts(self, texts) -> np.ndarray:
        self.texts_encoded += len(texts)
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            row = np.random.default_rng(seed).standard_normal(self.dim)
            rows.append(row / np.linalg.norm(row))
        return np.asarray(rows, np.float32).reshape(len(texts), self.dim)
