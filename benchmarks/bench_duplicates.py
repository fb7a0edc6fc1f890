"""`pixgrep duplicates` on big catalogs: exact all-pairs products, and the ANN path (search/dedup.py).

    # exact blockwise products on random vectors (the work grows with rows^2)
    python benchmarks/bench_duplicates.py exact --rows 10000 --rows 20000
    # a 1M-row catalog of real image vectors replicated with noise, with planted near-duplicate groups
    python benchmarks/bench_duplicates.py catalog --real /tmp/ann/real.db --rows 1000000 \
        --out /tmp/dupbench/catalog.db
    # the first run builds the search matrix and its ANN index; then time the command itself
    pixgrep duplicates --catalog /tmp/dupbench/catalog.db --model pixgrep-mini --json > /dev/null
    /usr/bin/time -v pixgrep duplicates --catalog /tmp/dupbench/catalog.db --model pixgrep-mini \
        --json > /tmp/dupbench/found.jsonl
    python benchmarks/bench_duplicates.py score --truth /tmp/dupbench/catalog.db.truth.json \
        --found /tmp/dupbench/found.jsonl
    # in-process sweep of the ANN walk's settings (time, recall of the planted groups)
    python benchmarks/bench_duplicates.py sweep --catalog /tmp/dupbench/catalog.db --ef 16 --ef 32

The catalog's rows are the model's real image vectors (e.g. Flickr8k + CIFAR-10 indexed with
pixgrep-mini), each copied with Gaussian noise (sigma 0.0274 per component: cosine about 0.85 to
the real vector, about 0.72 between two copies of one real vector, like distinct photos of one
scene: docs/quality.md measured a median of 0.66 and a 99th percentile of 0.84 for Flickr8k's
nearest distinct photos). Uniform random vectors would make the ANN walk look easier or harder
than it is. Into that, `--groups` near-duplicate groups are planted: an original row and 1-3
copies at cosines drawn uniformly from 0.88-0.99 (above the 0.85 threshold, so an exact search finds
every planted pair: the recall printed is what the ANN path loses).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

SIBLING_NOISE = 0.0274
COPY_COSINE = (0.88, 0.99)


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def cmd_exact(args: argparse.Namespace) -> None:
    from pixgrep.search.dedup import duplicate_groups

    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    last = None
    for rows in args.rows or [20000]:
        rng = np.random.default_rng(0)
        vectors = rng.standard_normal((rows, args.dim), dtype=np.float32)
        copies = rows // 100
        vectors[-copies:] = vectors[:copies] + 0.23 * rng.standard_normal(
            (copies, args.dim), dtype=np.float32
        )
        half = _unit(vectors).astype(np.float16)
        started = time.perf_counter()
        groups = duplicate_groups(half, None, 0.85)
        seconds = time.perf_counter() - started
        print(f"{rows} rows: {seconds:.1f} s, {len(groups)} groups (planted {copies})")
        last = (rows, seconds)
    if last:
        rows, seconds = last
        print(f"extrapolated to 1,000,000 rows: {seconds * (1_000_000 / rows) ** 2 / 60:.0f} min")


def _real_vectors(path: str, model_prefix: str) -> tuple[np.ndarray, str]:
    conn = sqlite3.connect(path)
    found = conn.execute(
        "SELECT model, vector FROM embeddings WHERE model LIKE ? || '%'", (model_prefix,)
    ).fetchall()
    conn.close()
    if not found:
        sys.exit(f"no {model_prefix} vectors in {path}")
    model = found[0][0]
    unique = {bytes(blob) for m, blob in found if m == model}
    vectors = np.stack([np.frombuffer(b, "<f2") for b in sorted(unique)]).astype(np.float32)
    return _unit(vectors), model


def cmd_catalog(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from synthetic_catalog import fill_catalog

    real, model = _real_vectors(args.real, args.model)
    rng = np.random.default_rng(args.seed)
    rows, dim = args.rows, real.shape[1]
    vectors = np.empty((rows, dim), np.float16)
    for start in range(0, rows, 50_000):
        end = min(start + 50_000, rows)
        block = real[rng.integers(0, len(real), end - start)]
        block = block + SIBLING_NOISE * rng.standard_normal(block.shape, dtype=np.float32)
        vectors[start:end] = _unit(block)
    sizes = rng.integers(1, 4, args.groups)  # copies per group
    chosen = rng.choice(rows, size=int(args.groups + sizes.sum()), replace=False)
    truth, at = [], 0
    for size in sizes.tolist():
        original, copies = int(chosen[at]), chosen[at + 1 : at + 1 + size].tolist()
        at += 1 + size
        for row in copies:
            cosine = rng.uniform(*COPY_COSINE)
            sigma = np.sqrt((1 / cosine**2 - 1) / dim)
            copy = vectors[original].astype(np.float32) + sigma * rng.standard_normal(dim, dtype=np.float32)
            vectors[row] = _unit(copy)
        truth.append([original, *copies])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    folder = str(out.parent / "photos")
    started = time.perf_counter()
    fill_catalog(out, rows, model, dim, folder=folder, vectors_given=vectors)
    paths = [[os.path.join(folder, f"d{i % 100:03d}", f"img{i:06d}.jpg") for i in g] for g in truth]
    Path(str(out) + ".truth.json").write_text(json.dumps(paths))
    print(
        json.dumps(
            {
                "rows": rows,
                "model": model,
                "groups": len(truth),
                "fill_s": round(time.perf_counter() - started, 1),
            }
        )
    )


def _pairs(groups: list[list[str]]) -> set[tuple[str, str]]:
    return {tuple(sorted(pair)) for group in groups for pair in itertools.combinations(group, 2)}  # type: ignore[misc]


def score(truth: list[list[str]], found: list[list[str]]) -> dict:
    """Pairwise recall of the planted pairs, whole planted groups found, and pairs outside them."""
    planted, got = _pairs(truth), _pairs(found)
    by_path = {path: i for i, group in enumerate(found) for path in group}
    whole = sum(1 for group in truth if len({by_path.get(p, -1 - k) for k, p in enumerate(group)}) == 1)
    return {
        "planted_pairs": len(planted),
        "pair_recall": round(len(planted & got) / len(planted), 4),
        "groups_recalled": round(whole / len(truth), 4),
        "found_groups": len(found),
        "pairs_not_planted": len(got - planted),
    }


def cmd_score(args: argparse.Namespace) -> None:
    truth = json.loads(Path(args.truth).read_text())
    found = [[image["path"] for image in json.loads(line)["images"]] for line in open(args.found)]
    print(json.dumps(score(truth, found)))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM"))


def cmd_sweep(args: argparse.Namespace) -> None:
    from pixgrep.catalog.db import CatalogDB
    from pixgrep.search import dedup

    truth = json.loads(Path(str(args.catalog) + ".truth.json").read_text())
    db = CatalogDB(args.catalog)
    model = db.conn.execute("SELECT model FROM embeddings LIMIT 1").fetchone()[0]
    # Synthetic vectors have no pictures: give every row the same fingerprint, so that the model's
    # pairs decide (what this sweep measures: the ANN path's recall and time), as before
    # fingerprints confirmed them.
    from pixgrep.images.fingerprint import FINGERPRINT_BYTES

    with db.conn:
        db.conn.execute(
            "INSERT OR IGNORE INTO fingerprints SELECT DISTINCT content_hash, ? FROM images",
            (bytes(FINGERPRINT_BYTES),),
        )
    for ef, k in itertools.product(args.ef or [dedup.ANN_EXPANSION], args.k or [dedup.NEIGHBOURS]):
        dedup.ANN_EXPANSION, dedup.NEIGHBOURS = ef, k
        load = os.getloadavg()
        started = time.perf_counter()
        cpu = time.process_time()
        groups = dedup.catalog_duplicates(db, model)
        row = {"ef": ef, "k": k, "seconds": round(time.perf_counter() - started, 1)}
        row["cpu_s"] = round(time.process_time() - cpu, 1)
        row.update(score(truth, [[r.path for r in g] for g in groups]))
        row.update({"max_rss_mb": round(rss_mb()), "load": [round(x, 1) for x in load]})
        print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("exact")
    p.add_argument("--rows", type=int, action="append")
    p.add_argument("--dim", type=int, default=512)
    p.set_defaults(func=cmd_exact)
    p = sub.add_parser("catalog")
    p.add_argument("--real", required=True, help="a catalog holding the model's real image vectors")
    p.add_argument("--model", default="pixgrep-mini")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--groups", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_catalog)
    p = sub.add_parser("score")
    p.add_argument("--truth", required=True)
    p.add_argument("--found", required=True)
    p.set_defaults(func=cmd_score)
    p = sub.add_parser("sweep")
    p.add_argument("--catalog", required=True)
    p.add_argument("--ef", type=int, action="append")
    p.add_argument("--k", type=int, action="append")
    p.set_defaults(func=cmd_sweep)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
