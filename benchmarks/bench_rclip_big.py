"""rclip 3.3 and pixgrep side by side on one large catalog: `-n` text queries, whole processes.

rclip's catalog is filled from pixgrep's own (the same paths and the same vectors, float32 as rclip
stores them), so both programs rank the same rows; nothing is indexed or encoded from images:

    .venv/bin/python benchmarks/bench_rclip_big.py fill --catalog /tmp/ann/c1m/catalog.db \\
        --model pixgrep-mini --out /tmp/rclip-1m
    .venv/bin/python benchmarks/bench_rclip_big.py query --catalog /tmp/ann/c1m/catalog.db \\
        --model pixgrep-mini --rclip-data /tmp/rclip-1m --photos /tmp/ann/c1m/photos \\
        --rclip-model /tmp/vitb32 --trials 3

`query` alternates the two programs, each run in the photos folder with `-n` (no indexing):
`rclip -n -f QUERY` (through bench_rclip.py's offline wrapper, with the `--rclip-model` towers)
and `pixgrep -n QUERY -f --no-dedup` with pixgrep's catalog and model. rclip reads every vector
below the folder from SQLite and scores them all per query; pixgrep maps its matrix and asks its
ANN index. Wall time, child CPU and peak RSS (`/usr/bin/time -f %M`) of each process; one JSON
line each, then medians. Install rclip as bench_rclip.py says.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_rclip import QUERY, programs, timed

from pixgrep.catalog.db import CatalogDB
from pixgrep.search.matrix_store import load_matrix

ROWS_PER_COMMIT = 50_000


def cmd_fill(args: argparse.Namespace) -> None:
    """rclip's db.sqlite3 (its own schema, created by rclip's DB class) with pixgrep's live rows."""
    sys.path.insert(0, args.rclip_site)
    from rclip.db import DB  # type: ignore[import-not-found]

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / "db.sqlite3"
    target.unlink(missing_ok=True)
    DB(target).close()  # tables, indexes and version exactly as rclip 3.3 writes them
    db = CatalogDB(args.catalog)
    stored = [m for (m,) in db.conn.execute("SELECT DISTINCT model FROM embeddings")]
    model = next((m for m in stored if m == args.model or m.startswith(args.model + "@")), None)
    if model is None:
        raise SystemExit(f"no vectors of {args.model} in {args.catalog} (it holds: {', '.join(stored)})")
    matrix = load_matrix(db, model)
    con = sqlite3.connect(target)
    started = time.perf_counter()
    rows = matrix.live_rows()
    for start in range(0, len(rows), ROWS_PER_COMMIT):
        batch = rows[start : start + ROWS_PER_COMMIT]
        con.executemany(
            "INSERT INTO images (deleted, indexing, filepath, modified_at, size, vector, hash)"
            " VALUES (NULL, NULL, ?, 0, 1, ?, NULL)",
            ((matrix.path_at(row), np.asarray(matrix.vector_at(row), np.float32).tobytes()) for row in batch),
        )
        con.commit()
        print(f"{start + len(batch)} rows", file=sys.stderr, flush=True)
    con.close()
    print(
        json.dumps(
            {
                "rows": len(rows),
                "seconds": round(time.perf_counter() - started, 1),
                "bytes": target.stat().st_size,
            }
        )
    )


def peak_rss_mb(cmd: list[str], cwd: Path, env: dict) -> float:
    """Peak resident memory of one run of `cmd` (GNU time), in MB."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as out:
        subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", out.name, *cmd],
            cwd=cwd,
            env=env,
            capture_output=True,
            check=True,
            timeout=3600,
        )
        return round(int(out.read().split()[-1]) / 1024, 1)


def cmd_query(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-rclip-big-"))
    args.pixgrep_model = [args.model]
    table = programs(args, work)
    rclip_cmd, rclip_env = table["rclip"]
    ((pixgrep_cmd, pixgrep_env),) = (v for k, v in table.items() if k != "rclip")
    runs = {
        "rclip": ([*rclip_cmd, "-n", QUERY], dict(rclip_env, RCLIP_DATADIR=args.rclip_data)),
        "pixgrep": ([*pixgrep_cmd, "--catalog", args.catalog, "-n", QUERY, "--no-dedup"], pixgrep_env),
    }
    photos = Path(args.photos)
    walls: dict[str, list[float]] = {}
    for cmd, env in runs.values():  # warm the file cache once each, not measured
        timed(cmd, photos, env)
    for trial in range(args.trials):
        for name in list(runs) if trial % 2 == 0 else list(runs)[::-1]:
            cmd, env = runs[name]
            load = os.getloadavg()[0]
            wall, cpu, top = timed(cmd, photos, env)
            walls.setdefault(name, []).append(wall)
            print(
                json.dumps(
                    {
                        "trial": trial,
                        "program": name,
                        "wall_s": wall,
                        "cpu_s": cpu,
                        "top": Path(top).name,
                        "load": load,
                    }
                ),
                flush=True,
            )
    rss = {name: peak_rss_mb(cmd, photos, env) for name, (cmd, env) in runs.items()}
    summary = {
        name: {"median_wall_s": statistics.median(v), "peak_rss_mb": rss[name]} for name, v in walls.items()
    }
    summary["pixgrep"]["ratio_to_rclip"] = round(
        summary["pixgrep"]["median_wall_s"] / summary["rclip"]["median_wall_s"], 3
    )
    print(
        json.dumps({"summary": summary, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, indent=2)
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func in (("fill", cmd_fill), ("query", cmd_query)):
        p = sub.add_parser(name)
        p.add_argument("--catalog", required=True, help="pixgrep catalog whose rows are used")
        p.add_argument("--model", required=True, help="pixgrep model of those vectors")
        p.add_argument("--rclip-site", default="/tmp/rclip-site")
        p.set_defaults(func=func)
        if name == "fill":
            p.add_argument("--out", required=True, help="rclip data folder (RCLIP_DATADIR) to write")
        else:
            p.add_argument("--rclip-data", required=True, help="the folder `fill` wrote")
            p.add_argument("--photos", required=True, help="the folder both programs search")
            p.add_argument("--rclip-model", required=True, help="model folder whose towers rclip runs")
            p.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
