"""pixgrep's ANN index (search/ann.py) on clustered sets of 100k to 10M rows: worst queries too.

The matrix and the index alone, no SQLite catalog (at 10M the catalog would take hours to fill on
a small machine): the float16 rows are written to a .npy file, the index is built with pixgrep's
own `ann.build_index`, and each query's candidates are re-scored exactly from the float16 rows,
as search/matrix.py does. Ground truth is streamed: the float16 rows are read in chunks and a
running top 10 is kept per query, so 10M rows never need 20 GB of float32 in memory.

    # real vectors and caption queries (bench_ann.py vectors), then a set, its truth, the index
    python benchmarks/bench_ann.py vectors --catalog f8k.db --model pixgrep-mini \\
        --captions ../shared/data/flickr8k/captions.tsv --queries 500 --out vec
    python benchmarks/bench_ann_scale.py make --vectors vec --kind replicated --rows 1000000 --out w/r1m
    python benchmarks/bench_ann_scale.py run --vectors vec --set w/r1m

Sets: `replicated`: each real image vector copied with Gaussian noise (sigma 0.016 per component:
cosine about 0.94 to its source); `bursts`: the same background plus bursts of near-copies
(cosine 0.98-0.998, sizes from 2 to 20,000, heavy-tailed: re-encodes, crops, a shot repeated).
Recall@10 is score-aware: a returned row whose exact score is within 0.001 of the exact 10th
counts (near-copies tie). Reported: mean, worst and the share of queries below 0.5, per mode
(walk alone, lists alone, both at a given probe, and `search`: what pixgrep runs, the walk and the
default probe), latency (`--passes 2`: again, on the pages the first pass mapped), build time,
disk, peak memory. `catalog`: pixgrep's own top 10 (search/topk.py) on a catalog filled from a
set (`bench_add_one.py catalog`), against the set's truth:

    python benchmarks/bench_ann_scale.py catalog --catalog w/c1m/catalog.db --model MODEL_ID \
        --vectors vec --set w/r1m
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

K = 10
FETCH = 64  # candidates per query (matrix.ANN_MIN_FETCH)
CHUNK = 65_536


def machine() -> dict:
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "load_average": [round(x, 1) for x in os.getloadavg()],
    }


def cmd_make(args: argparse.Namespace) -> None:
    base = np.load(Path(args.vectors) / "images.npy").astype(np.float32)
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, dim = args.rows, base.shape[1]
    matrix = np.lib.format.open_memmap(out / "rows.npy", "w+", np.float16, (rows, dim))
    sources = rng.integers(0, len(base), rows)
    noise = np.full(rows, args.noise, np.float32)
    if args.kind == "bursts":  # about a third of the rows in bursts of near-copies
        at, target = len(base), rows // 3
        while at < len(base) + target:
            size = int(min(20_000, 2 + rng.pareto(1.1) * 4))
            end = min(at + size, rows)
            sources[at:end] = rng.integers(0, len(base))
            noise[at:end] = rng.uniform(0.002, 0.009)  # cosine 0.998-0.98
            at = end
    n = min(rows, len(base))
    sources[:n], noise[:n] = np.arange(n), 0.0
    for start in range(0, rows, CHUNK):
        end = min(start + CHUNK, rows)
        block = base[sources[start:end]]
        block = block + rng.standard_normal(block.shape, dtype=np.float32) * noise[start:end, None]
        matrix[start:end] = block / np.linalg.norm(block, axis=1, keepdims=True)
    matrix.flush()
    print(
        json.dumps(
            {"rows": rows, "kind": args.kind, "file_mb": round((out / "rows.npy").stat().st_size / 2**20)}
        )
    )


def streamed_truth(rows: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact top K (ids, scores) of each query, reading the float16 rows chunk by chunk."""
    best_scores = np.full((len(queries), K), -np.inf, np.float32)
    best_ids = np.zeros((len(queries), K), np.int64)
    for start in range(0, len(rows), CHUNK):
        block = np.asarray(rows[start : start + CHUNK], np.float32)
        scores = np.concatenate([best_scores, queries @ block.T], axis=1)
        ids = np.concatenate(
            [best_ids, np.broadcast_to(np.arange(start, start + len(block)), (len(queries), len(block)))],
            axis=1,
        )
        top = np.argpartition(-scores, K - 1, axis=1)[:, :K]
        best_scores, best_ids = np.take_along_axis(scores, top, 1), np.take_along_axis(ids, top, 1)
    order = np.argsort(-best_scores, axis=1)
    return np.take_along_axis(best_ids, order, 1), np.take_along_axis(best_scores, order, 1)


def score_aware(found_scores: np.ndarray, tenth: float) -> float:
    return min(K, int(np.count_nonzero(found_scores >= tenth - 0.001))) / K


