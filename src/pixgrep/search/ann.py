"""The approximate nearest-neighbour index over the base rows of a search matrix (usearch HNSW).

One file per matrix, `<matrix>.usearch`, plus `<matrix>.usearch.json` naming the matrix base it
was built from (its random `base_id`) and the file's size. Keys are base row numbers. The index is
opened as a memory-mapped view (`Index.restore(view=True)`): a cold query touches only the graph
nodes and vectors its walk visits, never the whole file. Vectors are stored as int8 (usearch's
scalar quantisation); candidates are re-scored exactly from the float16 matrix, so the index only
has to find them, not rank them (benchmarks/bench_ann.py, docs/ann.md).

Rows appended after the build and tombstones live in the matrix (search/matrix.py), not here: the
index is immutable once written and rebuilt only with the matrix base (compaction).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

ANN_MIN_ROWS = 50_000  # below this, exact scoring of the whole matrix takes a few milliseconds
CONNECTIVITY = 16
EXPANSION_ADD = 128
EXPANSION_SEARCH = 512  # with 64+ candidates re-scored: recall@10 0.978 at 1M, 0.95 at ef 256 (docs/ann.md)
DTYPE = "i8"
BUILD_CHUNK = 65_536
PAIR_CHUNK = 1 << 20  # pairs per pairwise_distance call (16 MB of keys)


def _usearch_index_class():
    """usearch's Index class. onnxruntime is imported first: loading onnxruntime's library after
    usearch's native module crashes the process (a segfault, usearch 2.26 + onnxruntime 1.32 on
    Linux), and any process may encode a text after it has searched."""
    import onnxruntime  # noqa: F401  (a core dependency: always importable)
    from usearch.index import Index

    return Index


def available() -> bool:
    """usearch is installed and $PIXGREP_ANN is not "0" (which keeps every search exact)."""
    from pixgrep.settings import switch

    if not switch("PIXGREP_ANN", True):
        return False
    try:
        _usearch_index_class()
    except ImportError:
        return False
    return True


def index_path(matrix_path: Path) -> Path:
    return matrix_path.with_name(matrix_path.name + ".usearch")


def _meta_path(matrix_path: Path) -> Path:
    return matrix_path.with_name(matrix_path.name + ".usearch.json")


class AnnIndex:
    """A read-only, memory-mapped HNSW index whose keys are matrix base rows."""

    def __init__(self, index, rows: int, path: Path):
        self._index = index
        self.rows = rows
        self.path = path

    def search(self, query: np.ndarray, count: int) -> np.ndarray:
        """Up to `count` base rows near `query`, nearest first (approximate)."""
        # expansion_search is a per-call knob of the shared handle; one value for all callers,
        # raised for a big `count` so the walk keeps at least that many candidates.
        self._index.expansion_search = max(EXPANSION_SEARCH, count)
        matches = self._index.search(np.asarray(query, np.float32), min(count, self.rows), threads=1)
        return np.asarray(matches.keys, np.int64)

    def neighbours(self, queries: np.ndarray, count: int, expansion: int) -> np.ndarray:
        """(len(queries), count) keys, nearest first: approximate neighbours of many queries at
        once, on every core (a batch job such as `pixgrep duplicates`, not a search request);
        -1 where fewer were found. (The int8 index's distances are not cosines: re-score.)"""
        self._index.expansion_search = expansion
        matches = self._index.search(np.asarray(queries, np.float32), count, threads=os.cpu_count() or 1)
        keys = np.asarray(matches.keys, np.int64).reshape(len(queries), -1)
        counts = getattr(matches, "counts", None)  # one query: usearch answers Matches, not a batch
        found = np.asarray(counts if counts is not None else [len(matches.keys)]).reshape(-1)
        keys[np.arange(keys.shape[1])[None, :] >= found[:, None]] = -1
        return keys

    def links(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Every base-layer link of the graph as (low, high) row pairs, or None when the file's
        layout is not the one search/ann_graph.py reads (then use `neighbours`)."""
        from pixgrep.search.ann_graph import base_layer_edges

        return base_layer_edges(self.path, self.rows)

    def int8_distances(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """The index's own distance of each (left[i], right[i]) row pair, from its int8 vectors: a
        decreasing, nearly affine function of the cosine (not a cosine: calibrate, then re-score)."""
        out = np.empty(len(left), np.float32)
        for start in range(0, len(left), PAIR_CHUNK):
            end = start + PAIR_CHUNK
            out[start:end] = self._index.pairwise_distance(
                np.asarray(left[start:end], np.uint64), np.asarray(right[start:end], np.uint64)
            )
        return out

    def describe(self) -> str:
        return f"usearch HNSW ({DTYPE}, M={CONNECTIVITY}, ef={EXPANSION_SEARCH}) over {self.rows} rows"


def open_index(matrix_path: Path, base_id: str, rows: int) -> AnnIndex | None:
    """The index built for this matrix base, memory-mapped; None when missing, stale or unreadable."""
    path = index_path(matrix_path)
    if not available():
        return None
    try:
        meta = json.loads(_meta_path(matrix_path).read_text())
        if meta.get("base_id") != base_id or meta.get("rows") != rows or path.stat().st_size != meta["bytes"]:
            return None
        index = _usearch_index_class().restore(str(path), view=True)
    except (OSError, ValueError, KeyError, TypeError, ImportError, RuntimeError):
        return None
    if index is None or len(index) != rows:
        return None
    return AnnIndex(index, rows, path)


def build_index(matrix_path: Path, base_id: str, vectors: np.ndarray) -> AnnIndex | None:
    """Build and save the index of `vectors` (the float16 base rows); None if it cannot be written.

    The index file is written to a temporary name and renamed; the small JSON naming its base is
    written last, so a crash in between leaves an index that `open_index` refuses as stale.
    """
    rows, dim = vectors.shape
    index = _usearch_index_class()(
        ndim=dim, metric="ip", dtype=DTYPE, connectivity=CONNECTIVITY, expansion_add=EXPANSION_ADD
    )
    for start in range(0, rows, BUILD_CHUNK):
        end = min(start + BUILD_CHUNK, rows)
        block = np.asarray(vectors[start:end], np.float32)
        index.add(np.arange(start, end, dtype=np.uint64), block, threads=os.cpu_count() or 1)
    path = index_path(matrix_path)
    try:
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            index.save(temp)
            os.chmod(temp, _mode_of(matrix_path))  # readable by whoever may read the matrix
            os.replace(temp, path)
        except BaseException:
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise
        meta = {"base_id": base_id, "rows": rows, "bytes": path.stat().st_size, "dtype": DTYPE}
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".json.tmp")
        with os.fdopen(fd, "w") as out:
            json.dump(meta, out)
        os.chmod(temp, _mode_of(matrix_path))
        os.replace(temp, _meta_path(matrix_path))
    except OSError:
        return None
    return open_index(matrix_path, base_id, rows)


def _mode_of(matrix_path: Path) -> int:
    try:
        return matrix_path.stat().st_mode & 0o666
    except OSError:
        return 0o644
