"""The search matrix's files: the base file format, its journal, and where they live.

Per (catalog, model), in `<catalog>.vectors/`:

    <slug>.matrix           the base: immutable once written, rows sorted by path
      magic (16 bytes) | header length (uint32 LE) | header (JSON) | sections, each 64-byte aligned:
        vectors       float16 (rows, dim)   one unit vector per image
        ids           int64 (rows,)         images.id
        taken         float64 (rows,)       capture time as wall-clock seconds, NaN when unknown
        stamps        float64 (rows,)       images.indexed_at of the row the vector was read from
        path_offsets  int64 (rows + 1,)     where each path starts in path_bytes
        path_bytes    uint8                 UTF-8 paths (surrogateescape), concatenated
        id_order      int64 (rows,)         base rows in id order (id -> row by binary search)
        absent        int64                 catalog ids that are not searchable (errors, other models)
    <slug>.matrix.delta     an append-only journal of changes since the base: a head naming the
                            base, then checksummed batches of appended rows and tombstoned ids
    <slug>.matrix.usearch   the ANN index over the base rows (search/ann.py), when it pays

Crash safety: the base is written to a temporary name and renamed (a reader sees the old file or
the new one); journal batches carry their length and a CRC, and a reader stops at the first torn
or foreign batch (the next writer truncates it away); the journal names its base, so a journal
left from an older base is ignored. Nothing here reads the catalog (search/matrix_store.py does).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixgrep.search import ann as ann_module

MAGIC = b"PIXGREP-MATRIX\x00\x02"
FORMAT_VERSION = 2
DELTA_MAGIC = b"PIXGREP-DELTA\x00\x01"
BATCH_TAG = b"BAT1"
BATCH_HEAD = struct.Struct("<4sqdIIIIQI")  # tag, generation, mark, kills, adds, absent +/-, bytes, crc
ALIGN = 64

SECTIONS = ("vectors", "ids", "taken", "stamps", "path_offsets", "path_bytes", "id_order", "absent")


def sidecar_path(catalog_path: str | os.PathLike, model_id: str) -> Path:
    """Where the matrix for this catalog and model lives (a folder beside the catalog file)."""
    catalog_path = Path(catalog_path)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("._")[:80] or "model"
    digest = hashlib.sha256(model_id.encode()).hexdigest()[:8]  # two ids with one slug stay apart
    return catalog_path.with_name(catalog_path.name + ".vectors") / f"{slug}-{digest}.matrix"


def delta_path(matrix_path: Path) -> Path:
    return matrix_path.with_name(matrix_path.name + ".delta")


class Base:
    """The immutable base file's arrays (memory-mapped), plus per-process caches of it."""

    def __init__(self, header: dict, buffer: np.ndarray, source: Path | None):
        self.header = header
        self.base_id: str = header["base_id"]
        self.generation = int(header["generation"])
        self.mark = float(header["mark"])
        self.model: str = header["model"]
        self.rows = int(header["rows"])
        self.dim = int(header["dim"])
        self.source = source
        sections = header["sections"]

        def section(name: str, dtype: str) -> np.ndarray:
            start, length = sections[name]
            return buffer[start : start + length].view(dtype)

        self.vectors = section("vectors", "<f2").reshape(self.rows, self.dim)
        self.ids = section("ids", "<i8")
        self.taken = section("taken", "<f8")
        self.stamps = section("stamps", "<f8")
        self.offsets = section("path_offsets", "<i8")
        self.path_bytes = section("path_bytes", "u1")
        self.id_order = section("id_order", "<i8")
        self.absent = section("absent", "<i8")
        self.f32: np.ndarray | None = None
        self.ann: ann_module.AnnIndex | None = None
        self.ann_checked = False

    def path_bytes_at(self, row: int) -> bytes:
        return self.path_bytes[self.offsets[row] : self.offsets[row + 1]].tobytes()

    def row_of_id(self, image_id: int) -> int | None:
        position = int(np.searchsorted(self.ids, image_id, sorter=self.id_order))
        if position < self.rows:
            row = int(self.id_order[position])
            if int(self.ids[row]) == image_id:
                return row
        return None

    def ann_index(self) -> ann_module.AnnIndex | None:
        if not self.ann_checked:
            self.ann_checked = True
            if self.source is not None and self.rows >= ann_module.ANN_MIN_ROWS:
                self.ann = ann_module.open_index(self.source, self.base_id, self.rows, self.vectors)
        return self.ann