def rss_peak_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def cmd_run(args: argparse.Namespace) -> None:
    from pixgrep.search import ann, ann_coarse

    folder = Path(args.set)
    rows = np.load(folder / "rows.npy", mmap_mode="r")
    queries = np.load(Path(args.vectors) / "queries.npy")[args.skip : args.skip + args.queries]
    report: dict = machine() | {"rows": len(rows), "set": str(folder), "queries": len(queries)}
    truth_file = folder / f"truth-{args.skip}-{len(queries)}.npz"
    if truth_file.exists():
        truth = np.load(truth_file)["scores"]
    else:
        started = time.perf_counter()
        ids, truth = streamed_truth(rows, queries)
        np.savez(truth_file, ids=ids, scores=truth)
        report["truth_s"] = round(time.perf_counter() - started, 1)
    matrix_path = folder / "base.matrix"
    if args.rebuild_lists and not args.rebuild:
        report["lists_build_s"] = rebuild_lists(matrix_path, rows)
    index = None if args.rebuild else ann.open_index(matrix_path, "bench", len(rows), rows)
    if index is None:
        coarse_s, real_build = [], ann_coarse.build

        def timed_build(*a, **k):  # the coarse layer's share of the build
            t, c = time.perf_counter(), time.process_time()
            real_build(*a, **k)
            coarse_s.append((time.perf_counter() - t, time.process_time() - c))

        ann_coarse.build = timed_build  # type: ignore[assignment]
        started, cpu = time.perf_counter(), time.process_time()
        index = ann.build_index(matrix_path, "bench", rows)
        ann_coarse.build = real_build  # type: ignore[assignment]
        report["build_s"] = round(time.perf_counter() - started, 1)
        report["build_cpu_s"] = round(time.process_time() - cpu, 1)
        report["coarse_build_s"], report["coarse_build_cpu_s"] = (round(x, 1) for x in coarse_s[0])
    assert index is not None and index.coarse is not None
    sizes = {
        "graph": ann.index_path(matrix_path),
        "coarse": ann.coarse_path(matrix_path),
        "rows": folder / "rows.npy",
    }
    report["disk_mb"] = {name: round(path.stat().st_size / 2**20, 1) for name, path in sizes.items()}
    coarse = index.coarse
    modes = {
        "walk": lambda q, ef: walk(index, q, ef),
        "lists": lambda q, probe: coarse.probe(q, rows, FETCH, probe),
        "both": lambda q, probe: np.union1d(
            walk(index, q, ann.EXPANSION_SEARCH), coarse.probe(q, rows, FETCH, probe)
        ),
    }
    modes["search"] = lambda q, _: index.search(q, FETCH)  # what pixgrep runs: walk + default probe
    settings = {"walk": args.ef, "lists": args.probe, "both": args.probe, "search": [coarse.default_probe]}
    for mode in args.modes:
        for setting in settings[mode] * args.passes:  # a second pass: the pages the first mapped
            recalls, times, cpu = [], [], []
            for q, exact in zip(queries, truth, strict=True):
                t, c = time.perf_counter(), time.thread_time()
                found = modes[mode](q, setting)
                scores = np.asarray(rows[np.sort(found)], np.float32) @ q  # the exact re-score
                top = np.sort(scores)[::-1][:K]
                times.append(1000 * (time.perf_counter() - t))
                cpu.append(1000 * (time.thread_time() - c))  # what the load does not move
                recalls.append(score_aware(top, float(exact[K - 1])))
            line = {"mode": mode, "setting": setting, "recall_mean": round(float(np.mean(recalls)), 4)}
            line |= {"recall_worst": min(recalls), "below_0.5": int(sum(r < 0.5 for r in recalls))}
            line |= {
                "p50_ms": round(statistics.median(times), 2),
                "p95_ms": round(float(np.percentile(times, 95)), 2),
                "cpu_p50_ms": round(statistics.median(cpu), 2),
                "cpu_p95_ms": round(float(np.percentile(cpu, 95)), 2),
            }
            print(json.dumps(line | {"load": round(os.getloadavg()[0], 1)}), flush=True)
    report["lists"] = len(coarse.centroids)
    report["largest_list"] = int(np.diff(coarse.starts).max())
    report["peak_rss_mb"] = rss_peak_mb()
    if args.cold:
        report["cold_query"] = cold_query(matrix_path, len(rows), folder / "rows.npy", queries[0])
    print(json.dumps(report | {"load_after": [round(x, 1) for x in os.getloadavg()]}, indent=1))


