"""`pixgrep index --ray` on a real Ray cluster on this machine: 1 vs 2 worker nodes, and the
per-node and per-image overheads (recorded in docs/distributed.md).

    .venv/bin/python benchmarks/bench_ray.py --model pixgrep-mini \\
        --images ../shared/data/flickr8k/images --count 400

Measured, each into a fresh catalog over the same files:
  local      `index` without Ray (the baseline)
  ray-1      a head (no CPU) + 1 worker node of 1 CPU
  ray-2      the same cluster with a second worker node
  overhead   a Ray Data pass over the same number of items through an actor that returns vectors
             of the model's size without reading a file: what Ray itself costs per image
             (scheduling, serialising a path in and a vector out, the driver's commit excluded)
For each run: wall time, time to the first committed batch (connect + actor start + model load),
and the steady rate after it. Node start-up is timed as `ray start` until the GCS lists the node.
This machine has 2 cores shared by every process: two worker nodes cannot be twice as fast here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))


class DummyActor:
    """Returns a vector of `dim` zeros per path: Ray's own cost per image, no file, no model."""

    def __init__(self, dim: int):
        self.dim = dim

    def __call__(self, batch: dict) -> dict:
        n = len(batch["path"])
        return {"path": batch["path"], "vector": np.zeros((n, self.dim), np.float32)}


def timed_index(catalog: Path, model: str, folder: Path, ray: str | bool, batch: int) -> dict:
    import pixgrep

    marks: list[tuple[float, int]] = []
    started = time.monotonic()
    with pixgrep.open_catalog(catalog, model) as cat:
        cat.encoder.dim  # noqa: B018 (load the config before the clock matters)
        summary = cat.index(
            [folder],
            ray=ray,
            batch_size=batch,
            progress=lambda s: marks.append((time.monotonic(), s.encoded)),
        )
    wall = time.monotonic() - started
    first_t, first_n = marks[0] if marks else (started, 0)
    last_t, last_n = marks[-1] if marks else (started, 0)
    steady = (last_n - first_n) / (last_t - first_t) if last_t > first_t else 0.0
    return {
        "encoded": summary.encoded,
        "wall_s": round(wall, 1),
        "first_batch_s": round(first_t - started, 1),
        "steady_images_per_s": round(steady, 1),
        "overall_images_per_s": round(summary.encoded / wall, 1),
        "load": round(os.getloadavg()[0], 1),
    }


def ray_overhead(address: str, count: int, dim: int, batch: int) -> dict:
    import ray

    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        items = [{"path": f"/data/photos/{i:08}.jpg"} for i in range(count)]

        def run(items: list[dict]) -> float:
            started = time.monotonic()
            dataset = ray.data.from_items(items, override_num_blocks=max(2, len(items) // batch))
            out = dataset.map_batches(
                DummyActor,
                fn_constructor_kwargs={"dim": dim},
                batch_size=batch,
                concurrency=2,
                num_cpus=0.5,
                batch_format="numpy",
            )
            rows = sum(len(b["path"]) for b in out.iter_batches(batch_size=None, batch_format="numpy"))
            assert rows == len(items)
            return time.monotonic() - started

        # A run of count // 10 items and one of `count`: the difference removes the fixed start-up
        # (actors, executor) and leaves the cost per item.
        few = items[: max(batch, count // 10)]
        small = run(few)
        full = run(items)
        per_image_ms = (full - small) / (len(items) - len(few)) * 1000
        return {
            "items": count,
            "run_small_s": round(small, 2),
            "run_full_s": round(full, 2),
            "ray_ms_per_image": round(per_image_ms, 2),
            "vector_bytes": dim * 4,
        }
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="pixgrep-mini")
    parser.add_argument(
        "--images", type=Path, default=ROOT.parent / "shared" / "data" / "flickr8k" / "images"
    )
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    from raycluster import Cluster

    from pixgrep.models import load_encoder

    dim = load_encoder(args.model).dim
    work = Path(tempfile.mkdtemp(prefix="pixgrep-bench-ray-"))
    folder = work / "photos"
    folder.mkdir()
    for path in sorted(args.images.glob("*.jpg"))[: args.count]:
        os.symlink(path.resolve(), folder / path.name)
    report: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "model": args.model}
    report["count"] = len(list(folder.iterdir()))
    cluster = None
    try:
        report["local"] = timed_index(work / "local.db", args.model, folder, False, args.batch)
        env = {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "benchmarks")])}
        started = time.monotonic()
        cluster = Cluster(workers=0, env=env)
        report["head_start_s"] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        cluster.add_worker()
        report["worker_start_s"] = round(time.monotonic() - started, 1)
        report["ray-1"] = timed_index(work / "ray1.db", args.model, folder, cluster.address, args.batch)
        cluster.add_worker()
        report["ray-2"] = timed_index(work / "ray2.db", args.model, folder, cluster.address, args.batch)
        report["overhead"] = ray_overhead(cluster.address, 2000, dim, args.batch)
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
