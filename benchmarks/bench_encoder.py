"""Speed and memory of the ONNX encoder for one model folder (default: ViT-B-32, random weights).

    .venv/bin/python benchmarks/bench_encoder.py                    # exports ViT-B-32 once (needs torch)
    .venv/bin/python benchmarks/bench_encoder.py --model DIR --json out.json

Speed does not depend on the weights, so a random-weight export measures the real model. Each
measurement runs in a fresh process, so load times are from a cold interpreter (warm file cache)
and peak RSS belongs to that scenario alone:

- text:  load the text tower alone (session + tokenizer), then texts/s (batches of 32 Flickr8k
         captions) and one-query latency (20 captions one by one)
- both:  load both towers (what a process that indexes and searches pays)
- image: load the image tower, then images/s on preprocessed pixels at batch 1, 8 and 32,
         and preprocessing (decode excluded) images/s on one thread
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _captions(n: int) -> list[str]:
    path = SHARED / "flickr8k" / "captions.tsv"
    if path.is_file():
        rows = path.read_text().splitlines()[1 : n + 1]
        return [r.split("\t")[2] for r in rows]
    return [f"a photo of a {w} on a sunny day number {i}" for i, w in enumerate(["cat", "dog", "car"] * n)][
        :n
    ]


def _photos(n: int):
    from PIL import Image

    folder = SHARED / "imagenet-sample"
    if folder.is_dir():
        from pixgrep.images.decode import open_image

        return [open_image(p) for p in sorted(folder.iterdir())[:n]]
    import numpy as np

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)) for _ in range(n)]


def _rate(fn, items_per_call: int, min_seconds: float = 3.0, min_calls: int = 3) -> float:
    fn()  # warm-up: ORT allocates its arenas on the first run
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < min_seconds:
        fn()
        calls += 1
    return calls * items_per_call / (time.perf_counter() - start)


def worker(mode: str, model: str) -> dict:
    import numpy as np

    from pixgrep.models import load_encoder

    start = time.perf_counter()
    enc = load_encoder(model)
    out: dict = {"mode": mode}
    if mode == "text":
        enc.tokenize([""])  # creates the text session and reads tokenizer.json
        out["load_s"] = time.perf_counter() - start
        captions = _captions(256)
        out["texts_per_s_batch32"] = _rate(
            lambda: [enc.encode_texts(captions[i : i + 32]) for i in range(0, 256, 32)], 256
        )
        t = time.perf_counter()
        for text in captions[:20]:
            enc.encode_texts([text])
        out["query_ms"] = (time.perf_counter() - t) / 20 * 1000
        # The same 20 queries at the full context length, interleaved with cut ones so that
        # machine load hits both alike: what cutting the padding saves (pixgrep exports only).
        session, name = enc.textual.session, next(iter(enc.textual.inputs))
        cut_s = full_s = 0.0
        for text in captions[:20]:
            ids = enc.tokenize([text])[name]
            full = np.zeros((1, int(enc.config.get("text_cfg", {}).get("context_length", 77))), ids.dtype)
            full[:, : ids.shape[1]] = ids
            for feed, slot in ((ids, "cut"), (full, "full")):
                t = time.perf_counter()
                session.run(None, {name: feed})
                if slot == "cut":
                    cut_s += time.perf_counter() - t
                else:
                    full_s += time.perf_counter() - t
        out["query_run_ms_cut"] = cut_s / 20 * 1000
        out["query_run_ms_full77"] = full_s / 20 * 1000
        out["towers"] = list(enc.towers_loaded)
    elif mode == "both":
        enc.tokenize([""])
        enc.visual  # noqa: B018
        out["load_s"] = time.perf_counter() - start
    elif mode == "image":
        enc.visual  # noqa: B018
        out["load_s"] = time.perf_counter() - start
        h, w = enc.preprocess_cfg.size
        for batch in (1, 8, 32):
            pixels = np.random.default_rng(0).standard_normal((batch, 3, h, w)).astype(np.float32)
            out[f"images_per_s_batch{batch}"] = _rate(lambda p=pixels: enc.encode_pixels(p), batch)
        photos = _photos(200)
        t = time.perf_counter()
        for photo in photos:
            enc.preprocess(photo)
        out["preprocess_per_s_1thread"] = len(photos) / (time.perf_counter() - t)
        out["towers"] = list(enc.towers_loaded)
    out["peak_rss_mb"] = _rss_mb()
    return out


def _machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import onnxruntime

    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu,
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gb": round(mem_gb, 1),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "load_average": os.getloadavg()[0],
    }


def _default_model(cache: Path) -> Path:
    dest = cache / "ViT-B-32-random"
    if not (dest / "config.json").is_file():
        import torch

        from pixgrep.lab.export import export_open_clip

        torch.set_num_threads(min(2, os.cpu_count() or 1))
        torch.manual_seed(0)
        print(f"exporting ViT-B-32 (random weights) to {dest} ...", file=sys.stderr)
        tmp = cache / ".ViT-B-32-random.partial"
        export_open_clip("ViT-B-32", None, tmp)
        os.replace(tmp, dest)
    return dest


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="model folder or registry name (default: ViT-B-32 random export)")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("PIXGREP_BENCH_CACHE", Path.home() / ".cache" / "pixgrep-bench")),
        help="where the default export is kept",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.model)))
        return 0

    model = args.model or str(_default_model(args.cache))
    results = {"model": model, "machine": _machine()}
    for mode in ("text", "both", "image"):
        run = subprocess.run(
            [sys.executable, __file__, "--worker", mode, "--model", model],
            capture_output=True,
            text=True,
            check=True,
        )
        results[mode] = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"{mode}: {results[mode]}", file=sys.stderr)
    results["machine"]["load_average_after"] = os.getloadavg()[0]

    t, b, i = results["text"], results["both"], results["image"]
    print(f"model: {model}")
    print(f"machine: {json.dumps(results['machine'])}")
    print("| measurement | value |\n|---|---|")
    print(f"| load text tower alone | {t['load_s']:.2f} s (peak RSS {t['peak_rss_mb']:.0f} MB, 256 texts) |")
    print(f"| load both towers | {b['load_s']:.2f} s (peak RSS {b['peak_rss_mb']:.0f} MB) |")
    print(f"| texts/s, batch 32 | {t['texts_per_s_batch32']:.0f} |")
    print(f"| one text query (tokenize + run) | {t['query_ms']:.1f} ms |")
    print(
        f"| text tower run, padding cut vs 77 positions (interleaved) | {t['query_run_ms_cut']:.1f} ms vs "
        f"{t['query_run_ms_full77']:.1f} ms |"
    )
    for batch in (1, 8, 32):
        print(f"| images/s, batch {batch} (encode only) | {i[f'images_per_s_batch{batch}']:.1f} |")
    print(f"| preprocess images/s, 1 thread | {i['preprocess_per_s_1thread']:.0f} |")
    print(f"| image process peak RSS (batch 32) | {i['peak_rss_mb']:.0f} MB |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
