"""The coarse layer of the ANN index: k-means lists over the base rows (an inverted file, IVF).

An HNSW walk is greedy: on libraries made of dense clusters (bursts, near-copies, many shots of one
scene) it can settle in a cluster next to the right one and return a top 10 that shares nothing
with the exact one (docs/ann.md). The coarse layer cannot miss that way: a query is scored against
every centroid exactly, the rows of the PROBE nearest lists (fewer of the longer lists above 1M
rows: ROW_BUDGET) are scored from their int8 codes (below), and their best rows join the walk's
candidates. Both are re-scored exactly, from the float16 matrix, by the caller.

Each list also keeps REPRESENTATIVES of its own rows, picked far from its centroid and from each
other: a list of about ten photos' copies has a centroid that none of them is near, so a query
matching one photo strongly can rank its list low (docs/ann.md, "The worst queries"). A query
probes the PROBE lists of the nearest centroids and the REP_LISTS best of the others by their
representatives.

One file, `<matrix>.coarse`, memory-mapped:
  magic (16 bytes) | header length (uint32 LE) | header (JSON: lists, dim, rows, sections) |
  sections, each 64-byte aligned: centroids float32 (lists, dim), starts int64 (lists + 1),
  order int32 (rows): base rows list by list, ascending within a list; reps float32
  (lists * REPRESENTATIVES, dim), absent in files written before it (then centroids alone);
  codes int8 (rows, dim): each row's vector scaled so that the largest component of a sample
  of rows maps to 127, rounded, in `order`'s order, so a list's rows are one contiguous run. A
  probe scores those runs (SIMD int8 dot products) instead of gathering its rows from all over
  the float16 matrix: at 10M rows the gather took 36 ms of a 42 ms probe (docs/ann.md). The int8
  scores pick a SHORTLIST that the caller re-scores exactly. Files written before the codes probe
  by gathering, as before.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

MAGIC = b"PIXGREP-COARSE\x00\x01"
ALIGN = 64
PROBE = 64  # lists scored per query: with int8 codes, 64 cost less than 32 did by gathering ...
MIN_PROBE = 8  # ... fewer for larger lists, down to this many ...
ROW_BUDGET = 131_072  # ... so that a query scores about this many rows (64 lists at 1M, 41 at 10M)
TRAIN_PER_LIST = 40  # k-means trains on this many sampled rows per list
SEED_PER_LIST = 16  # ... and draws its seeds from this many (k-means++ is sequential)
ITERATIONS = 8
CHUNK = 32_768  # rows converted to float32 and assigned per step (64 MB at 512-d)
REPRESENTATIVES = 4  # rows per list that rank it besides its centroid (+5% build CPU, 8 MB at 1M)
REP_LISTS = 4  # lists probed besides the PROBE nearest centroids: the best by their representatives
CODE_SAMPLE = 65_536  # rows whose largest component sets the codes' scale
SHORTLIST = 256  # rows picked by their codes' scores, at least, for the exact re-score

Progress = Callable[[int], None]


def list_count(rows: int) -> int:
    """About sqrt(rows) lists: ~1,000 rows each at 1M, ~3,200 at 10M."""
    return max(1, min(rows, max(8, int(round(math.sqrt(rows))))))


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norms, 1e-12)


def _assign(vectors: np.ndarray, centroids: np.ndarray, progress: Progress | None = None) -> np.ndarray:
    """The nearest centroid (largest inner product) of every row, chunk by chunk."""
    labels = np.empty(len(vectors), np.int32)
    for start in range(0, len(vectors), CHUNK):
        block = np.asarray(vectors[start : start + CHUNK], np.float32)
        labels[start : start + len(block)] = np.argmax(block @ centroids.T, axis=1)
        if progress is not None:
            progress(len(block))
    return labels


def _seeds(sample: np.ndarray, lists: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeds: each next one drawn with probability proportional to its distance from
    the nearest seed so far, so a small, tight cluster gets a list of its own instead of sharing
    (and diluting) the centroid of a big one."""
    seeds = np.empty((lists, sample.shape[1]), np.float32)
    seeds[0] = sample[rng.integers(len(sample))]
    distance = np.maximum(1.0 - sample @ seeds[0], 0.0)
    for i in range(1, lists):
        total = float(distance.sum())
        pick = rng.choice(len(sample), p=distance / total) if total > 0 else rng.integers(len(sample))
        seeds[i] = sample[pick]
        np.minimum(distance, np.maximum(1.0 - sample @ seeds[i], 0.0), out=distance)
    return seeds


