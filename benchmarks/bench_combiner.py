"""Query cost of a Combiner (numpy, the query-time path): one image + text pair at a time.

    python benchmarks/bench_combiner.py [--combiner FILE] [--seconds S]

Prints milliseconds per single-pair call (median of rounds) and the load average beside it.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from pixgrep.models.combiner import SHIPPED_MINI, load_combiner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--combiner", default=str(SHIPPED_MINI))
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    combiner = load_combiner(args.combiner)
    rng = np.random.default_rng(0)
    image, text = rng.normal(size=(2, 1, combiner.dim)).astype(np.float32)
    for _ in range(20):
        combiner.combine(image, text)
    rounds = []
    deadline = time.perf_counter() + args.seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(50):
            combiner.combine(image, text)
        rounds.append((time.perf_counter() - start) / 50 * 1000)
    print(
        f"combiner {combiner.model_id}: {np.median(rounds):.3f} ms per query (median of {len(rounds)} "
        f"rounds of 50; best {min(rounds):.3f} ms); load average {os.getloadavg()[0]:.1f}, "
        f"{os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )


if __name__ == "__main__":
    main()