def rebuild_lists(matrix_path: Path, rows: np.ndarray) -> list[float]:
    """Write the coarse layer again beside the saved graph (a layout change of the lists alone:
    the graph takes an hour at 10M), and the sizes the index metadata checks. (wall s, CPU s)."""
    from pixgrep.search import ann, ann_coarse

    started, cpu = time.perf_counter(), time.process_time()
    target = ann.coarse_path(matrix_path)
    ann_coarse.build(rows, target.with_suffix(".tmp"))
    target.with_suffix(".tmp").replace(target)
    meta_file = matrix_path.with_name(matrix_path.name + ".usearch.json")
    meta = json.loads(meta_file.read_text())
    meta["coarse_bytes"] = target.stat().st_size
    meta_file.write_text(json.dumps(meta))
    return [round(time.perf_counter() - started, 1), round(time.process_time() - cpu, 1)]


def cmd_explain(args: argparse.Namespace) -> None:
    """Why the worst queries of `run` miss: for each query below --below, where its exact top 10
    lives (which lists, how big, their rank by centroid score and by best member) and what the
    walk and the lists found."""
    from pixgrep.search import ann

    folder = Path(args.set)
    rows = np.load(folder / "rows.npy", mmap_mode="r")
    queries = np.load(Path(args.vectors) / "queries.npy")[args.skip : args.skip + args.queries]
    truth = np.load(folder / f"truth-{args.skip}-{len(queries)}.npz")
    index = ann.open_index(folder / "base.matrix", "bench", len(rows), rows)
    assert index is not None and index.coarse is not None, "run `run` first: it builds the index"
    coarse = index.coarse
    list_of = np.empty(len(rows), np.int32)
    for i in range(len(coarse.centroids)):
        list_of[coarse.order[coarse.starts[i] : coarse.starts[i + 1]]] = i
    sizes = np.diff(coarse.starts)
    for n, (q, ids, exact) in enumerate(zip(queries, truth["ids"], truth["scores"], strict=True)):
        tenth = float(exact[K - 1])
        found = np.union1d(walk(index, q, ann.EXPANSION_SEARCH), coarse.probe(q, rows, FETCH, args.probe))
        got = score_aware(np.sort(np.asarray(rows[np.sort(found)], np.float32) @ q)[::-1][:K], tenth)
        if got >= args.below:
            continue
        near = coarse.centroids @ q
        rank = np.empty(len(near), np.int64)
        rank[np.argsort(-near)] = np.arange(len(near))
        lists = sorted(set(int(list_of[i]) for i in ids))
        print(
            json.dumps(
                {
                    "query": args.skip + n,
                    "recall": got,
                    "exact_scores": [round(float(exact[0]), 4), round(tenth, 4)],
                    "truth_lists": [
                        {
                            "list": i,
                            "rows": int(sizes[i]),
                            "centroid_rank": int(rank[i]),
                            "centroid_score": round(float(near[i]), 4),
                            "truth_rows_in_it": int(np.sum(list_of[ids] == i)),
                        }
                        for i in lists
                    ],
                    "probed_centroid_score_at_probe": round(float(np.sort(near)[::-1][args.probe - 1]), 4),
                    "walk_best": round(
                        float(np.max(np.asarray(rows[np.sort(walk(index, q, 512))], np.float32) @ q)), 4
                    ),
                }
            ),
            flush=True,
        )


def cmd_catalog(args: argparse.Namespace) -> None:
    """Recall and latency of pixgrep's own top 10 (search/topk.py: matrix, lists, graph, exact
    re-score) on a catalog filled from a set (`bench_add_one.py catalog`), against the set's
    streamed truth (`run` writes it; scores do not depend on the catalog's row order): the lists
    alone, as `pixgrep search` runs, and walk + lists, as the server does."""
    import contextlib

    from pixgrep.catalog.db import CatalogDB
    from pixgrep.search import ann
    from pixgrep.search.matrix_store import load_matrix
    from pixgrep.search.scope import Exclusions, Scope
    from pixgrep.search.topk import top

    matrix = load_matrix(CatalogDB(Path(args.catalog)), args.model)
    queries = np.load(Path(args.vectors) / "queries.npy")[args.skip : args.skip + args.queries]
    truth = np.load(Path(args.set) / f"truth-{args.skip}-{len(queries)}.npz")["scores"]
    for mode, scope in (("lists", ann.lists_only), ("walk + lists", contextlib.nullcontext)):
        with scope():
            for _ in range(args.passes):
                recalls, times = [], []
                for q, exact in zip(queries, truth, strict=True):
                    t = time.perf_counter()
                    hits = top(matrix, q, K, Scope(exclusions=Exclusions()))
                    times.append(1000 * (time.perf_counter() - t))
                    recalls.append(score_aware(np.array([h.score for h in hits]), float(exact[K - 1])))
                line = {
                    "mode": mode,
                    "method": matrix.last_method,
                    "recall_mean": round(float(np.mean(recalls)), 4),
                }
                line |= {"recall_worst": min(recalls), "below_0.5": int(sum(r < 0.5 for r in recalls))}
                line |= {
                    "p50_ms": round(statistics.median(times), 2),
                    "p95_ms": round(float(np.percentile(times, 95)), 2),
                }
                print(json.dumps(line | {"load": round(os.getloadavg()[0], 1)}), flush=True)


