"""Tone-invariant search (`--ignore-tone`) and deliberate tone (`--tone WORDS`).

Words such as "messy", "elegant" or "sad" move a CLIP text vector a long way although they say
little about what is in the picture, and the tone of the picture sought is often unknown. The tone
subspace is learnt from the model itself: for each word of a tone lexicon (tone_words.txt, package
data) and each of a few neutral scene descriptions, the text vector of the scene with the tone word
minus the vector of the plain scene is one sample of "what tone does"; the top singular vectors
of those differences span the subspace. `--ignore-tone` projects the query onto its orthogonal
complement (and normalises), so the query keeps what it says about content. Scoring with a
projected query needs no change to image vectors: q' . x = q' . x' when q' is orthogonal to the
subspace, and the per-image norm of x' would only reorder images by how much tone they carry.

`--tone WORDS` adds each word's mean difference vector to the query, the average shift that word
causes in a scene description, so a known tone is asked for on purpose (after the projection when
both are given). The basis and the per-word directions are cached per model in the pixgrep cache.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from pixgrep.errors import PixgrepError
from pixgrep.models.base import Encoder

__all__ = ["RANK", "ToneSpace", "apply_tone", "load_lexicon", "strip_tone_items", "tone_space"]

RANK = 1  # subspace dimensions, chosen on Flickr8k dev captions with pixgrep-mini (docs/quality.md)
FORMAT = 1

# Neutral scenes; each tone word is tried as an adjective and appended, as people write it.
SCENES = (
    "room",
    "kitchen",
    "street",
    "house",
    "park",
    "beach",
    "dog",
    "man",
    "woman",
    "group of people",
)
FORMS = ("a photo of a {scene}", "a photo of a {tone} {scene}", "a photo of a {scene}, {tone}")

_lock = threading.Lock()
_memory: dict[str, ToneSpace] = {}


def load_lexicon() -> list[str]:
    """The shipped tone words, in file order."""
    text = resources.files("pixgrep.search").joinpath("tone_words.txt").read_text(encoding="utf-8")
    return _words(text)


# Words that may join tone words in a list item of their own ("sad and ugly", "very messy").
_JOINERS = frozenset(
    {"and", "or", "but", "very", "so", "quite", "rather", "really", "too", "somewhat", "slightly"}
)
_ITEM_SEPARATOR = re.compile(r"\s*[,;]\s*")


@functools.lru_cache(maxsize=1)
def _lexicon_set() -> frozenset[str]:
    return frozenset(load_lexicon())


def strip_tone_items(text: str) -> str:
    """`text` without its list items that hold only tone words: "a kitchen, messy, dingy" -> "a kitchen".

    An item is a comma- or semicolon-separated piece; it is dropped when each of its words is a
    lexicon word or a joiner (and, or, very, ...). The first item is always kept, and so is a text
    with nothing dropped (returned unchanged), so a tone-neutral query is encoded as written. Tone
    words inside a phrase ("a messy kitchen") are left to the projection (ToneSpace.project).
    """
    lexicon = _lexicon_set()
    items = _ITEM_SEPARATOR.split(text.strip())
    kept = [items[0]]
    for item in items[1:]:
        words = re.findall(r"[\w'-]+", item.lower().rstrip(" .!"))
        if not (
            words and all(w in lexicon or w in _JOINERS for w in words) and any(w in lexicon for w in words)
        ):
            kept.append(item)
    if len(kept) == len(items):
        return text
    return ", ".join(kept).rstrip(" ,;")


def _words(text: str) -> list[str]:
    words = []
    for line in text.splitlines():
        word = line.split("#", 1)[0].strip().lower()
        if word and word not in words:
            words.append(word)
    return words


def parse_tone_words(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """'messy, dingy' or ['messy', 'dingy'] -> ('messy', 'dingy'); PixgrepError when empty."""
    items = [value] if isinstance(value, str) else list(value)
    words = tuple(dict.fromkeys(w.strip().lower() for item in items for w in re.split(r"[,;]", item)))
    words = tuple(w for w in words if w)
    if not words:
        raise PixgrepError("--tone needs one or more words, e.g. --tone 'cozy, bright'")
    if any(len(w) > 40 for w in words):
        raise PixgrepError("--tone: each tone word must be at most 40 characters")
    return words


@dataclass(frozen=True)
class ToneSpace:
    basis: np.ndarray  # (rank, dim) orthonormal rows spanning the tone subspace
    directions: dict[str, np.ndarray]  # tone word -> its mean shift of a scene description

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """Rows (or one vector) with their tone component removed, renormalised to unit length."""
        vectors = np.asarray(vectors, np.float32)
        single = vectors.ndim == 1
        rows = np.atleast_2d(vectors)
        rows = rows - (rows @ self.basis.T) @ self.basis
        rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        return rows[0] if single else rows


def _differences(encoder: Encoder, words: list[str]) -> dict[str, np.ndarray]:
    """Per word: the (scenes x tone forms, dim) differences 'scene with tone - plain scene'."""
    plain = [FORMS[0].format(scene=scene) for scene in SCENES]
    toned = [form.format(scene=scene, tone=word) for word in words for scene in SCENES for form in FORMS[1:]]
    vectors = np.asarray(encoder.encode_texts(plain + toned), np.float32)
    neutral, rest = vectors[: len(SCENES)], vectors[len(SCENES) :]
    per_word = len(SCENES) * (len(FORMS) - 1)
    out = {}
    for i, word in enumerate(words):
        block = rest[i * per_word : (i + 1) * per_word].reshape(len(SCENES), len(FORMS) - 1, -1)
        out[word] = (block - neutral[:, None, :]).reshape(per_word, -1)
    return out


def build_tone_space(encoder: Encoder, words: list[str], rank: int = RANK) -> ToneSpace:
    """The subspace of the top `rank` singular vectors of all words' differences (no cache)."""
    differences = _differences(encoder, words)
    stacked = np.concatenate(list(differences.values()))
    _, _, vt = np.linalg.svd(stacked.astype(np.float64), full_matrices=False)
    basis = vt[: min(rank, vt.shape[0])].astype(np.float32)
    directions = {word: d.mean(axis=0) for word, d in differences.items()}
    return ToneSpace(basis, directions)