@dataclass
class Batch:
    """One journal batch: the changes of one catch-up."""

    generation: int
    mark: float
    kills: np.ndarray  # ids whose current row dies
    add_ids: np.ndarray
    add_taken: np.ndarray
    add_stamps: np.ndarray
    add_vectors: np.ndarray  # float16 (n, dim)
    add_paths: list[bytes]
    absent_add: np.ndarray
    absent_del: np.ndarray

    def encode(self) -> bytes:
        lengths = np.asarray([len(p) for p in self.add_paths], "<i8")
        parts = [
            np.asarray(self.kills, "<i8").tobytes(),
            np.asarray(self.add_ids, "<i8").tobytes(),
            np.asarray(self.add_taken, "<f8").tobytes(),
            np.asarray(self.add_stamps, "<f8").tobytes(),
            lengths.tobytes(),
            np.asarray(self.add_vectors, "<f2").tobytes(),
            b"".join(self.add_paths),
            np.asarray(self.absent_add, "<i8").tobytes(),
            np.asarray(self.absent_del, "<i8").tobytes(),
        ]
        payload = b"".join(parts)
        head = BATCH_HEAD.pack(
            BATCH_TAG,
            self.generation,
            self.mark,
            len(self.kills),
            len(self.add_ids),
            len(self.absent_add),
            len(self.absent_del),
            len(payload),
            zlib.crc32(payload),
        )
        return head + payload

    @staticmethod
    def decode(data: memoryview, at: int, dim: int) -> tuple[Batch, int] | None:
        """The batch at `at` and where the next one starts; None when torn, foreign or damaged."""
        if at + BATCH_HEAD.size > len(data):
            return None
        tag, generation, mark, kills, adds, plus, minus, size, crc = BATCH_HEAD.unpack_from(data, at)
        start = at + BATCH_HEAD.size
        if tag != BATCH_TAG or start + size > len(data):
            return None
        payload = data[start : start + size]
        if zlib.crc32(payload) != crc:
            return None
        position = 0

        def take(dtype: str, count: int) -> np.ndarray:
            nonlocal position
            width = np.dtype(dtype).itemsize * count
            array = np.frombuffer(payload[position : position + width], dtype).copy()
            position += width
            return array

        kill_ids = take("<i8", kills)
        add_ids = take("<i8", adds)
        taken = take("<f8", adds)
        stamps = take("<f8", adds)
        lengths = take("<i8", adds)
        vectors = take("<f2", adds * dim).reshape(adds, dim)
        blob = bytes(payload[position : position + int(lengths.sum())])
        position += len(blob)
        cuts = np.concatenate([[0], np.cumsum(lengths)]).astype(int)
        paths = [blob[cuts[i] : cuts[i + 1]] for i in range(adds)]
        batch = Batch(
            generation,
            mark,
            kill_ids,
            add_ids,
            taken,
            stamps,
            vectors,
            paths,
            take("<i8", plus),
            take("<i8", minus),
        )
        return batch, start + size


# -- the base file ---------------------------------------------------------------------------


def aligned(value: int) -> int:
    return (value + ALIGN - 1) // ALIGN * ALIGN


def serialise(header: dict, arrays: dict[str, Section]) -> tuple[bytes, list[Section]]:
    """Header bytes (magic included, padded) and the ordered section arrays to write after it."""
    sizes = [arrays[name].nbytes for name in SECTIONS]
    header = dict(header, version=FORMAT_VERSION, rows=int(arrays["ids"].shape[0]), sections={})
    # The header's own length moves the offsets, so lay out with a generous fixed header space.
    for _ in range(2):
        text = json.dumps(header).encode()
        position = aligned(len(MAGIC) + 4 + len(text) + 256)
        for name, size in zip(SECTIONS, sizes, strict=True):
            header["sections"][name] = [position, size]
            position = aligned(position + size)
    text = json.dumps(header).encode()
    start = len(MAGIC) + 4 + len(text)
    first = header["sections"][SECTIONS[0]][0]
    if start > first:  # cannot happen with 256 bytes of slack; guard against silent overlap
        raise RuntimeError("matrix header outgrew its space")
    head = MAGIC + struct.pack("<I", len(text)) + text + b"\0" * (first - start)
    return head, [arrays[name] for name in SECTIONS]


