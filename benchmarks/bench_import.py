"""`pixgrep import` speed: fill an empty catalog from a synthetic Parquet file (recorded in
docs/distributed.md).

    .venv/bin/python benchmarks/bench_import.py --rows 1000000 --dim 512

The input is what `pixgrep export --parquet` writes (path, content_hash, model, float32 vector,
width, height, taken_at, size, mtime_ns, format), or with --clip-retrieval the layout of
clip-retrieval's output (float16 img_emb/*.npy + metadata/*.parquet with image_path only, so every
row gets a synthetic key). Writing the input is timed apart from the import itself; the catalog is
opened fresh, so the time includes every transaction, the path index and the content-hash index.
--captions adds a caption column (eight words of a small vocabulary per row); --word-index builds
the (empty) word index first, so the import writes each batch's index rows in its transaction.
`words_sync_s` is what the first search then spends bringing the word index up to date.

    .venv/bin/python benchmarks/bench_import.py --rows 50000 --clip-retrieval --captions --word-index
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

MODEL = "bench-model"
PART = 250_000  # rows per input file


VOCABULARY = (
    "a dog cat man woman child street beach harbour lighthouse red blue green old new small big "
    "running sitting standing on in at with near under two three the of photo picture view sunset"
).split()


def captions(start: int, count: int, wanted: bool) -> dict[str, list[str]]:
    if not wanted:
        return {}
    rng = np.random.default_rng(start)
    picks = rng.integers(0, len(VOCABULARY), (count, 8))
    return {"caption": [" ".join(VOCABULARY[w] for w in row) for row in picks]}


def write_export(folder: Path, rows: int, dim: int, with_captions: bool) -> list[Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    files = []
    for n, start in enumerate(range(0, rows, PART)):
        count = min(PART, rows - start)
        vectors = rng.standard_normal((count, dim), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        ids = range(start, start + count)
        table = pa.table(
            {
                "path": [f"/data/photos/{i % 100:02}/{i:08}.jpg" for i in ids],
                "content_hash": [f"{i:032x}" for i in ids],
                "model": pa.array([MODEL] * count).dictionary_encode(),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim),
                "width": pa.array(np.full(count, 640, np.int32)),
                "height": pa.array(np.full(count, 480, np.int32)),
                "taken_at": ["2021-06-01T12:00:00"] * count,
                "size": pa.array(np.full(count, 123_456, np.int64)),
                "mtime_ns": pa.array(np.arange(start, start + count, dtype=np.int64)),
                "format": ["JPEG"] * count,
                **captions(start, count, with_captions),
            }
        )
        path = folder / f"part-{n:03}.parquet"
        pq.write_table(table, path, compression="zstd")
        files.append(path)
    return files


def write_clip_retrieval(folder: Path, rows: int, dim: int, with_captions: bool) -> list[Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    (folder / "img_emb").mkdir()
    (folder / "metadata").mkdir()
    for n, start in enumerate(range(0, rows, PART)):
        count = min(PART, rows - start)
        vectors = rng.standard_normal((count, dim), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        np.save(folder / "img_emb" / f"img_emb_{n}.npy", vectors.astype(np.float16))
        paths = [f"/data/photos/{i % 100:02}/{i:08}.jpg" for i in range(start, start + count)]
        table = pa.table({"image_path": paths, **captions(start, count, with_captions)})
        pq.write_table(table, folder / "metadata" / f"metadata_{n}.parquet")
    return [folder]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=10_000, help="rows per transaction")
    parser.add_argument("--clip-retrieval", action="store_true", help="clip-retrieval's layout instead")
    parser.add_argument("--captions", action="store_true", help="a caption column too")
    parser.add_argument("--word-index", action="store_true", help="build the word index before importing")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()

    from pixgrep.catalog import words
    from pixgrep.catalog.db import CatalogDB
    from pixgrep.catalog.parquet import find_sources, import_sources

    work = Path(tempfile.mkdtemp(prefix="pixgrep-bench-import-", dir=args.work))
    try:
        started = time.monotonic()
        (work / "in").mkdir()
        writer = write_clip_retrieval if args.clip_retrieval else write_export
        inputs = writer(work / "in", args.rows, args.dim, args.captions)
        written = time.monotonic() - started
        input_bytes = sum(f.stat().st_size for f in (work / "in").rglob("*") if f.is_file())

        db = CatalogDB(work / "catalog.db")
        if args.word_index:
            words.sync(db)
        cpu0 = time.process_time()
        started = time.monotonic()
        summary = import_sources(db, find_sources(inputs), MODEL, args.dim, batch=args.batch)
        seconds = time.monotonic() - started
        cpu = time.process_time() - cpu0
        images = db.stats()["images"]
        started = time.monotonic()
        words.sync(db)
        sync_seconds = time.monotonic() - started
        db.close()
        catalog_bytes = sum(p.stat().st_size for p in work.glob("catalog.db*"))
        print(
            json.dumps(
                {
                    "layout": "clip-retrieval" if args.clip_retrieval else "pixgrep export",
                    "rows": args.rows,
                    "dim": args.dim,
                    "batch": args.batch,
                    "captions": args.captions,
                    "word_index": args.word_index,
                    "stored": images,
                    "write_input_s": round(written, 1),
                    "input_mb": round(input_bytes / 1e6),
                    "import_s": round(seconds, 1),
                    "import_cpu_s": round(cpu, 1),
                    "rows_per_s": round(summary.rows / seconds),
                    "words_sync_s": round(sync_seconds, 1),
                    "catalog_mb": round(catalog_bytes / 1e6),
                    "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                    "load": os.getloadavg()[0],
                }
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
