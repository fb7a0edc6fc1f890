"""Search latency on large catalogs with synthetic vectors.

    .venv/bin/python benchmarks/bench_search.py --model DIR [--sizes 10000 100000] [--runs 5]

For each size it builds a catalog (rows inserted directly: random unit 512-d vectors stored as
float16, paths spread over 100 folders, capture dates) and measures:

  cli_first     wall time of `pixgrep -n QUERY` right after the catalog changed (matrix build)
  cli_text      the same command again (steady state): process start, imports, model load,
                text tower, matrix search, metadata of the k results
  cli_image     `pixgrep -n ./ref.jpg` for an image that is in the catalog (stored vector reused:
                no model runs), steady state
  cli_version   `pixgrep --version`: the floor any command pays (Python start and imports)
  api_text      in-process Catalog.search of a text query, model warm, matrix cached
  api_vector    in-process search_vector (no model): matrix scoring + top-k + k rows of metadata
  api_scoped    as api_vector, scoped to one of the 100 folders
  full_scan     what a per-query scan of the whole table costs (rclip's approach): SELECT every
                vector from SQLite and stack it; no scoring included

`--model` is a model folder whose towers give 512-d vectors, e.g. a random-weight ViT-B-32 export
(`pixgrep models export ViT-B-32 --pretrained none OUT`, or this script's `--export DIR`, which
needs the export extra). Random weights time exactly like trained ones. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

QUERY = "a kitten peeking from behind a corner"


def build_catalog(folder: Path, size: int, model_id: str, dim: int, seed: int = 0) -> tuple[Path, Path]:
    """A catalog of `size` synthetic images under folder/photos, plus one real JPEG (ref.jpg)."""
    from PIL import Image

    from pixgrep.catalog.db import CatalogDB

    photos = folder / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    ref = photos / "ref.jpg"
    Image.new("RGB", (64, 48), (200, 120, 40)).save(ref)
    db_path = folder / "catalog.db"
    db = CatalogDB(db_path)
    rng = np.random.default_rng(seed)
    now = time.time()
    with db.conn:
        for start in range(0, size, 10_000):
            count = min(10_000, size - start)
            vectors = rng.standard_normal((count, dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            images, embeddings = [], []
            for offset in range(count):
                i = start + offset
                path = str(photos / f"d{i % 100:03d}" / f"img{i:06d}.jpg") if i else str(ref)
                digest = hashlib.sha1(path.encode()).hexdigest()
                stat = os.stat(ref) if i == 0 else None
                taken = f"20{10 + i % 14:02d}-{1 + i % 12:02d}-{1 + i % 28:02d}T12:00:00"
                images.append((path, stat.st_size if stat else 2_000_000, stat.st_mtime_ns if stat else 1,
                               digest, 4000, 3000, "JPEG", taken, None, now))
                embeddings.append((digest, model_id, vectors[offset].astype("<f2").tobytes()))
            db.conn.executemany(
                "INSERT INTO images (path, size, mtime_ns, content_hash, width, height, format, taken_at,"
                " error, indexed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                images,
            )
            db.conn.executemany("INSERT INTO embeddings VALUES (?, ?, ?)", embeddings)
        db.bump_generation()
    db.close()
    return db_path, photos


def bump(db_path: Path) -> None:
    from pixgrep.catalog.db import CatalogDB

    db = CatalogDB(db_path)
    with db.conn:
        db.bump_generation()
    db.close()


def run_cli(args: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    proc = subprocess.run([str(Path(sys.executable).with_name("pixgrep")), *args], cwd=cwd,
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"pixgrep failed ({proc.returncode}): {proc.stderr.strip()}")
    return elapsed


def median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def full_scan(db_path: Path, model_id: str, dim: int) -> None:
    conn = sqlite3.connect(db_path)
    rows = conn.execute(
        "SELECT images.path, embeddings.vector FROM images JOIN embeddings "
        "ON embeddings.content_hash = images.content_hash WHERE embeddings.model = ?", (model_id,)
    ).fetchall()
    np.stack([np.frombuffer(blob, "<f2") for _, blob in rows]).astype(np.float32)
    conn.close()


def bench_size(size: int, model_dir: str, encoder, runs: int, work: Path) -> dict:
    import pixgrep
    from pixgrep.search import matrix as matrix_module

    folder = work / f"catalog-{size}"
    started = time.perf_counter()
    db_path, photos = build_catalog(folder, size, encoder.model_id, encoder.dim)
    row: dict = {"images": size, "build_catalog_s": round(time.perf_counter() - started, 2)}
    common = ["--catalog", str(db_path), "--model", model_dir, "--in", str(photos)]

    firsts = []
    for _ in range(max(1, runs // 2)):
        bump(db_path)  # the catalog changed: the next query rebuilds the matrix
        firsts.append(run_cli(["-n", QUERY, *common], photos))
    row["cli_first_s"] = round(statistics.median(firsts), 3)
    row["cli_text_s"] = round(
        statistics.median(run_cli(["-n", QUERY, *common], photos) for _ in range(runs)), 3
    )
    row["cli_image_s"] = round(
        statistics.median(run_cli(["-n", "./ref.jpg", *common], photos) for _ in range(runs)), 3
    )
    row["matrix_bytes"] = matrix_module.sidecar_path(db_path, encoder.model_id).stat().st_size
    row["catalog_bytes"] = db_path.stat().st_size

    with pixgrep.open_catalog(db_path, encoder=encoder) as catalog:
        catalog.search(QUERY, roots=[photos])  # warm: towers loaded, matrix mapped
        many = max(runs, 20)
        row["api_text_ms"] = round(1000 * median_time(lambda: catalog.search(QUERY, roots=[photos]), many), 2)
        vector = encoder.encode_texts([QUERY])[0]
        row["api_vector_ms"] = round(
            1000 * median_time(lambda: catalog.search_vector(vector, roots=[photos]), many), 2
        )
        scoped = [photos / "d042"]
        row["api_scoped_ms"] = round(
            1000 * median_time(lambda: catalog.search_vector(vector, roots=scoped), many), 2
        )
        row["api_dated_ms"] = round(
            1000 * median_time(lambda: catalog.search_vector(vector, roots=[photos], after="2015",
                                                             before="2016"), many), 2
        )
    row["full_scan_ms"] = round(
        1000 * median_time(lambda: full_scan(db_path, encoder.model_id, encoder.dim), max(3, runs // 2)), 1
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="model folder with 512-d towers")
    parser.add_argument("--export", metavar="DIR", help="export a random-weight ViT-B-32 here first")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--work", help="folder for the catalogs (default: a temporary folder)")
    args = parser.parse_args()

    if args.export:
        from pixgrep.models.export import export_open_clip

        if not (Path(args.export) / "config.json").is_file():
            export_open_clip("ViT-B-32", None, Path(args.export))
        args.model = args.export
    if not args.model:
        parser.error("give --model DIR or --export DIR")

    from pixgrep.models import load_encoder

    encoder = load_encoder(args.model)
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        cwd = Path(work)
        version_s = statistics.median(run_cli(["--version"], cwd) for _ in range(args.runs))
        results = [bench_size(size, args.model, encoder, args.runs, cwd) for size in args.sizes]
    print(json.dumps({
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "model": args.model,
        "dim": encoder.dim,
        "query": QUERY,
        "load_average_1min": round(os.getloadavg()[0], 2),  # other work on the machine skews timings
        "cli_version_s": round(version_s, 3),
        "sizes": results,
    }, indent=2))


if __name__ == "__main__":
    main()