class Filled:
    """A section written in place by `fill(array)` rather than held in memory whole: the vectors
    of a base build (10 GB at 10M rows) go from the catalog straight into the file."""

    def __init__(self, dtype: str, shape: tuple[int, ...], fill: Callable[[np.ndarray], None]):
        self.dtype, self.shape, self.fill = np.dtype(dtype), shape, fill
        self.nbytes = int(np.prod(shape)) * self.dtype.itemsize

    def in_memory(self) -> np.ndarray:
        array = np.empty(self.shape, self.dtype)
        self.fill(array)
        return array

    def write(self, out) -> None:
        """Fill the next nbytes of the open file `out` (mapped, not buffered) and move past them."""
        at = out.tell()
        if self.nbytes == 0:
            self.fill(np.empty(self.shape, self.dtype))
            return
        out.flush()
        out.truncate(at + self.nbytes)
        region = np.memmap(out, self.dtype, "r+", offset=at, shape=self.shape)
        self.fill(region)
        region.flush()
        del region
        out.seek(at + self.nbytes)


Section = np.ndarray | Filled


def write_atomically(target: Path, head: bytes, arrays: list[Section], mode: int | None = None) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        if mode is not None:  # mkstemp makes 0600; whoever may read the catalog may read this
            os.fchmod(fd, mode)
        with os.fdopen(fd, "w+b") as out:
            out.write(head)
            for array in arrays:
                out.write(b"\0" * (aligned(out.tell()) - out.tell()))
                if isinstance(array, Filled):
                    array.write(out)
                else:
                    out.write(array.tobytes())
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


def in_memory(head: bytes, arrays: list[Section]) -> np.ndarray:
    """The bytes `write_atomically` would write, as one in-memory buffer (a read-only folder)."""
    blob = bytearray(head)
    for array in arrays:
        blob += b"\0" * (aligned(len(blob)) - len(blob))
        blob += (array.in_memory() if isinstance(array, Filled) else array).tobytes()
    return np.frombuffer(bytes(blob), "u1")


def read_header(buffer: np.ndarray) -> dict | None:
    if buffer.shape[0] < len(MAGIC) + 4 or buffer[: len(MAGIC)].tobytes() != MAGIC:
        return None
    (length,) = struct.unpack("<I", buffer[len(MAGIC) : len(MAGIC) + 4].tobytes())
    try:
        header = json.loads(buffer[len(MAGIC) + 4 : len(MAGIC) + 4 + length].tobytes())
        end = max(start + size for start, size in header["sections"].values())
        if set(header["sections"]) != set(SECTIONS) or not header.get("base_id"):
            return None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if header.get("version") != FORMAT_VERSION or end > buffer.shape[0]:
        return None
    return header


def open_base(path: Path) -> Base | None:
    try:
        buffer = np.memmap(path, dtype="u1", mode="r")
    except (OSError, ValueError):
        return None
    header = read_header(buffer)
    return Base(header, buffer, path) if header else None


# -- the journal -----------------------------------------------------------------------------


def journal_head(base_id: str) -> bytes:
    return DELTA_MAGIC + bytes.fromhex(base_id)


def read_journal(path: Path, base_id: str, dim: int) -> tuple[list[Batch], int]:
    """The journal's valid batches for base `base_id`, and the byte offset after the last one
    (0: no journal for this base: missing, torn head, or left from an older base)."""
    try:
        data = path.read_bytes()
    except OSError:
        return [], 0
    head = journal_head(base_id)
    if not data.startswith(head):
        return [], 0
    view = memoryview(data)
    at = len(head)
    batches: list[Batch] = []
    while True:
        decoded = Batch.decode(view, at, dim)
        if decoded is None:
            return batches, at
        batch, at = decoded
        batches.append(batch)


class journal_lock:
    """An exclusive lock on the journal while one process appends (others wait, then re-read)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.handle = open(self.path, "ab")
        try:
            import fcntl

            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX)
        except ImportError:  # Windows: one writer at a time is the user's to keep
            pass
        return self.handle

    def __exit__(self, *exc: object) -> None:
        self.handle.close()  # closing releases the lock
