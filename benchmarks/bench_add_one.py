"""A large catalog imported in clip-retrieval's layout, then what a user pays afterwards: the first
search after the import, adding one photo with a cold or a warm page cache, and the next `-n`.

    # a set of float16 rows (bench_ann_scale.py make), then the catalog made from it by `pixgrep import`
    python benchmarks/bench_ann_scale.py make --vectors vec --kind replicated --rows 1000000 --out w/r1m
    python benchmarks/bench_add_one.py catalog --set w/r1m --out w/c1m
    # adding one Flickr8k photo at a time (each run a new folder with one new photo)
    python benchmarks/bench_add_one.py add --catalog w/c1m/catalog.db \\
        --photos ../shared/data/flickr8k/images --runs 3
    # 10M rows on a small disk: the input first (then the set can go), the lists without the HNSW
    # graph, the input removed before the matrix and index are built
    python benchmarks/bench_add_one.py catalog --set w/r10m --out w/c10m --input-only
    python benchmarks/bench_add_one.py catalog --out w/c10m --lists-only --index-after-input

Every number is a whole `pixgrep` process (wall time, and its CPU time from the kernel). "cold" runs
after the page cache was emptied (`/proc/sys/vm/drop_caches` where the user may write it, else every
catalog file is evicted with posix_fadvise(DONTNEED): the report says which); "warm" right after
another run. `-n` "next" is the first search after an add, "steady" the same search again.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MODEL = "pixgrep-mini"
PART = 250_000  # rows per clip-retrieval file
QUERY = "a dog runs through the grass"


def machine() -> dict:
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "load_average": [round(x, 1) for x in os.getloadavg()],
    }


def timed(command: list[str]) -> dict:
    """Run one pixgrep process; its wall time, CPU time and peak memory."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"s": round(wall, 3), "cpu_s": round(cpu, 3), "load": round(os.getloadavg()[0], 2)}


def pixgrep(*args: str) -> list[str]:
    return [shutil.which("pixgrep") or "pixgrep", *args]


def launched(*args: str, lists_only: bool = False, no_index: bool = False) -> list[str]:
    """`pixgrep ARGS` through `launch` below: with lists_only, ANN builds write the coarse lists
    alone; with no_index, the end of an import builds no search matrix or index."""
    flags = ["--lists-only"] * lists_only + ["--no-index"] * no_index
    return [sys.executable, str(Path(__file__).resolve()), "launch", *flags, "--", *args]


def launch(args: argparse.Namespace) -> int:
    """pixgrep's own command line, changed only as the flags say. --lists-only: `ann.build_index`
    writes the coarse lists without the HNSW graph (4,100 CPU s and 6.6 GB at 10M rows,
    docs/benchmarks.md), and an empty graph file stands in for it: `pixgrep search` never opens
    the graph, and a server whose graph cannot be read answers from the lists alone, so both run
    as they do for a user, less the server's walk. --no-index: the import stores its rows and word
    index, and the first search builds the matrix and index (so the input can go first)."""
    from pixgrep import cli
    from pixgrep.search import ann, ann_coarse

    def build_lists(matrix_path: Path, base_id: str, vectors: np.ndarray):
        rows = len(vectors)
        coarse = ann.coarse_path(matrix_path)
        ann._write_file(coarse, matrix_path, lambda temp: ann_coarse.build(vectors, Path(temp)))
        ann._write_file(ann.index_path(matrix_path), matrix_path, lambda temp: None)
        meta = {
            "format": ann.FORMAT,
            "base_id": base_id,
            "rows": rows,
            "bytes": 0,
            "coarse_bytes": coarse.stat().st_size,
            "dtype": ann.DTYPE,
        }
        write_meta = lambda temp: Path(temp).write_text(json.dumps(meta))
        ann._write_file(ann._meta_path(matrix_path), matrix_path, write_meta)
        return ann.open_index(matrix_path, base_id, rows, vectors)

    if args.lists_only:
        ann.build_index = build_lists
    if args.no_index:
        ann.prepare = lambda *a, **k: None
    return cli.main(args.rest)


def search(catalog: Path) -> list[str]:
    # Scope: the whole catalog (imported paths and the photos added), whatever the working folder.
    return pixgrep(
        "-n", QUERY, "--catalog", str(catalog), "--model", MODEL, "--local", "--no-dedup", "--in", "/"
    )


def evict(catalog: Path) -> str:
    """Empty the page cache; where that is refused, evict the catalog's own files."""
    subprocess.run(["sync"], check=True)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return "drop_caches"
    except OSError:
        pass
    for path in catalog.parent.glob(catalog.name + "*"):
        files = path.rglob("*") if path.is_dir() else [path]
        for file in files:
            if file.is_file():
                fd = os.open(file, os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)
    return "fadvise"


