"""One file on its way to the model: content hash, then decode and preprocess (or only the header
when its vector is already stored). The same step for the local thread pool (catalog/ingest.py)
and for the Ray actors (catalog/ray_ingest.py), so both store the same rows for the same file.

A file that cannot be indexed comes back as a `Skip` record, never as an exception: the run goes on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pixgrep.catalog.db import ImageRow
from pixgrep.catalog.scan import FileEntry
from pixgrep.images.decode import ImageDecodeError, ImageInfo, decode_file, read_image_info
from pixgrep.images.fingerprint import fingerprint

HEAD_BYTES = 1 << 20  # the content hash reads the first MiB ...
TAIL_BYTES = 1 << 10  # ... and the last KiB, plus the size
DRAFT_FACTOR = 2  # JPEG draft decodes at >= 2x the model's input side (docs/catalog.md: why 2)

__all__ = [
    "DRAFT_FACTOR",
    "FileJob",
    "Prepared",
    "Skip",
    "content_hash",
    "hash_bytes",
    "prepare_file",
    "read_and_hash",
]


def content_hash(path: str, size: int) -> str:
    """blake2b-128 of the size, the first MiB and the last KiB: cheap on any file size.

    Two files that differ only in the middle of a file above 1 MiB with the same size would share
    a hash (and a vector); edits in practice rewrite the header (EXIF) or the whole compressed
    stream, so the trade is worth the I/O it saves on big photos.
    """
    with open(path, "rb") as f:
        if size <= HEAD_BYTES + TAIL_BYTES:
            return _digest(size, f.read())
        head = f.read(HEAD_BYTES)
        f.seek(size - TAIL_BYTES)
        return _digest(size, head, f.read(TAIL_BYTES))


def hash_bytes(data: bytes, size: int) -> str:
    """content_hash of a file already read whole (an object-store read on a Ray actor)."""
    if size <= HEAD_BYTES + TAIL_BYTES:
        return _digest(size, data)
    return _digest(size, data[:HEAD_BYTES], data[size - TAIL_BYTES : size])


def _digest(size: int, *parts: bytes) -> str:
    digest = hashlib.blake2b(size.to_bytes(8, "little"), digest_size=16)
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


@dataclass(frozen=True)
class FileJob:
    """A file the diff found new, changed, or without a vector for this model."""

    entry: FileEntry
    content_hash: str | None  # known when only the vector is missing (another model)


@dataclass(frozen=True)
class Skip:
    """Why a file is not indexed. `recorded`: stored with its row, so the file is not tried again
    until it changes (it does not decode); False for a passing trouble (vanished, unreadable),
    tried again by the next run."""

    reason: str
    recorded: bool = True


@dataclass
class Prepared:
    """One file after `prepare_file`: `pixels` set when it must go through the model, `skip` set
    when it cannot be indexed; neither when its stored vector is reused."""

    entry: FileEntry
    content_hash: str | None
    info: ImageInfo | None = None
    pixels: np.ndarray | None = None
    skip: Skip | None = None
    fingerprint: bytes | None = None  # images/fingerprint.py: set with pixels

    @property
    def stored(self) -> bool:
        """Does this file get a catalog row (with its vector, or with its reason)?"""
        return self.skip is None or self.skip.recorded

    def row(self) -> ImageRow:
        e, i = self.entry, self.info
        return (
            e.path,
            e.size,
            e.mtime_ns,
            self.content_hash or "",
            i.width if i else None,
            i.height if i else None,
            i.format if i else None,
            i.taken_at if i else None,
            self.skip.reason if self.skip else None,
        )


def _never(_digest: str) -> bool:
    return False


def prepare_file(
    job: FileJob,
    preprocess: Callable[[Any], Any],
    draft_size: int,
    *,
    has_vector: Callable[[str], bool] = _never,
    read_whole: bool = False,
) -> Prepared:
    """Hash `job`'s file; when `has_vector(hash)` (moved, renamed, duplicated) read only its header,
    else decode it (JPEG draft at >= draft_size) and `preprocess` it for the model. Never raises.

    read_whole: read the file in one go (read_bytes: local paths and object-store URIs) and hash
    and decode those bytes; else hash the head and tail and decode from the path.
    """
    entry = job.entry
    hashed = read_and_hash(job, read_whole=read_whole)
    if isinstance(hashed, Skip):
        return Prepared(entry, job.content_hash, skip=hashed)
    digest, source = hashed
    try:
        if has_vector(digest):  # no decode, no model
            try:
                return Prepared(entry, digest, info=read_image_info(_readable(source)))
            except ImageDecodeError:
                return Prepared(entry, digest)  # decodable before (it has a vector): keep it
        image, info = decode_file(source, draft_size=draft_size)
        pixels = np.asarray(preprocess(image), dtype=np.float32)
        return Prepared(entry, digest, info=info, pixels=pixels, fingerprint=fingerprint(image))
    except ImageDecodeError as exc:
        return Prepared(entry, digest, skip=Skip(str(exc)))
    except Exception as exc:  # a preprocess that chokes on an odd mode must not stop the run
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Prepared(entry, digest, skip=Skip(f"cannot prepare for the model: {reason}"))


def read_and_hash(job: FileJob, *, read_whole: bool = False) -> tuple[str, str | bytes] | Skip:
    """(content hash, what to decode: the path, or the bytes when read whole), or the Skip of a
    file that cannot be read (not recorded: the next run tries again)."""
    entry = job.entry
    try:
        if read_whole:
            from pixgrep.images.storage import read_bytes

            data = read_bytes(entry.path)
            return job.content_hash or hash_bytes(data, entry.size), data
        return job.content_hash or content_hash(entry.path, entry.size), entry.path
    except FileNotFoundError:
        return Skip("vanished while indexing", recorded=False)
    except OSError as exc:
        return Skip(f"cannot read: {exc.strerror or exc}", recorded=False)


def _readable(source: str | bytes):
    import io

    return io.BytesIO(source) if isinstance(source, bytes) else source
