"""Search latency on large catalogs with synthetic vectors.

    .venv/bin/python benchmarks/bench_search.py --model DIR [--sizes 10000 100000] [--runs 5]

For each size it builds a catalog (rows inserted directly: random unit 512-d vectors stored as
float16, paths spread over 100 folders, capture dates) and measures:

  cli_first     `pixgrep -n QUERY` right after the catalog changed (includes the matrix build)
  cli_text      the same command again (steady state): process start, imports, model load,
                text tower, matrix search, metadata of the k results
  cli_image     `pixgrep -n ./ref.jpg` for an image that is in the catalog (stored vector reused:
                no model runs), steady state
  cli_version   `pixgrep --version`: the floor any command pays (Python start and imports)
  api_vector_first_query  in-process search_vector, first query of a process (float16 chunks)
  api_text      in-process Catalog.search of a text query, model warm, matrix cached
  api_vector    in-process search_vector (no model): scoring + top-k + k rows of metadata
  api_scoped_one_folder, api_dated_one_year: as api_vector, scoped to 1 of 100 folders / one year
  full_scan_sqlite  what a per-query read of the whole table costs (rclip's approach): SELECT every
                vector from SQLite and stack it; no scoring included

CLI rows give the min and median wall time and the median CPU time (user + system) of the child;
in-process rows the same in milliseconds. On a shared machine the min wall time and the CPU time
are the meaningful ones; the output records the load average.

`--model` is a model folder whose towers give 512-d vectors, e.g. a random-weight ViT-B-32 export
(`pixgrep models export ViT-B-32 --pretrained none OUT`, or this script's `--export DIR`, which
needs the export extra). Random weights time exactly like trained ones. Prints one JSON object.
"""

from __future__ import annotations

import argparse
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
from synthetic_catalog import fill_catalog

QUERY = "a kitten peeking from behind a corner"


def build_catalog(folder: Path, size: int, model_id: str, dim: int, seed: int = 0) -> tuple[Path, Path]:
    """A catalog of `size` synthetic images under folder/photos, plus one real JPEG (ref.jpg)."""
    from PIL import Image

    photos = folder / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    ref = photos / "ref.jpg"
    Image.new("RGB", (64, 48), (200, 120, 40)).save(ref)
    db_path = folder / "catalog.db"
    fill_catalog(db_path, size, model_id, dim, folder=str(photos), first=ref, seed=seed)
    return db_path, photos


def bump(db_path: Path) -> None:
    from pixgrep.catalog.db import CatalogDB

    db = CatalogDB(db_path)
    with db.conn:
        db.bump_generation()
    db.close()


def run_cli(args: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds user + system) of one `pixgrep` process."""
    command = [str(Path(sys.executable).with_name("pixgrep")), *args]
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    error = proc.stderr.read().decode().strip()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"pixgrep {' '.join(args)} failed: {error}")
    return elapsed, usage.ru_utime + usage.ru_stime


def cli_stats(args: list[str], cwd: Path, runs: int, before=None) -> dict:
    """min and median wall time, median CPU time, over `runs` runs (before() runs ahead of each)."""
    walls, cpus = [], []
    for _ in range(runs):
        if before:
            before()
        wall, cpu = run_cli(args, cwd)
        walls.append(wall)
        cpus.append(cpu)
    return {
        "wall_min_s": round(min(walls), 3),
        "wall_median_s": round(statistics.median(walls), 3),
        "cpu_median_s": round(statistics.median(cpus), 3),
    }


def timed(fn, runs: int) -> dict:
    """In-process: min and median wall milliseconds, median CPU milliseconds (all threads)."""
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {
        "wall_min_ms": round(1000 * min(walls), 2),
        "wall_median_ms": round(1000 * statistics.median(walls), 2),
        "cpu_median_ms": round(1000 * statistics.median(cpus), 2),
    }


def full_scan(db_path: Path, model_id: str, dim: int) -> None:
    conn = sqlite3.connect(db_path)
    rows = conn.execute(
        "SELECT images.path, embeddings.vector FROM images JOIN embeddings "
        "ON embeddings.content_hash = images.content_hash WHERE embeddings.model = ?",
        (model_id,),
    ).fetchall()
    np.stack([np.frombuffer(blob, "<f2") for _, blob in rows]).astype(np.float32)
    conn.close()


def bench_size(size: int, model_dir: str, encoder, runs: int, work: Path) -> dict:
    import pixgrep
    from pixgrep.search import matrix_store as matrix_module

    folder = work / f"catalog-{size}"
    started = time.perf_counter()
    db_path, photos = build_catalog(folder, size, encoder.model_id, encoder.dim)
    row: dict = {"images": size, "build_catalog_s": round(time.perf_counter() - started, 2)}
    common = ["--catalog", str(db_path), "--model", model_dir, "--in", str(photos)]

    run_cli(["-n", QUERY, *common], photos)  # warm the file cache (model files), builds the matrix
    row["cli_first"] = cli_stats(
        ["-n", QUERY, *common], photos, max(1, runs // 2), before=lambda: bump(db_path)
    )
    row["cli_text"] = cli_stats(["-n", QUERY, *common], photos, runs)
    row["cli_image"] = cli_stats(["-n", "./ref.jpg", *common], photos, runs)
    row["matrix_bytes"] = matrix_module.sidecar_path(db_path, encoder.model_id).stat().st_size
    row["catalog_bytes"] = db_path.stat().st_size

    with pixgrep.open_catalog(db_path, encoder=encoder) as catalog:
        matrix_module._cache.clear()
        vector = encoder.encode_texts([QUERY])[0]
        # The first query of a process converts float16 chunk by chunk (what one CLI run does) ...
        row["api_vector_first_query"] = timed(lambda: catalog.search_vector(vector, roots=[photos]), 1)
        # ... later ones use the float32 copy a long-lived process keeps (the server).
        catalog.search(QUERY, roots=[photos])
        many = max(runs, 20)
        one_folder = [photos / "d042"]
        row["api_text"] = timed(lambda: catalog.search(QUERY, roots=[photos]), many)
        row["api_vector"] = timed(lambda: catalog.search_vector(vector, roots=[photos]), many)
        row["api_scoped_one_folder"] = timed(lambda: catalog.search_vector(vector, roots=one_folder), many)
        row["api_dated_one_year"] = timed(
            lambda: catalog.search_vector(vector, roots=[photos], after="2015", before="2016"), many
        )
    row["full_scan_sqlite"] = timed(
        lambda: full_scan(db_path, encoder.model_id, encoder.dim), max(3, runs // 2)
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
        from pixgrep.lab.export import export_open_clip

        if not (Path(args.export) / "config.json").is_file():
            export_open_clip("ViT-B-32", None, Path(args.export))
        args.model = args.export
    if not args.model:
        parser.error("give --model DIR or --export DIR")

    from pixgrep.models import load_encoder

    encoder = load_encoder(args.model)
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        cwd = Path(work)
        load_before = os.getloadavg()[0]
        version = cli_stats(["--version"], cwd, args.runs)
        results = [bench_size(size, args.model, encoder, args.runs, cwd) for size in args.sizes]
    print(
        json.dumps(
            {
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
                "model": args.model,
                "dim": encoder.dim,
                "query": QUERY,
                # other work on the machine skews wall times: the 1-minute load average before and after
                "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                "cli_version": version,
                "sizes": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