def _cache_file(encoder: Encoder, words: list[str], rank: int) -> Path:
    from pixgrep.models.hub import cache_dir

    key = json.dumps([FORMAT, encoder.model_id, words, SCENES, FORMS, rank]).encode()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", encoder.model_id).strip("._")[:60] or "model"
    return cache_dir() / "tone" / f"{slug}-{hashlib.sha256(key).hexdigest()[:16]}.npz"


def tone_space(encoder: Encoder, rank: int = RANK) -> ToneSpace:
    """The model's tone subspace for the shipped lexicon: from memory, the cache, or built (once)."""
    words = load_lexicon()
    encoder = encoder.in_language("eng_Latn")  # the lexicon and its templates are English (NLLB's token)
    path = _cache_file(encoder, words, rank)
    with _lock:
        cached = _memory.get(str(path))
        if cached is not None:
            return cached
        space = _read(path, words)
        if space is None:
            space = build_tone_space(encoder, words, rank)
            _write(path, space)
        _memory[str(path)] = space
        return space


def _read(path: Path, words: list[str]) -> ToneSpace | None:
    try:
        with np.load(path) as data:
            basis = np.asarray(data["basis"], np.float32)
            directions = np.asarray(data["directions"], np.float32)
    except (OSError, KeyError, ValueError):
        return None  # missing or damaged: rebuilt
    if directions.shape[0] != len(words):
        return None
    return ToneSpace(basis, dict(zip(words, directions, strict=True)))


def _write(path: Path, space: ToneSpace) -> None:
    """Best effort (a read-only cache only costs a rebuild next time); atomic rename."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as out:
            np.savez(out, basis=space.basis, directions=np.stack(list(space.directions.values())))
        os.replace(temp, path)
    except OSError:
        pass


def tone_directions(encoder: Encoder, words: tuple[str, ...]) -> np.ndarray:
    """(len(words), dim) mean shifts for `words`; words outside the lexicon are measured now."""
    space = tone_space(encoder)
    missing = [w for w in words if w not in space.directions]
    extra = {w: d.mean(axis=0) for w, d in _differences(encoder, missing).items()} if missing else {}
    return np.stack([space.directions[w] if w in space.directions else extra[w] for w in words])


def apply_tone(
    encoder: Encoder, vectors: np.ndarray, ignore_tone: bool = False, tone: tuple[str, ...] = ()
) -> np.ndarray:
    """Query vector(s) with the tone removed (ignore_tone) and/or the given tone words added."""
    vectors = np.asarray(vectors, np.float32)
    if ignore_tone:
        vectors = tone_space(encoder).project(vectors)
    if tone:
        vectors = vectors + tone_directions(encoder, tone).sum(axis=0)
        norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
    return vectors.astype(np.float32)
