"""Approximate nearest-neighbour libraries compared on realistic CLIP-style vectors.

    # 1. real vectors: image vectors of a catalog (e.g. flickr8k + cifar10 indexed with pixgrep-mini)
    #    and text vectors of real Flickr8k captions (the queries)
    .venv/bin/python benchmarks/bench_ann.py vectors --catalog /tmp/ann/real.db --model pixgrep-mini \
        --captions ../shared/data/flickr8k/captions.tsv --out /tmp/ann/vec
    # 2. each library on the real vectors replicated with small noise to N rows
    .venv/bin/python benchmarks/bench_ann.py compare --vectors /tmp/ann/vec --rows 100000 \
        --libs usearch-i8 usearch-f16 faiss-hnsw faiss-hnsw-sq8 faiss-ivfpq hnswlib

Uniform random vectors make every index look bad (no structure to exploit), so the data set is the
real image vectors, each copied `rows / real` times with Gaussian noise (cosine to the original about
0.93, `--noise`): every copy is as hard to tell apart from its siblings as near-duplicate photos are.
`compare --rows R --real-only` measures the same curve on the real vectors alone, to show that the
replicated set is no easier than the real one. Recall@10 is against exact float32 search over the
same rows, for text queries (real captions). Latency is one query at a time on one thread (what a
server request or a CLI query pays), after the index is reopened memory-mapped where the library
can. Prints one JSON line per (library, search setting) and a summary; the machine load is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

K = 10
FETCH = [K]  # candidates asked of the index; > K re-scores them exactly (what pixgrep does)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cmd_vectors(args: argparse.Namespace) -> None:
    """Image vectors from a catalog, text vectors of captions: images.npy, queries.npy."""
    import pixgrep

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with pixgrep.open_catalog(args.catalog, model=args.model) as catalog:
        from pixgrep.catalog.db import CatalogDB

        blobs = [blob for _, _, blob in CatalogDB(args.catalog).iter_searchable(catalog.encoder.model_id)]
        images = np.stack([np.frombuffer(b, "<f2") for b in blobs]).astype(np.float32)
        images /= np.linalg.norm(images, axis=1, keepdims=True)
        lines = Path(args.captions).read_text().splitlines()[1:]
        rng = np.random.default_rng(0)
        picked = rng.choice(len(lines), size=min(args.queries, len(lines)), replace=False)
        captions = [lines[i].split("\t")[2] for i in picked]
        queries = np.concatenate(
            [catalog.encoder.encode_texts(captions[i : i + 64]) for i in range(0, len(captions), 64)]
        ).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    np.save(out / "images.npy", images)
    np.save(out / "queries.npy", queries)
    print(json.dumps({"images": images.shape, "queries": queries.shape}))


def replicated(base: np.ndarray, rows: int, noise: float, seed: int = 0) -> np.ndarray:
    """`rows` unit vectors: the real ones first, then noisy copies of them (float32)."""
    rng = np.random.default_rng(seed)
    out = np.empty((rows, base.shape[1]), np.float32)
    n = min(rows, len(base))
    out[:n] = base[:n]
    for start in range(n, rows, 50_000):
        end = min(start + 50_000, rows)
        block = base[rng.integers(0, len(base), end - start)]
        block = block + rng.standard_normal(block.shape, dtype=np.float32) * noise
        out[start:end] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def exact_top(data: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    tops = []
    for start in range(0, len(queries), 32):
        scores = queries[start : start + 32] @ data.T
        part = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.take_along_axis(scores, part, 1).argsort(axis=1)[:, ::-1]
        tops.append(np.take_along_axis(part, order, 1))
    return np.concatenate(tops)


def recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    hits = [len(set(f.tolist()) & set(t.tolist())) / K for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits))


# -- one adapter per library: build(data) -> saved path, open(path) -> searcher(q, setting) -------


class UsearchLib:
    def __init__(self, dtype: str):
        self.dtype = dtype
        self.settings = [16, 32, 64, 128, 256]  # expansion_search

    def build(self, data: np.ndarray, path: Path) -> None:
        from usearch.index import Index

        index = Index(ndim=data.shape[1], metric="ip", dtype=self.dtype, connectivity=16, expansion_add=128)
        index.add(np.arange(len(data), dtype=np.uint64), data, threads=2)
        index.save(str(path))

    def open(self, path: Path):
        from usearch.index import Index

        index = Index.restore(str(path), view=True)

        def search(q: np.ndarray, ef: int) -> np.ndarray:
            index.expansion_search = ef
            return np.asarray(index.search(q, FETCH[0], threads=1).keys, np.int64)

        return search


class FaissLib:
    def __init__(self, kind: str):
        self.kind = kind
        self.settings = [1, 4, 8, 16, 32, 64] if kind == "ivfpq" else [16, 32, 64, 128, 256]

    def build(self, data: np.ndarray, path: Path) -> None:
        import faiss

        faiss.omp_set_num_threads(2)
        dim = data.shape[1]
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 128
        elif self.kind == "hnsw-sq8":
            index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 128
            index.train(data[: min(len(data), 100_000)])
        else:
            nlist = int(4 * np.sqrt(len(data)))
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFPQ(quantizer, dim, nlist, 64, 8, faiss.METRIC_INNER_PRODUCT)
            index.train(data[: min(len(data), max(40 * nlist, 50_000))])
        index.add(data)
        faiss.write_index(index, str(path))

    def open(self, path: Path):
        import faiss

        faiss.omp_set_num_threads(1)
        try:
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        except RuntimeError:
            index = faiss.read_index(str(path))

        def search(q: np.ndarray, setting: int) -> np.ndarray:
            if self.kind == "ivfpq":
                index.nprobe = setting
            else:
                index.hnsw.efSearch = setting
            return index.search(q.reshape(1, -1), FETCH[0])[1][0].astype(np.int64)

        return search


class HnswlibLib:
    settings = [16, 32, 64, 128, 256]
    dim = 0

    def build(self, data: np.ndarray, path: Path) -> None:
        self.dim = data.shape[1]
        import hnswlib

        index = hnswlib.Index(space="ip", dim=data.shape[1])
        index.init_index(max_elements=len(data), M=16, ef_construction=128)
        index.add_items(data, np.arange(len(data)), num_threads=2)
        index.save_index(str(path))

    def open(self, path: Path):
        import hnswlib

        index = hnswlib.Index(space="ip", dim=self.dim)
        index.load_index(str(path))
        index.set_num_threads(1)

        def search(q: np.ndarray, ef: int) -> np.ndarray:
            index.set_ef(max(ef, FETCH[0]))
            return index.knn_query(q, FETCH[0])[0][0].astype(np.int64)

        return search


LIBS = {
    "usearch-i8": lambda: UsearchLib("i8"),
    "usearch-f16": lambda: UsearchLib("f16"),
    "faiss-hnsw": lambda: FaissLib("hnsw"),
    "faiss-hnsw-sq8": lambda: FaissLib("hnsw-sq8"),
    "faiss-ivfpq": lambda: FaissLib("ivfpq"),
    "hnswlib": lambda: HnswlibLib(),
}


def bench_lib(name: str, data: np.ndarray, queries: np.ndarray, truth: np.ndarray, work: Path) -> list[dict]:
    lib = LIBS[name]()
    path = work / f"{name}.index"
    started, cpu = time.perf_counter(), time.process_time()
    lib.build(data, path)
    build_s, build_cpu = time.perf_counter() - started, time.process_time() - cpu
    before = rss_mb()
    started = time.perf_counter()
    search = lib.open(path)
    open_ms = 1000 * (time.perf_counter() - started)
    opened = rss_mb()
    rows = []
    for setting in lib.settings:
        found, times = [], []
        for q in queries:
            t = time.perf_counter()
            candidates = search(q, setting)
            if FETCH[0] > K:  # exact re-score of the candidates, as the search matrix does
                candidates = candidates[candidates >= 0]
                candidates = candidates[np.argsort(-(data[candidates] @ q))[:K]]
            found.append(candidates)
            times.append(1000 * (time.perf_counter() - t))
        rows.append(
            {
                "lib": name,
                "rows": len(data),
                "setting": setting,
                "fetch": FETCH[0],
                "recall@10": round(recall(found, truth), 4),
                "p50_ms": round(statistics.median(times), 3),
                "p95_ms": round(float(np.percentile(times, 95)), 3),
                "build_s": round(build_s, 1),
                "build_cpu_s": round(build_cpu, 1),
                "file_mb": round(path.stat().st_size / 2**20, 1),
                "open_ms": round(open_ms, 1),
                "rss_after_open_mb": round(opened - before, 1),
                "rss_after_queries_mb": round(rss_mb() - before, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    path.unlink()
    return rows


def cmd_compare(args: argparse.Namespace) -> None:
    folder = Path(args.vectors)
    base = np.load(folder / "images.npy")
    queries = np.load(folder / "queries.npy")[: args.queries]
    FETCH[0] = args.fetch
    data = base[: args.rows] if args.real_only else replicated(base, args.rows, args.noise)
    truth = exact_top(data, queries)
    load = os.getloadavg()
    print(
        json.dumps(
            {
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
                "rows": len(data),
                "real_rows": len(base),
                "noise": None if args.real_only else args.noise,
                "queries": len(queries),
                "load_average": [round(x, 2) for x in load],
            }
        ),
        flush=True,
    )
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        for name in args.libs:
            bench_lib(name, data, queries, truth, Path(work))
    print(json.dumps({"load_average_after": [round(x, 2) for x in os.getloadavg()]}))
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))


def cmd_catalog(args: argparse.Namespace) -> None:
    """A catalog of `rows` images whose vectors are the real ones replicated with noise."""
    sys.path.insert(0, str(Path(__file__).parent))
    from synthetic_catalog import fill_catalog

    from pixgrep.models import load_encoder

    encoder = load_encoder(args.model)
    base = np.load(Path(args.vectors) / "images.npy")
    started = time.perf_counter()
    folder = Path(args.out).parent / "photos"
    fill_catalog(
        Path(args.out), args.rows, encoder.model_id, encoder.dim, folder=str(folder), base_vectors=base
    )
    print(
        json.dumps(
            {"rows": args.rows, "fill_s": round(time.perf_counter() - started, 1), "photos": str(folder)}
        )
    )


def run_child(command: list[str]) -> tuple[float, float, int]:
    """(wall s, CPU s, peak RSS MB) of one child process."""
    import subprocess

    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    error = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"{command} failed: {error}")
    return round(wall, 3), round(usage.ru_utime + usage.ru_stime, 3), usage.ru_maxrss // 1024


def cmd_knobs(args: argparse.Namespace) -> None:
    """Recall@10 and latency of pixgrep's own search (VectorMatrix.top) for each pair of ANN knobs:
    candidates re-scored at least (matrix.ANN_MIN_FETCH) x walk width (ann.EXPANSION_SEARCH)."""
    import pixgrep
    from pixgrep.catalog.db import CatalogDB
    from pixgrep.search import ann as ann_module
    from pixgrep.search import matrix_store as matrix_module
    from pixgrep.search import topk
    from pixgrep.search.scope import Scope

    with pixgrep.open_catalog(args.catalog, model=args.model) as catalog:
        model_id = catalog.encoder.model_id
    m = matrix_module.load_matrix(CatalogDB(args.catalog), model_id)
    queries = np.load(Path(args.vectors) / "queries.npy")[args.skip : args.skip + args.queries]
    truth = [{h.image_id for h in topk.top(m, q, K, Scope(exact=True))} for q in queries]
    print(json.dumps({"rows": m.live, "queries": len(queries), "load": os.getloadavg()[0]}), flush=True)
    for fetch in args.fetch:
        for ef in args.ef:
            topk.ANN_MIN_FETCH, ann_module.EXPANSION_SEARCH = fetch, ef
            found, ms = [], []
            for q in queries:
                t = time.perf_counter()
                found.append({h.image_id for h in topk.top(m, q, K, Scope())})
                ms.append(1000 * (time.perf_counter() - t))
            hit = statistics.mean(len(a & b) / K for a, b in zip(found, truth, strict=True))
            row = {"fetch": fetch, "ef": ef, "recall@10": round(hit, 4)}
            row["p50_ms"] = round(statistics.median(ms), 2)
            print(json.dumps(row | {"method": m.last_method, "load": os.getloadavg()[0]}), flush=True)


def cmd_e2e(args: argparse.Namespace) -> None:
    """At one catalog size: build time and size of base + index, recall@10 of ANN vs exact for
    real caption queries, in-process latency, CLI whole-process time and peak RSS, and the cost of
    adding 1 and N images."""
    import pixgrep
    from pixgrep.search import ann as ann_module
    from pixgrep.search import matrix_store as matrix_module
    from pixgrep.search import topk
    from pixgrep.search.scope import Scope

    catalog_path = Path(args.catalog)
    photos = str(catalog_path.parent / "photos")
    os.makedirs(photos, exist_ok=True)  # rows only, no files: `--in` needs the folder to exist
    report: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
    queries = np.load(Path(args.vectors) / "queries.npy")[: args.queries]
    from pixgrep.catalog.db import CatalogDB

    with pixgrep.open_catalog(catalog_path, model=args.model) as catalog:
        db, encoder = CatalogDB(catalog_path), catalog.encoder
        target = matrix_module.sidecar_path(db.path, encoder.model_id)
        if args.rebuild or matrix_module.open_matrix(target) is None:
            ann_seconds = []
            real_build_index = ann_module.build_index

            def timed_index(*a, **k):
                t = time.perf_counter()
                out = real_build_index(*a, **k)
                ann_seconds.append(time.perf_counter() - t)
                return out

            ann_module.build_index = timed_index  # type: ignore[assignment]
            started = time.perf_counter()
            matrix_module.build_matrix(db, encoder.model_id)
            total = time.perf_counter() - started
            ann_module.build_index = real_build_index  # type: ignore[assignment]
            report["build_base_s"] = round(total - sum(ann_seconds), 1)
            report["build_ann_s"] = round(sum(ann_seconds), 1)
        m = matrix_module.load_matrix(db, encoder.model_id)
        report["rows"] = m.live
        report["matrix_mb"] = round(target.stat().st_size / 2**20, 1)
        ann_file = ann_module.index_path(target)
        report["ann_mb"] = round(ann_file.stat().st_size / 2**20, 1) if ann_file.exists() else None
        report["index"] = m.describe()
        # recall and latency, in-process (what a server request pays besides the text tower)
        found, truth, ann_ms, exact_ms = [], [], [], []
        for i, q in enumerate(queries):
            t = time.perf_counter()
            found.append(np.asarray([h.image_id for h in topk.top(m, q, K, Scope())]))
            ann_ms.append(1000 * (time.perf_counter() - t))
            if i < args.exact_queries:
                t = time.perf_counter()
                truth.append(np.asarray([h.image_id for h in topk.top(m, q, K, Scope(exact=True))]))
                exact_ms.append(1000 * (time.perf_counter() - t))
        report["recall@10"] = round(recall(found[: len(truth)], np.asarray(truth)), 4)
        report["search_ms"] = {
            "ann_p50": round(statistics.median(ann_ms), 2),
            "ann_p95": round(float(np.percentile(ann_ms, 95)), 2),
            "exact_p50": round(statistics.median(exact_ms), 1),
        }
        text_ms = []
        for caption in ["a dog runs on the beach", "two children play in the snow", "a man rides a bike"] * 5:
            t = time.perf_counter()
            catalog.search(caption, roots=[photos])
            text_ms.append(1000 * (time.perf_counter() - t))
        report["api_text_query_ms"] = {
            "p50": round(statistics.median(text_ms), 1),
            "p95": round(float(np.percentile(text_ms, 95)), 1),
        }
        # adding images: one write_batch, then the next query's catch-up. The new vectors are
        # photo vectors with noise, like the catalog's (not the queries: a later run's recall
        # would then be measured on planted answers).
        rng = np.random.default_rng(1)
        photos_vec = np.load(Path(args.vectors) / "images.npy")
        for count in (1, args.add):
            rows, vectors = [], {}
            for i in range(count):
                path = f"{photos}/added/{count}-{i}.jpg"
                digest = f"added-{count}-{i}-{time.time_ns()}"
                rows.append((path, 1, 1, digest, 1, 1, "JPEG", None, None))
                noise = 0.017 * rng.standard_normal(photos_vec.shape[1])
                vectors[digest] = photos_vec[i % len(photos_vec)] + noise
            db.write_batch(rows, vectors, encoder.model_id)
            t = time.perf_counter()
            m = matrix_module.load_matrix(db, encoder.model_id)
            report[f"add_{count}_update_s"] = round(time.perf_counter() - t, 3)
            t = time.perf_counter()
            topk.top(m, queries[0], K, Scope())
            report[f"add_{count}_next_query_ms"] = round(1000 * (time.perf_counter() - t), 1)
        report["journal_mb"] = round(matrix_module.delta_path(target).stat().st_size / 2**20, 2)
    pixgrep_bin = str(Path(sys.executable).with_name("pixgrep"))
    common = ["--catalog", str(catalog_path), "--model", args.model, "--in", photos]
    for name, extra in (("cli_text", []), ("cli_text_exact", ["--exact"])):
        try:
            runs = [
                run_child([pixgrep_bin, "-n", "a dog runs on the beach", *common, *extra]) for _ in range(3)
            ]
        except SystemExit as exc:
            report[name] = str(exc)[-300:]
            continue
        report[name] = {
            "wall_min_s": min(r[0] for r in runs),
            "wall_median_s": statistics.median(r[0] for r in runs),
            "cpu_median_s": statistics.median(r[1] for r in runs),
            "peak_rss_mb": max(r[2] for r in runs),
        }
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    vec = sub.add_parser("vectors")
    vec.add_argument("--catalog", required=True)
    vec.add_argument("--model", default="pixgrep-mini")
    vec.add_argument("--captions", required=True)
    vec.add_argument("--queries", type=int, default=1000)
    vec.add_argument("--out", required=True)
    cmp = sub.add_parser("compare")
    cmp.add_argument("--vectors", required=True)
    cmp.add_argument("--rows", type=int, default=100_000)
    cmp.add_argument("--queries", type=int, default=300)
    cmp.add_argument("--noise", type=float, default=0.017)
    cmp.add_argument("--real-only", action="store_true")
    cmp.add_argument("--fetch", type=int, default=K, help="candidates per query, re-scored exactly")
    cmp.add_argument("--libs", nargs="+", default=list(LIBS), choices=list(LIBS))
    cmp.add_argument("--work", help="folder for the index files (default: a temporary folder)")
    cat = sub.add_parser("catalog")
    cat.add_argument("--vectors", required=True)
    cat.add_argument("--model", default="pixgrep-mini")
    cat.add_argument("--rows", type=int, default=1_000_000)
    cat.add_argument("--out", required=True, help="catalog file to create")
    e2e = sub.add_parser("e2e")
    e2e.add_argument("--catalog", required=True)
    e2e.add_argument("--vectors", required=True)
    e2e.add_argument("--model", default="pixgrep-mini")
    e2e.add_argument("--queries", type=int, default=300)
    e2e.add_argument("--exact-queries", type=int, default=30)
    e2e.add_argument("--add", type=int, default=10_000)
    e2e.add_argument("--rebuild", action="store_true")
    knobs = sub.add_parser("knobs")
    knobs.add_argument("--catalog", required=True)
    knobs.add_argument("--vectors", required=True)
    knobs.add_argument("--model", default="pixgrep-mini")
    knobs.add_argument("--queries", type=int, default=60)
    knobs.add_argument("--skip", type=int, default=300, help="queries skipped (older e2e runs planted them)")
    knobs.add_argument("--fetch", type=int, nargs="+", default=[64, 128, 256])
    knobs.add_argument("--ef", type=int, nargs="+", default=[256, 512])
    args = parser.parse_args()
    commands = {"vectors": cmd_vectors, "compare": cmd_compare, "catalog": cmd_catalog, "e2e": cmd_e2e}
    commands["knobs"] = cmd_knobs
    commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
