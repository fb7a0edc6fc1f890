"""Embeddings in and out as Parquet: the bridge between a catalog and other tools or clusters.

Export writes one row per (image, model) with the columns in EXPORT_COLUMNS. Import reads Parquet
files (pixgrep's own export, or any table with a path and a vector column) and clip-retrieval's
inference output (`img_emb/img_emb_N.npy` + `metadata/metadata_N.parquet`, rows matched by order).

Rows without a content hash get a synthetic key, SYNTHETIC_PREFIX + blake2b(path), with size 0
and mtime -1: a later local index of that path never matches the stored (size, mtime), so it hashes
the real file and replaces the row (and drops the synthetic vector), never keeps two rows for one
file. A caption column (CAPTION_COLUMNS) is kept per row and searched as words (catalog/captions.py);
a re-import of an input with captions replaces them. Import commits every batch with its progress
in `meta`, so an interrupted import resumes where it stopped.
"""

from __future__ import annotations

import glob
import hashlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pixgrep.catalog import words
from pixgrep.catalog.db import SYNTHETIC_PREFIX, CatalogDB, ImageRow, blob_to_vector
from pixgrep.catalog.imported import delete_meta, import_batch, iter_exportable, meta_value
from pixgrep.errors import PixgrepError

if TYPE_CHECKING:
    import pyarrow as pa

# Export's columns, in order: (name, Arrow type, its value in a row of imported.iter_exportable).
# The vector is written apart (a fixed-size list); every other column but the path is one an
# import takes back as it is (_OPTIONAL).
_EXPORTED: tuple[tuple[str, str, Callable[[tuple], Any]], ...] = (
    ("path", "string", lambda r: _as_text(r[0])),  # readable text; the exact bytes in path_bytes
    ("content_hash", "string", itemgetter(3)),
    ("model", "string", itemgetter(8)),
    ("vector", "", itemgetter(9)),  # the blob, written as a fixed-size list of float32
    ("width", "int32", itemgetter(4)),
    ("height", "int32", itemgetter(5)),
    ("taken_at", "string", itemgetter(7)),
    ("size", "int64", itemgetter(1)),
    ("mtime_ns", "int64", itemgetter(2)),
    ("format", "string", itemgetter(6)),
    ("path_bytes", "binary", lambda r: _raw_name(r[0])),
    ("caption", "string", itemgetter(10)),
)
EXPORT_COLUMNS = tuple(name for name, _, _ in _EXPORTED)
PATH_COLUMNS = ("path", "image_path")  # pixgrep's, clip-retrieval's
VECTOR_COLUMNS = ("vector", "embedding", "image_embedding")
# The text beside each image, searched as words: pixgrep's and clip-retrieval's `caption`, the
# `TEXT` of LAION's metadata, a plain `text`. The first one present is kept.
CAPTION_COLUMNS = ("caption", "TEXT", "text")
_OPTIONAL = tuple(name for name in EXPORT_COLUMNS if name not in ("path", "vector", "caption"))
IMPORT_BATCH = 10_000  # rows per transaction: big enough for speed, small enough to resume cheaply


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise PixgrepError("Parquet import/export needs pyarrow: pip install 'pixgrep[parquet]'") from None
    return pa, pq


def synthetic_key(path: str) -> str:
    """The content key of an imported row that came without one (see the module docstring)."""
    data = path.encode("utf-8", "surrogateescape")
    return SYNTHETIC_PREFIX + hashlib.blake2b(data, digest_size=16).hexdigest()


# -- export ------------------------------------------------------------------------------------


def catalog_models(db: CatalogDB) -> list[str]:
    return sorted(db.stats()["vectors"])


def _replaceable(target: Path, catalog: Path) -> bool:
    """An existing file an export may replace: a Parquet file, never the catalog itself (not even
    opened: closing a descriptor of it would drop this process's SQLite locks)."""
    try:
        if target.samefile(catalog):
            return False
        with open(target, "rb") as file:
            return file.read(4) == b"PAR1"
    except OSError:
        return False