def train(vectors: np.ndarray, lists: int, seed: int = 0) -> np.ndarray:
    """Spherical k-means centroids (float32, unit rows) of a sample of `vectors`."""
    rng = np.random.default_rng(seed)
    rows = len(vectors)
    sample_size = min(rows, TRAIN_PER_LIST * lists)
    picked = np.sort(rng.choice(rows, sample_size, replace=False))
    sample = _unit(np.asarray(vectors[picked], np.float32))
    centroids = _seeds(sample[: SEED_PER_LIST * lists], lists, rng)
    for _ in range(ITERATIONS):
        labels = _assign(sample, centroids)
        sums = np.zeros_like(centroids)
        np.add.at(sums, labels, sample)
        empty = np.flatnonzero(~sums.any(axis=1))
        sums[empty] = sample[rng.choice(sample_size, len(empty), replace=False)]  # re-seed
        centroids = _unit(sums).astype(np.float32)
    return centroids


def build(vectors: np.ndarray, path: Path, progress: Progress | None = None) -> None:
    """Train, assign every row and write the layer to `path` (the caller renames it into place)."""
    rows, dim = vectors.shape
    centroids = train(vectors, list_count(rows))
    labels = _assign(vectors, centroids, progress)
    order = np.argsort(labels, kind="stable").astype(np.int32)
    starts = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=len(centroids)))]).astype(np.int64)
    reps = _representatives(vectors, centroids, order, starts)
    arrays = {"centroids": centroids, "starts": starts, "order": order, "reps": reps}
    sizes = {name: array.nbytes for name, array in arrays.items()} | {"codes": rows * dim}
    sample = np.sort(np.random.default_rng(0).choice(rows, min(rows, CODE_SAMPLE), replace=False))
    scale = 127.0 / max(float(np.abs(np.asarray(vectors[sample], np.float32)).max()), 1e-12)
    header: dict = {"lists": len(centroids), "dim": dim, "rows": rows, "sections": {}}
    position = _aligned(len(MAGIC) + 4 + 1024)  # room for the JSON header
    for name, size in sizes.items():
        header["sections"][name] = [position, size]
        position = _aligned(position + size)
    text = json.dumps(header).encode()
    if len(MAGIC) + 4 + len(text) > header["sections"]["centroids"][0]:
        raise ValueError("coarse header too long")
    with open(path, "wb") as out:
        out.write(MAGIC + struct.pack("<I", len(text)) + text)
        for name, array in arrays.items():
            out.seek(header["sections"][name][0])
            out.write(np.ascontiguousarray(array).tobytes())
        out.seek(header["sections"]["codes"][0])
        for start in range(0, rows, CHUNK):  # list by list: one gather of the whole matrix, once
            out.write(_codes(vectors[order[start : start + CHUNK]], scale).tobytes())


def _codes(rows: np.ndarray, scale: float) -> np.ndarray:
    return np.clip(np.rint(np.asarray(rows, np.float32) * scale), -127, 127).astype(np.int8)


def _representatives(
    vectors: np.ndarray, centroids: np.ndarray, order: np.ndarray, starts: np.ndarray
) -> np.ndarray:
    """REPRESENTATIVES rows of each list, by farthest-point picking: the member least like the
    centroid, then the one least like the centroid and that one, and so on. A short list repeats
    its last pick (a list has at least one row once assigned; an empty one repeats its centroid)."""
    reps = np.repeat(centroids, REPRESENTATIVES, axis=0).astype(np.float32)
    for i in range(len(centroids)):
        members = np.asarray(order[starts[i] : starts[i + 1]])
        if len(members) == 0:
            continue
        rows = _unit(np.asarray(vectors[np.sort(members)], np.float32))
        nearest = rows @ centroids[i]  # each member's likeness to what already ranks the list
        for r in range(REPRESENTATIVES):
            pick = rows[int(np.argmin(nearest))]
            reps[i * REPRESENTATIVES + r] = pick
            np.maximum(nearest, rows @ pick, out=nearest)
    return reps


def _aligned(value: int) -> int:
    return (value + ALIGN - 1) // ALIGN * ALIGN


