"""Query cost of a Combiner (numpy, the query-time path): one image + text pair at a time.

    python benchmarks/bench_combiner.py [--combiner FILE] [--seconds S] [--repeats R]

Each repeat times `--seconds` of rounds of 50 single-pair calls and keeps the median round; the
result is the median (and range) of the repeats, printed with the load average before and after,
as `uptime` shows it. For comparison it also times numpy's einsum loop (the path without
threadpoolctl) and one pair through threaded BLAS products (`x @ W.T`, what the batch path uses),
which the one-thread matrix-vector path of a query avoids.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np

from pixgrep.models.combiner import SHIPPED_MINI, Combiner, load_combiner


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _median_round(call: Callable[[], object], seconds: float) -> tuple[float, float]:
    """Median (wall, CPU) milliseconds per call over rounds of 50 calls for about `seconds`. CPU time
    is this thread's: on a shared machine the wall time also counts waiting for a core."""
    wall, cpu = [], []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(wall) < 3:
        start, start_cpu = time.perf_counter(), time.thread_time()
        for _ in range(50):
            call()
        wall.append((time.perf_counter() - start) / 50 * 1000)
        cpu.append((time.thread_time() - start_cpu) / 50 * 1000)
    return float(np.median(wall)), float(np.median(cpu))


def _blas_forward(combiner: Combiner, image: np.ndarray, text: np.ndarray) -> np.ndarray:
    """The same forward with every product through `@` (BLAS, its default thread count)."""
    w = combiner.weights
    t = np.maximum(text @ w["text_proj_w"].T + w["text_proj_b"], 0)
    i = np.maximum(image @ w["image_proj_w"].T + w["image_proj_b"], 0)
    joint = np.concatenate([t, i], axis=1)
    hidden = np.maximum(joint @ w["hidden_w"].T + w["hidden_b"], 0)
    gate = np.maximum(joint @ w["lambda_w1"].T + w["lambda_b1"], 0) @ w["lambda_w2"].T + w["lambda_b2"]
    lam = 1 / (1 + np.exp(-gate))
    out = hidden @ w["out_w"].T + w["out_b"] + lam * text + (1 - lam) * image
    return out / np.linalg.norm(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--combiner", default=str(SHIPPED_MINI))
    parser.add_argument("--seconds", type=float, default=2.0, help="per repeat (default: 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (default: 5)")
    args = parser.parse_args()
    before = _load()
    combiner = load_combiner(args.combiner)
    rng = np.random.default_rng(0)
    image, text = rng.normal(size=(2, 1, combiner.dim)).astype(np.float32)
    image, text = image / np.linalg.norm(image), text / np.linalg.norm(text)
    for _ in range(20):
        combiner.combine(image, text)
        _blas_forward(combiner, image, text)
    runs = [_median_round(lambda: combiner.combine(image, text), args.seconds) for _ in range(args.repeats)]
    wall, cpu = [r[0] for r in runs], [r[1] for r in runs]
    blas = [
        _median_round(lambda: _blas_forward(combiner, image, text), args.seconds / 2)[0] for _ in range(3)
    ]
    einsum = [
        _median_round(lambda: combiner._layers(image, text, "einsum"), args.seconds / 2) for _ in range(3)
    ]
    stored = combiner.meta.get("storage", "float32")
    print(
        f"combiner {combiner.model_id} (stored {stored}, computed in "
        f"{next(iter(combiner.weights.values())).dtype}): {np.median(wall):.3f} ms per query (wall), "
        f"median of {args.repeats} repeats (range {min(wall):.3f} - {max(wall):.3f}); CPU time "
        f"{np.median(cpu):.3f} ms; numpy einsum instead (no threadpoolctl): "
        f"{np.median([e[0] for e in einsum]):.3f} ms wall, {np.median([e[1] for e in einsum]):.3f} ms CPU; "
        f"one pair through threaded BLAS products {np.median(blas):.3f} ms (wall)"
    )
    print(
        f"load average {before} before, {_load()} after (1, 5, 15 min); {os.cpu_count()} cores, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )


if __name__ == "__main__":
    main()