def _drop_stale_partials(target: Path) -> None:
    """Remove the half-written files of earlier exports to `target` whose process is gone (killed
    with -9: its own cleanup never ran)."""
    for partial in target.parent.glob(f".{glob.escape(target.name)}.partial-*"):
        pid = partial.name.rsplit("-", 1)[1]
        if pid.isdigit() and not _alive(int(pid)):
            partial.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def export_parquet(db: CatalogDB, out: str | os.PathLike, model: str) -> int:
    """Write every decoded image with a vector for `model` to the Parquet file `out`; returns rows.

    Written to a temporary name and renamed at the end, so `out` is never a half-written file.
    """
    target = Path(out)
    if target.is_dir():
        raise PixgrepError(f"--parquet {out}: is a folder; name the file to write")
    if not target.parent.is_dir():
        raise PixgrepError(f"--parquet {out}: no such folder {target.parent}")
    if target.exists() and not _replaceable(target, db.path):
        raise PixgrepError(
            f"--parquet {out}: exists and is not a Parquet file (an earlier export is replaced, "
            "nothing else): name a new file"
        )
    pa, pq = _pyarrow()
    _drop_stale_partials(target)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    writer = None
    written = 0
    try:
        for rows in iter_exportable(db, model):
            vectors = np.stack([blob_to_vector(r[9]) for r in rows]).astype(np.float32)
            columns = {
                name: (
                    pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
                    if name == "vector"
                    else pa.array([value(r) for r in rows], pa.type_for_alias(kind))
                )
                for name, kind, value in _EXPORTED
            }
            table = pa.table(columns)
            if writer is None:
                writer = pq.ParquetWriter(partial, table.schema, compression="zstd")
            writer.write_table(table)
            written += len(rows)
        if writer is None:
            raise PixgrepError(f"the catalog holds no vectors of model {model} to export")
        writer.close()
        writer = None
        os.replace(partial, target)
    finally:
        if writer is not None:
            writer.close()
        partial.unlink(missing_ok=True)
    return written


# -- import sources ----------------------------------------------------------------------------


@dataclass
class Chunk:
    """Up to IMPORT_BATCH input rows: a path column, optional columns, and the vectors."""

    columns: dict[str, list]
    vectors: np.ndarray  # float32 (n, dim)


@dataclass
class Source:
    """One input: a Parquet file, or one img_emb/metadata pair of a clip-retrieval folder."""

    label: str  # what error lines name
    parquet: Path
    npy: Path | None = None  # clip-retrieval: the vectors, rows in the order of the metadata
    path_column: str = ""
    vector_column: str | None = None
    caption_column: str | None = None  # the first of CAPTION_COLUMNS present
    dim: int = 0
    rows: int = 0
    models: set[str] = field(default_factory=set)

    def fingerprint(self, model: str) -> str:
        parts = [model]
        for file in (self.parquet, self.npy):
            if file is not None:
                stat = file.stat()
                parts += [str(file.resolve()), str(stat.st_size), str(stat.st_mtime_ns)]
        return "import:" + hashlib.blake2b("\0".join(parts).encode(), digest_size=12).hexdigest()

    def chunks(self, skip: int, batch: int) -> Iterator[Chunk]:
        """The rows after the first `skip`, in chunks of at most `batch`."""
        _, pq = _pyarrow()
        wanted = [c for c in (*_OPTIONAL, self.path_column, self.vector_column, self.caption_column) if c]
        file = pq.ParquetFile(self.parquet)
        present = [c for c in dict.fromkeys(wanted) if c in file.schema_arrow.names]
        emb = np.load(self.npy, mmap_mode="r") if self.npy is not None else None
        offset = 0
        for record_batch in file.iter_batches(batch_size=batch, columns=present):
            n = record_batch.num_rows
            if offset + n <= skip:
                offset += n
                continue
            start = max(0, skip - offset)
            part = record_batch.slice(start, n - start)
            if emb is not None:
                vectors = np.asarray(emb[offset + start : offset + n], dtype=np.float32)
            else:
                vectors = _vectors_of(part.column(self.vector_column), self.dim, self.label)
            columns = {
                name: part.column(name).to_pylist()
                for name in part.schema.names
                if name != self.vector_column
            }
            yield Chunk(columns, vectors)
            offset += n


def _as_text(stored: str | bytes) -> str:
    """A path as the catalog stores it, as UTF-8 text (a name in no encoding shows its bytes as \\xNN)."""
    return stored if isinstance(stored, str) else bytes(stored).decode("utf-8", "backslashreplace")


def _raw_name(stored: str | bytes) -> bytes | None:
    """The exact bytes of a name in no encoding (None for a UTF-8 one, which `path` holds exactly)."""
    return None if isinstance(stored, str) else bytes(stored)