class CoarseLayer:
    """The lists of one base, memory-mapped, and the exact scoring of the nearest ones."""

    def __init__(
        self,
        centroids: np.ndarray,
        starts: np.ndarray,
        order: np.ndarray,
        reps: np.ndarray | None = None,
        codes: np.ndarray | None = None,
    ):
        self.centroids = centroids
        self.starts = starts
        self.order = order
        self.reps = reps  # (lists * REPRESENTATIVES, dim), or None (a file written before them)
        self.codes = codes  # (rows, dim) int8 in `order`'s order, or None (a file written before them)

    @property
    def default_probe(self) -> int:
        """PROBE lists, or fewer once lists are so long that they would score more than ROW_BUDGET
        rows: 64 lists up to about 2M rows, about 41 at 10M (13-15 ms per query with the codes;
        docs/ann.md). Fewer missed whole lists: at 1M, 32 left one caption of 300 with half its
        top 10 (its list ranked 33rd); at 10M, 21 left one with none (its list ranked 25th)."""
        mean_rows = len(self.order) / max(len(self.centroids), 1)
        return max(MIN_PROBE, min(PROBE, round(ROW_BUDGET / max(mean_rows, 1.0))))

    def probe(
        self, query: np.ndarray, vectors: np.ndarray, count: int, probe: int | None = None
    ) -> np.ndarray:
        """The rows of the `probe` (default: `default_probe`) nearest lists, and REP_LISTS more by
        representatives, that score best against `query`, best first: the best SHORTLIST (at least
        `count`) by their int8 codes, or the best `count` scored exactly from the float16 `vectors`
        for a file without codes. The caller re-scores them exactly either way."""
        probe = self.default_probe if probe is None else probe
        near = np.einsum("ij,j->i", self.centroids, query)
        probe = min(probe, len(near))
        lists = np.argpartition(-near, probe - 1)[:probe]
        extra = min(REP_LISTS, len(near) - probe)
        if self.reps is not None and extra > 0:  # and the lists best by their representatives
            best = np.einsum("ij,j->i", self.reps, query).reshape(len(near), -1).max(axis=1)
            best[lists] = -np.inf
            lists = np.concatenate([lists, np.argpartition(-best, extra - 1)[:extra]])
        spans = [(int(self.starts[i]), int(self.starts[i + 1])) for i in np.sort(lists)]
        if self.codes is not None:  # contiguous runs of codes; the caller re-scores the shortlist
            rows = np.concatenate([self.order[a:b] for a, b in spans]).astype(np.int64)
            coded = _codes(query, 127.0 / max(float(np.abs(query).max()), 1e-12))  # its own scale
            parts = [_dots(self.codes[a:b], coded) for a, b in spans if b > a]
            scores = np.concatenate(parts) if parts else np.zeros(0, np.float32)
            count = max(count, SHORTLIST)
        else:
            rows = np.sort(np.concatenate([self.order[a:b] for a, b in spans])).astype(np.int64)
            scores = _dots(vectors[rows], query) if len(rows) else np.zeros(0, np.float32)
        if len(rows) > count:
            best = np.argpartition(-scores, count - 1)[:count]
            rows, scores = rows[best], scores[best]
        return rows[np.argsort(-scores)]


def _dots(block: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Inner products of float16 rows with a query, or of int8 codes with an int8 query: numkong's
    SIMD kernels (usearch's own dependency) read both directly, ~10x faster than numpy's
    conversion to float32 (int8: 1.3 ms for 50,000 x 512, exact integer sums)."""
    try:
        import numkong

        like = np.asarray(query, block.dtype if block.dtype == np.int8 else np.float16).reshape(1, -1)
        return np.asarray(numkong.cdist(block, like, metric="dot"), np.float32).reshape(-1)
    except (ImportError, TypeError, ValueError):
        return np.einsum("ij,j->i", np.asarray(block, np.float32), np.asarray(query, np.float32))


def open_layer(path: Path, rows: int, dim: int | None = None) -> CoarseLayer | None:
    """The layer at `path` if it is one of `rows` rows (of `dim` dimensions, when given); None
    otherwise."""
    try:
        raw = np.asarray(np.memmap(path, np.uint8, mode="r"))  # plain views: cheap slices
        if bytes(raw[: len(MAGIC)]) != MAGIC:
            return None
        (length,) = struct.unpack("<I", bytes(raw[len(MAGIC) : len(MAGIC) + 4]))
        header = json.loads(bytes(raw[len(MAGIC) + 4 : len(MAGIC) + 4 + length]))
        if header["rows"] != rows or (dim is not None and header["dim"] != dim):
            return None
        lists, dim = int(header["lists"]), int(header["dim"])

        def section(name: str, dtype: str) -> np.ndarray:
            start, size = header["sections"][name]
            if start + size > len(raw):
                raise ValueError(f"{name} runs past the end of the file")
            return raw[start : start + size].view(dtype)

        centroids = section("centroids", "<f4").reshape(lists, dim)
        starts, order = section("starts", "<i8"), section("order", "<i4")
        reps = section("reps", "<f4").reshape(-1, dim) if "reps" in header["sections"] else None
        codes = section("codes", "i1").reshape(-1, dim) if "codes" in header["sections"] else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if len(starts) != lists + 1 or len(order) != rows or starts[-1] != rows:
        return None
    if reps is not None and (len(reps) == 0 or len(reps) % lists):
        return None
    if codes is not None and len(codes) != rows:
        return None
    return CoarseLayer(centroids, starts, order, reps, codes)