def walk(index, query: np.ndarray, ef: int) -> np.ndarray:
    index._index.expansion_search = max(ef, FETCH)
    return np.asarray(index._index.search(query, FETCH, threads=1).keys, np.int64)


def cold_query(matrix_path: Path, rows: int, rows_file: Path, query: np.ndarray) -> dict:
    """New Python processes that map the index and answer two queries: each one's whole wall time,
    and inside it the open and each query (what `pixgrep -n` pays for the index, besides the
    catalog and the text tower). "lists": as `pixgrep search` now runs (`ann.lists_only`: the graph
    is never opened); "graph": walk + lists, as a process that asks many questions does."""
    np.save(matrix_path.with_suffix(".query.npy"), query)
    script = (
        "import contextlib, json, sys, time, numpy as np; from pathlib import Path;"
        "from pixgrep.search import ann;"
        f"rows = np.load({str(rows_file)!r}, mmap_mode='r');"
        f"q = np.load({str(matrix_path.with_suffix('.query.npy'))!r});"
        "scope = ann.lists_only() if sys.argv[1] == 'lists' else contextlib.nullcontext();"
        "scope.__enter__(); t = time.perf_counter();"
        f"index = ann.open_index(Path({str(matrix_path)!r}), 'bench', {rows}, rows);"
        "t1 = time.perf_counter(); index.search(q, 64); t2 = time.perf_counter();"
        "index.search(-q, 64); t3 = time.perf_counter();"
        "ms = [1000 * (t1 - t), 1000 * (t2 - t1), 1000 * (t3 - t2)];"
        "print(json.dumps(dict(zip(['open_ms', 'first_ms', 'second_ms'], ms))))"
    )
    report = {}
    for mode in ("lists", "graph"):
        started = time.perf_counter()
        command = [sys.executable, "-c", script, mode]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        inside = {name: round(value, 1) for name, value in json.loads(done.stdout).items()}
        report[mode] = {"process_s": round(time.perf_counter() - started, 3)} | inside
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("make", help="write a set of float16 rows")
    make.add_argument("--vectors", required=True, help="folder with images.npy (bench_ann.py vectors)")
    make.add_argument("--kind", choices=["replicated", "bursts"], default="replicated")
    make.add_argument("--rows", type=int, default=1_000_000)
    make.add_argument("--noise", type=float, default=0.016)
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--out", required=True)
    run = sub.add_parser("run", help="truth, index, recall and latency")
    run.add_argument("--vectors", required=True, help="folder with queries.npy")
    run.add_argument("--set", required=True)
    run.add_argument("--queries", type=int, default=100)
    run.add_argument(
        "--skip", type=int, default=400, help="queries skipped (bench_ann.py uses the first ones)"
    )
    run.add_argument("--modes", nargs="+", default=["walk", "lists", "both", "search"])
    run.add_argument("--passes", type=int, default=1, help="run each setting this many times (warm)")
    run.add_argument("--ef", type=int, nargs="+", default=[512])
    run.add_argument("--probe", type=int, nargs="+", default=[32])
    run.add_argument("--rebuild", action="store_true")
    run.add_argument(
        "--rebuild-lists", action="store_true", help="write the coarse layer again, keep the graph"
    )
    run.add_argument("--cold", action="store_true", help="also time a cold process's first query")
    explain = sub.add_parser("explain", help="where the exact top 10 of the worst queries lives")
    explain.add_argument("--vectors", required=True)
    explain.add_argument("--set", required=True)
    explain.add_argument("--queries", type=int, default=100)
    explain.add_argument("--skip", type=int, default=400)
    explain.add_argument("--probe", type=int, default=32)
    explain.add_argument("--below", type=float, default=0.9)
    catalog = sub.add_parser("catalog", help="pixgrep's own top 10 on a catalog filled from the set")
    catalog.add_argument("--catalog", required=True)
    catalog.add_argument("--model", required=True, help="the model id its vectors are stored under")
    catalog.add_argument("--vectors", required=True)
    catalog.add_argument("--set", required=True, help="the set the catalog was filled from (its truth)")
    catalog.add_argument("--queries", type=int, default=100)
    catalog.add_argument("--skip", type=int, default=400)
    catalog.add_argument("--passes", type=int, default=2)
    args = parser.parse_args()
    commands = {"make": cmd_make, "run": cmd_run, "explain": cmd_explain, "catalog": cmd_catalog}
    commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