def _vectors_of(column: pa.Array, dim: int, label: str) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    if column.null_count:
        raise PixgrepError(f"{label}: {column.null_count} row(s) have no vector")
    if not pa.types.is_fixed_size_list(column.type):
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        if len(lengths) and (lengths.min() != dim or lengths.max() != dim):
            bad = int(lengths[lengths != dim][0])
            raise PixgrepError(f"{label}: a vector has {bad} numbers; the model's vectors have {dim}")
    values = column.flatten().to_numpy(zero_copy_only=False)
    with np.errstate(over="ignore"):  # a value past float32's range becomes inf, refused by the caller
        return np.asarray(values, dtype=np.float32).reshape(len(column), dim)


def _describe_parquet(source: Source, expect_models: bool = True) -> None:
    """Fill in the columns, row count, vector size and models of a source; PixgrepError if unusable."""
    pa, pq = _pyarrow()
    try:
        file = pq.ParquetFile(source.parquet)
    except (OSError, pa.ArrowException) as exc:
        raise PixgrepError(
            f"{source.label}: not a readable Parquet file ({str(exc).splitlines()[0]})"
        ) from None
    names = file.schema_arrow.names
    source.rows = file.metadata.num_rows
    path_column = next((c for c in PATH_COLUMNS if c in names), None)
    if path_column is None:
        raise PixgrepError(f"{source.label}: no path column (needs 'path' or 'image_path')")
    source.path_column = path_column
    source.caption_column = next((c for c in CAPTION_COLUMNS if c in names), None)
    if source.npy is not None:
        try:
            emb = np.load(source.npy, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise PixgrepError(f"{source.label}: cannot read {source.npy.name}: {exc}") from None
        if emb.ndim != 2 or emb.shape[0] != source.rows:
            raise PixgrepError(
                f"{source.label}: {source.npy.name} holds {emb.shape} vectors for {source.rows} metadata rows"
            )
        source.dim = int(emb.shape[1])
    else:
        vector_column = next((c for c in VECTOR_COLUMNS if c in names), None)
        if vector_column is None:
            raise PixgrepError(f"{source.label}: no vector column (needs 'vector' or 'embedding')")
        source.vector_column = vector_column
        kind = file.schema_arrow.field(vector_column).type
        if pa.types.is_fixed_size_list(kind):
            source.dim = kind.list_size
        elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
            first = next(file.iter_batches(batch_size=1, columns=[vector_column]), None)
            value = first.column(0)[0].as_py() if first is not None and first.num_rows else None
            source.dim = len(value) if value else 0
        else:
            raise PixgrepError(f"{source.label}: column {vector_column!r} is {kind}, not a list of numbers")
    if "model" in names and source.rows:
        column = pq.read_table(source.parquet, columns=["model"]).column("model")
        source.models = {m for m in column.unique().to_pylist() if m is not None}


def find_sources(paths: Sequence[str | os.PathLike]) -> list[Source]:
    """The inputs named on the command line: Parquet files, folders of them, clip-retrieval folders."""
    sources: list[Source] = []
    for given in paths:
        path = Path(os.path.expanduser(given))
        if path.is_file():
            sources.append(Source(str(given), path))
        elif (path / "img_emb").is_dir() and (path / "metadata").is_dir():
            sources += _clip_retrieval_sources(path, str(given))
        elif path.is_dir():
            files = sorted(path.rglob("*.parquet"))
            if not files:
                raise PixgrepError(f"{given}: no .parquet files in this folder")
            sources += [Source(str(f), f) for f in files]
        else:
            raise PixgrepError(f"no such file or folder: {given}")
    for source in sources:
        _describe_parquet(source)
    return sources


def _clip_retrieval_sources(folder: Path, given: str) -> list[Source]:
    """img_emb/img_emb_N.npy paired with metadata/metadata_N.parquet by N, as clip-retrieval names them."""
    metas = {p.stem.removeprefix("metadata_"): p for p in (folder / "metadata").glob("metadata_*.parquet")}
    embs = {p.stem.removeprefix("img_emb_"): p for p in (folder / "img_emb").glob("img_emb_*.npy")}
    if not embs:
        raise PixgrepError(f"{given}: img_emb/ holds no img_emb_N.npy files")
    missing = sorted(set(embs) ^ set(metas))
    if missing:
        raise PixgrepError(f"{given}: img_emb/ and metadata/ do not pair up (part {missing[0]})")
    return [
        Source(f"{given}: part {part}", metas[part], npy=embs[part])
        for part in sorted(embs, key=lambda s: (len(s), s))
    ]


# -- import ------------------------------------------------------------------------------------


@dataclass
class ImportSummary:
    files: int = 0
    rows: int = 0  # rows stored in this run
    resumed: int = 0  # rows a previous, interrupted run had stored already
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "rows": self.rows,
            "resumed": self.resumed,
            "seconds": round(self.seconds, 3),
        }