def cmd_catalog(args: argparse.Namespace) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(args.out)
    source = out / "in"
    written = source / "complete"  # the input is written once; the set may then be removed (disk)
    if not written.exists():
        rows = np.load(Path(args.set) / "rows.npy", mmap_mode="r")
        for sub in ("img_emb", "metadata"):
            (source / sub).mkdir(parents=True, exist_ok=True)
        for n, start in enumerate(range(0, len(rows), PART)):
            end = min(start + PART, len(rows))
            np.save(source / "img_emb" / f"img_emb_{n}.npy", np.asarray(rows[start:end], np.float16))
            paths = [f"{args.folder}/d{i % 100:03d}/img{i:07d}.jpg" for i in range(start, end)]
            pq.write_table(pa.table({"image_path": paths}), source / "metadata" / f"metadata_{n}.parquet")
        written.write_text(str(len(rows)))
    if args.input_only:
        return
    count = int(written.read_text())
    catalog = out / "catalog.db"
    report = machine() | {"rows": count, "lists_only": args.lists_only}
    importing = ("import", str(source), "--catalog", str(catalog), "--model", MODEL)
    if args.index_after_input:  # peak disk: catalog + input, then catalog + matrix + index
        report["import_rows"] = timed(launched(*importing, lists_only=args.lists_only, no_index=True))
        shutil.rmtree(source)
        report["build_in_first_search"] = timed(launched(*search(catalog)[1:], lists_only=args.lists_only))
    else:
        report["import"] = timed(launched(*importing, lists_only=args.lists_only))
    report["first_search"] = timed(search(catalog))
    report["steady_search"] = [timed(search(catalog)) for _ in range(3)]
    report["disk_mb"] = {
        path.name: round(
            sum(f.stat().st_size for f in path.rglob("*")) / 2**20
            if path.is_dir()
            else path.stat().st_size / 2**20
        )
        for path in out.glob("catalog.db*")
    }
    if not args.keep_input and source.exists():
        shutil.rmtree(source)
    print(json.dumps(report, indent=1))


def cmd_add(args: argparse.Namespace) -> None:
    catalog = Path(args.catalog)
    photos = sorted(Path(args.photos).glob("*.jpg"))
    work = catalog.parent / "new"
    work.mkdir(exist_ok=True)
    done = {p.name for p in work.rglob("*.jpg")}
    fresh = iter(p for p in photos[::-1] if p.name not in done)
    report = machine() | {"catalog": str(catalog)}
    runs = []
    for _ in range(args.runs):
        for state in ("cold", "warm"):
            folder = work / f"{int(time.time() * 1000)}"
            folder.mkdir()
            shutil.copy2(next(fresh), folder)
            line: dict = {"state": state}
            if state == "cold":
                line["evicted_by"] = evict(catalog)
            line["index"] = timed(pixgrep("index", str(folder), "--catalog", str(catalog), "--model", MODEL))
            line["next_search"] = timed(search(catalog))
            line["steady_search"] = [timed(search(catalog)) for _ in range(3)]
            print(json.dumps(line), flush=True)
            runs.append(line)
    print(json.dumps(report | {"load_after": [round(x, 1) for x in os.getloadavg()]}, indent=1))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    cat = sub.add_parser("catalog", help="clip-retrieval files from a set, then pixgrep import")
    cat.add_argument("--set", help="folder with rows.npy (bench_ann_scale.py make); not needed once written")
    cat.add_argument("--out", required=True)
    cat.add_argument("--folder", default="/photos/archive", help="where the imported paths say they are")
    cat.add_argument("--keep-input", action="store_true")
    cat.add_argument("--input-only", action="store_true", help="write the input, then stop")
    cat.add_argument("--lists-only", action="store_true", help="build the coarse lists, not the HNSW graph")
    cat.add_argument(
        "--index-after-input", action="store_true", help="remove the input before the matrix and index build"
    )
    run = sub.add_parser("launch", help="run pixgrep with --lists-only / --no-index (see `launch`)")
    run.add_argument("--lists-only", action="store_true")
    run.add_argument("--no-index", action="store_true")
    run.add_argument("rest", nargs=argparse.REMAINDER)
    add = sub.add_parser("add", help="index one new photo at a time, cold and warm")
    add.add_argument("--catalog", required=True)
    add.add_argument("--photos", required=True, help="a folder of .jpg files to take new photos from")
    add.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if args.command == "launch":
        args.rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
        return launch(args)
    {"catalog": cmd_catalog, "add": cmd_add}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
