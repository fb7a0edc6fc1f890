"""The approximate nearest-neighbour index over the base rows of a search matrix: a usearch HNSW
graph and a coarse k-means layer in front of it (search/ann_coarse.py).

Per matrix: `<matrix>.usearch` (the graph), `<matrix>.coarse` (the lists), and
`<matrix>.usearch.json` naming the matrix base they were built from (its random `base_id`), the
layout's FORMAT and both files' sizes; an index of another format is rebuilt, never read. Keys are
base row numbers. A query's candidates are the walk's and the best rows of the nearest lists
(which a walk stuck in a neighbouring cluster cannot miss). The graph is
opened as a memory-mapped view (`Index.restore(view=True)`): a cold query touches only the graph
nodes and vectors its walk visits, never the whole file; it is opened on the first walk, not
before, since usearch's view reads every node's header (1.96 s at 10M rows). A process that asks
one question (`pixgrep search -n`) answers it from the lists alone (`lists_only`) and never opens
the graph: the lists found every exact top 10 the graph and lists together found at 500k-10M rows
(docs/ann.md). Vectors are stored as int8 (usearch's
scalar quantisation); candidates are re-scored exactly from the float16 matrix, so the index only
has to find them, not rank them (benchmarks/bench_ann.py, docs/ann.md).

Rows appended after the build and tombstones live in the matrix (search/matrix.py), not here: the
index is immutable once written and rebuilt only with the matrix base (compaction).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pixgrep.errors import was_interrupted
from pixgrep.search import ann_coarse

ANN_MIN_ROWS = 50_000  # below this, exact scoring of the whole matrix takes a few milliseconds
CONNECTIVITY = 16
EXPANSION_ADD = 128
EXPANSION_SEARCH = 512  # with 64+ candidates re-scored: recall@10 0.978 at 1M, 0.95 at ef 256 (docs/ann.md)
DTYPE = "i8"
FORMAT = 2  # 1: the graph alone; 2: graph + coarse layer
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
    except ImportError as exc:
        if was_interrupted(exc):  # Ctrl-C during usearch's import, not a missing usearch
            raise KeyboardInterrupt from None
        return False
    return True


def index_path(matrix_path: Path) -> Path:
    return matrix_path.with_name(matrix_path.name + ".usearch")


def coarse_path(matrix_path: Path) -> Path:
    return matrix_path.with_name(matrix_path.name + ".coarse")


def _meta_path(matrix_path: Path) -> Path:
    return matrix_path.with_name(matrix_path.name + ".usearch.json")


class AnnIndex:
    """A read-only, memory-mapped HNSW index whose keys are matrix base rows, and its coarse lists."""

    def __init__(
        self,
        path: Path,
        rows: int,
        coarse: ann_coarse.CoarseLayer | None = None,
        vectors: np.ndarray | None = None,
        graph=None,
    ):
        self.path = path
        self.rows = rows
        self.coarse = coarse
        self.vectors = vectors  # the float16 base rows (a coarse file without codes scores these)
        self._graph = graph  # usearch's view, opened on first use
        self._graph_failed = False

    def graph_ready(self) -> bool:
        """Open the graph now if it is not open; False when its file cannot be read as one."""
        if self._graph is None and not self._graph_failed:
            try:
                graph = _usearch_index_class().restore(str(self.path), view=True)
            except (OSError, ValueError, KeyError, TypeError, ImportError, RuntimeError):
                graph = None
            if graph is None or len(graph) != self.rows:
                self._graph_failed = True
            else:
                self._graph = graph
        return self._graph is not None

    @property
    def _index(self):
        if not self.graph_ready():
            raise RuntimeError(f"the ANN graph {self.path} cannot be opened")
        return self._graph

    def search(self, query: np.ndarray, count: int) -> np.ndarray:
        """At least `count` base rows near `query` (approximate, unordered, distinct): the `count`
        best of the coarse layer's nearest lists and, unless inside `lists_only`, the graph walk's."""
        query = np.asarray(query, np.float32)
        probed = None
        if self.coarse is not None and self.vectors is not None:
            probed = self.coarse.probe(query, self.vectors, count)
            if not _walk.get() or not self.graph_ready():
                return probed
        # expansion_search is a per-call knob of the shared handle; one value for all callers,
        # raised for a big `count` so the walk keeps at least that many candidates.
        self._index.expansion_search = max(EXPANSION_SEARCH, count)
        matches = self._index.search(query, min(count, self.rows), threads=1)
        walked = np.asarray(matches.keys, np.int64)
        return walked if probed is None else np.union1d(walked, probed)

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
        graph = f"usearch HNSW ({DTYPE}, M={CONNECTIVITY}, ef={EXPANSION_SEARCH})"
        if self.coarse is None:
            return f"{graph} over {self.rows} rows"
        lists = f"{len(self.coarse.centroids)} k-means lists (probe {self.coarse.default_probe})"
        if not _walk.get():
            return f"{lists} over {self.rows} rows (one question: the graph is not opened)"
        return f"{graph} + {lists} over {self.rows} rows"


def on_disk(matrix_path: Path, base_id: str, rows: int) -> bool:
    """Whether the files of this base's index are there, of this FORMAT and of the sizes written,
    read without opening the graph (usearch's view reads every node's header: the whole file)."""
    try:
        meta = json.loads(_meta_path(matrix_path).read_text())
        if meta.get("format") != FORMAT or meta.get("base_id") != base_id or meta.get("rows") != rows:
            return False
        return (
            index_path(matrix_path).stat().st_size == meta["bytes"]
            and coarse_path(matrix_path).stat().st_size == meta["coarse_bytes"]
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def open_index(
    matrix_path: Path, base_id: str, rows: int, vectors: np.ndarray | None = None
) -> AnnIndex | None:
    """The index built for this matrix base; None when missing, stale, of another FORMAT or with
    an unreadable coarse layer. `vectors` (the base's float16 rows) lets the coarse layer score
    lists. The graph is opened on first use (`AnnIndex.graph_ready`)."""
    if not available() or not on_disk(matrix_path, base_id, rows):
        return None
    dim = None if vectors is None else int(vectors.shape[1])
    coarse = ann_coarse.open_layer(coarse_path(matrix_path), rows, dim)
    if coarse is None:
        return None
    index = AnnIndex(index_path(matrix_path), rows, coarse, vectors)
    if vectors is None and not index.graph_ready():  # nothing but the graph to search with
        return None
    return index


_walk: contextvars.ContextVar[bool] = contextvars.ContextVar("pixgrep_ann_walk", default=True)


@contextlib.contextmanager
def lists_only() -> Iterator[None]:
    """Searches inside answer from the coarse lists alone and never open the graph: for a process
    that asks one question, where opening the graph would cost more than the search (docs/ann.md)."""
    token = _walk.set(False)
    try:
        yield
    finally:
        _walk.reset(token)


def prepare(
    db, model: str, *, progress: bool = False, large_only: bool = False, open_graph: bool = False
) -> None:
    """Bring the search matrix of `model` and, for a large catalog, its index up to date now,
    with a progress bar while an index is built. large_only: skip catalogs too small for an index
    (the end of `pixgrep index` / `import`: the first query then never stalls on a build).
    open_graph: open the index's graph too (a server's warm-up: 1.4-1.9 s at 10M rows)."""
    from pixgrep.search.matrix_store import load_matrix

    if large_only:
        if not available():
            return
        from pixgrep.catalog.searchable import highest_image_id

        highest = highest_image_id(db)
        if highest is None or highest < ANN_MIN_ROWS:
            return
    with build_progress(progress):
        matrix = load_matrix(db, model, lazy_index=True)
    index = matrix.base.ann_index() if open_graph else None
    if index is not None:
        index.graph_ready()


_progress: contextvars.ContextVar[bool] = contextvars.ContextVar("pixgrep_ann_progress", default=False)


@contextlib.contextmanager
def build_progress(show: bool = True) -> Iterator[None]:
    """Index builds started inside show a progress bar on stderr (when it is a terminal)."""
    token = _progress.set(show)
    try:
        yield
    finally:
        _progress.reset(token)


def build_index(matrix_path: Path, base_id: str, vectors: np.ndarray) -> AnnIndex | None:
    """Build and save the index of `vectors` (the float16 base rows); None if it cannot be written.

    Both files are written to temporary names and renamed; the small JSON naming their base is
    written last, so a crash in between leaves an index that `open_index` refuses as stale.
    """
    from pixgrep.progress import bar

    rows, dim = vectors.shape
    meter = bar(2 * rows, "building the search index", "rows") if _progress.get() else None
    try:
        index = _usearch_index_class()(
            ndim=dim, metric="ip", dtype=DTYPE, connectivity=CONNECTIVITY, expansion_add=EXPANSION_ADD
        )
        for start in range(0, rows, BUILD_CHUNK):
            end = min(start + BUILD_CHUNK, rows)
            block = np.asarray(vectors[start:end], np.float32)
            try:
                index.add(np.arange(start, end, dtype=np.uint64), block, threads=os.cpu_count() or 1)
            except RuntimeError as exc:  # usearch's answer to a Ctrl-C during the build
                if was_interrupted(exc):
                    raise KeyboardInterrupt from None
                raise
            if meter is not None:
                meter.update(end - start)
        path = index_path(matrix_path)
        try:
            _write_file(path, matrix_path, index.save)
            _write_file(
                coarse_path(matrix_path),
                matrix_path,
                lambda temp: ann_coarse.build(vectors, Path(temp), meter.update if meter else None),
            )
            meta = {
                "format": FORMAT,
                "base_id": base_id,
                "rows": rows,
                "bytes": path.stat().st_size,
                "coarse_bytes": coarse_path(matrix_path).stat().st_size,
                "dtype": DTYPE,
            }
            _write_file(
                _meta_path(matrix_path), matrix_path, lambda temp: Path(temp).write_text(json.dumps(meta))
            )
        except OSError:
            return None
    finally:
        if meter is not None:
            meter.close()
    return open_index(matrix_path, base_id, rows, vectors)


def _write_file(path: Path, matrix_path: Path, write) -> None:
    """`write(temporary name)`, then rename it to `path`, readable by whoever may read the matrix."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(temp)
        os.chmod(temp, _mode_of(matrix_path))
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


def _mode_of(matrix_path: Path) -> int:
    try:
        return matrix_path.stat().st_mode & 0o666
    except OSError:
        return 0o644