def check_sources(sources: Sequence[Source], model: str, dim: int) -> None:
    """Refuse, before anything is written, inputs of another model or vector size."""
    for source in sources:
        other = sorted(source.models - {model})
        if other:
            raise PixgrepError(
                f"{source.label}: holds vectors of model {other[0]}, not {model}; import it with that --model"
            )
        if source.rows and source.dim != dim:
            raise PixgrepError(
                f"{source.label}: vectors have {source.dim} numbers; model {model} makes {dim}-number vectors"
            )


def import_sources(
    db: CatalogDB,
    sources: Sequence[Source],
    model: str,
    dim: int,
    *,
    batch: int = IMPORT_BATCH,
    progress: Callable[[ImportSummary], None] | None = None,
) -> ImportSummary:
    """Store every row of `sources` as images with vectors for `model`, one transaction per batch."""
    check_sources(sources, model, dim)
    whole = db.check_integrity()  # never write into a damaged file (as an index run)
    words.probe(db, whole=whole)
    started = time.monotonic()
    summary = ImportSummary(files=len(sources))
    for source in sources:
        key = source.fingerprint(model)
        done = int(meta_value(db, key) or 0)
        summary.resumed += done
        for chunk in source.chunks(done, batch):
            rows, vectors = _rows_of(chunk, source)
            done += len(chunk.vectors)
            captions = chunk.columns[source.caption_column] if source.caption_column else None
            import_batch(db, rows, vectors, model, captions=captions, progress=(key, str(done)))
            summary.rows += len(rows)
            summary.seconds = time.monotonic() - started
            if progress is not None:
                progress(summary)
        delete_meta(db, key)  # complete: a later import of the same file starts afresh
    summary.seconds = time.monotonic() - started
    return summary


def _rows_of(chunk: Chunk, source: Source) -> tuple[list[ImageRow], dict[str, np.ndarray]]:
    vectors = chunk.vectors
    if not np.isfinite(vectors).all():
        raise PixgrepError(f"{source.label}: a vector holds NaN or infinite numbers")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if len(norms) and float(norms.min()) < 1e-6:
        raise PixgrepError(f"{source.label}: a vector is all zeros")
    vectors = vectors / norms  # stored vectors are unit length (cosine ranking)
    cols = chunk.columns
    n = len(vectors)
    none: list = [None] * n
    paths = cols[source.path_column]
    raw_names = cols.get("path_bytes", none)
    hashes = cols.get("content_hash", none)
    sizes, mtimes = cols.get("size", none), cols.get("mtime_ns", none)
    widths, heights = cols.get("width", none), cols.get("height", none)
    formats, taken = cols.get("format", none), cols.get("taken_at", none)
    rows: list[ImageRow] = []
    out: dict[str, np.ndarray] = {}
    for i in range(n):
        path = paths[i]
        if not path:
            raise PixgrepError(f"{source.label}: a row has no path")
        path = str(path) if raw_names[i] is None else os.fsdecode(bytes(raw_names[i]))
        if "://" not in path:
            path = os.path.abspath(path)  # relative paths are taken from where import runs
        digest = hashes[i] or synthetic_key(path)
        known_file = hashes[i] and sizes[i] is not None and mtimes[i] is not None
        stamp = taken[i]
        rows.append(
            (
                path,
                int(sizes[i]) if known_file else 0,
                int(mtimes[i]) if known_file else -1,  # never a real mtime: a local index re-reads it
                digest,
                _int_or_none(widths[i]),
                _int_or_none(heights[i]),
                formats[i],
                stamp.isoformat() if hasattr(stamp, "isoformat") else stamp,
                None,
            )
        )
        out[digest] = vectors[i]
    return rows, out


def _int_or_none(value: object) -> int | None:
    try:
        return int(value) if value is not None else None  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
