"""Time of the exact all-pairs duplicate search (search/dedup.duplicate_groups) on synthetic vectors.

    python benchmarks/bench_duplicates.py --rows 20000 --rows 40000

Random unit float16 vectors (512-d), with 1 % planted near-copies (cosine about 0.95), as the
catalog's matrix holds them. The work grows with rows^2: the printed extrapolation to 1M rows is
rows^2 scaling of the largest measured size (there is no ANN index yet; see docs/quality.md).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main() -> None:
    from pixgrep.search.dedup import duplicate_groups

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, action="append")
    parser.add_argument("--dim", type=int, default=512)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    last = None
    for rows in args.rows or [20000]:
        rng = np.random.default_rng(0)
        vectors = rng.standard_normal((rows, args.dim), dtype=np.float32)
        copies = rows // 100
        vectors[-copies:] = vectors[:copies] + 0.23 * rng.standard_normal(
            (copies, args.dim), dtype=np.float32
        )
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        half = vectors.astype(np.float16)
        started = time.perf_counter()
        groups = duplicate_groups(half, None, 0.85)
        seconds = time.perf_counter() - started
        print(f"{rows} rows: {seconds:.1f} s, {len(groups)} groups (planted {copies})")
        last = (rows, seconds)
    if last:
        rows, seconds = last
        print(f"extrapolated to 1,000,000 rows: {seconds * (1_000_000 / rows) ** 2 / 60:.0f} min")


if __name__ == "__main__":
    main()
