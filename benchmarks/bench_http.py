"""Search latency through the HTTP API (`pixgrep serve`) on a large synthetic catalog.

    .venv/bin/python benchmarks/bench_http.py --model DIR [--rows 100000] [--queries 200]

It fills a catalog with `--rows` synthetic images (rows inserted directly: random unit vectors of
the model's size stored as float16, paths spread over 100 folders), starts the real command
`pixgrep serve` on a free local port in a subprocess, and times requests from one keep-alive
HTTP client (wall time from sending the request to having the parsed JSON):

  first       the first text search once the server answers (the warm-up that `serve` starts loads
              the text tower and builds the search matrix; this waits for what is left of it)
  text        GET /api/search?q=...&k=20: text tower + matrix search + metadata of 20 results
  text_scoped the same, scoped to one of the 100 folders
  like        GET /api/search?like=ID: "more like this" (stored vector, no model)
  refine      POST /api/search with [image id, text, rejected id]: the refine loop's request
  knn         POST /knn-service with text, num_images=20 (clip-retrieval's request)
  upload      POST /api/search/image with a 640x480 JPEG: image tower + search
  text_x4     text searches from 4 clients at once (latency per request, and requests/s)

`--model` is a model folder (or registry name) whose vectors the catalog is filled for, e.g. a
random-weight ViT-B-32 export: `pixgrep models export ViT-B-32 --pretrained none --out DIR`. Random
weights time exactly like trained ones. Search answers carry the server's own `took_ms` (terms
encoded, matrix searched, metadata read), reported beside the wall time as "search alone".
Prints one JSON object, and a Markdown table to stderr.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from synthetic_catalog import fill_catalog

WORDS = (
    "a dog on a beach|a red car in the rain|two children playing football|a kitten behind a corner|"
    "mountains at sunset|a bowl of ramen|an old church in the snow|a man riding a horse|"
    "city lights at night|a boat on a lake|a birthday cake with candles|a black and white portrait"
).split("|")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_client(base: str):
    import httpx

    return httpx.Client(base_url=base, timeout=120)


def percentiles(samples: list[float]) -> dict:
    ms = sorted(s * 1000 for s in samples)
    pick = lambda q: ms[min(len(ms) - 1, int(round(q * (len(ms) - 1))))]
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 1),
        "p95_ms": round(pick(0.95), 1),
        "max_ms": round(ms[-1], 1),
    }


SERVER_TIMES: dict[str, list[float]] = {}  # took_ms reported by the server, per kind


def timed(call, kind: str | None = None) -> float:
    started = time.perf_counter()
    response = call()
    response.raise_for_status()
    body = response.json()
    elapsed = time.perf_counter() - started
    if kind and isinstance(body, dict) and "took_ms" in body:
        SERVER_TIMES.setdefault(kind, []).append(body["took_ms"] / 1000)
    return elapsed


def server_memory(pid: int) -> dict[str, float]:
    """The server's resident memory now and at its peak (Linux /proc), in MB."""
    found = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":")
                found["rss_now" if name == "VmRSS" else "rss_peak"] = round(int(value.split()[0]) / 1024, 1)
    except OSError:
        pass
    return found


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="model folder or registry name")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200, help="requests per kind (upload: a quarter)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the catalog goes (default: temp)")
    parser.add_argument(
        "--catalog",
        type=Path,
        help="search this existing catalog instead of filling one (e.g. bench_ann.py's realistic "
        "1M catalog; uniform random vectors say nothing about an ANN index); --rows is then its size",
    )
    parser.add_argument("--no-dedup", action="store_true", help="search with dedup=false")
    parser.add_argument("--root", default="/bench/photos", help="folder of the catalog's d000..d099 folders")
    args = parser.parse_args()

    import httpx
    from PIL import Image

    from pixgrep.models import load_encoder

    encoder = load_encoder(args.model)
    model_id, dim = encoder.model_id, encoder.dim
    del encoder
    load_before = os.getloadavg()
    started = time.perf_counter()
    if args.catalog:
        db_path = args.catalog
    else:
        work = Path(args.workdir or tempfile.mkdtemp(prefix="pixgrep-bench-http-"))
        work.mkdir(parents=True, exist_ok=True)
        db_path = work / f"catalog-{args.rows}.db"
        for stale in (db_path, Path(str(db_path) + "-wal"), Path(str(db_path) + "-shm")):
            stale.unlink(missing_ok=True)
        fill_catalog(db_path, args.rows, model_id, dim, folder=args.root)
    fill_s = time.perf_counter() - started

    port = free_port()
    pixgrep = Path(sys.executable).with_name("pixgrep")
    command = [str(pixgrep), "serve", "--catalog", str(db_path), "--model", args.model, "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    results: dict = {}
    try:
        client = http_client(base)
        started = time.perf_counter()
        while True:
            try:
                client.get("/api/stats").raise_for_status()
                break
            except httpx.TransportError:
                if server.poll() is not None or time.perf_counter() - started > 120:
                    raise SystemExit(f"server did not start: {server.stderr.read()}") from None
                time.sleep(0.1)
        startup_s = time.perf_counter() - started

        n = args.queries
        query = lambda i: f"{WORDS[i % len(WORDS)]} {i}"  # distinct texts: nothing is cached
        ids = np.random.default_rng(1).integers(1, args.rows + 1, size=n)

        def measure(name: str, request, count: int = n) -> None:
            results[name] = percentiles([timed(lambda i=i: request(i), name) for i in range(count)])
            if name in SERVER_TIMES:  # the search alone, as the server timed it (no HTTP, no JSON)
                inside = percentiles(SERVER_TIMES[name])
                results[name].update(search_p50_ms=inside["p50_ms"], search_p95_ms=inside["p95_ms"])

        def search(**params):
            extra = {"dedup": "false"} if args.no_dedup else {}
            return client.get("/api/search", params={"k": 20, **extra, **params})

        def refine(i: int):
            terms = [
                {"kind": "image_id", "value": int(ids[i])},
                {"kind": "text", "value": f"in red {i}"},
                {"kind": "image_id", "value": int(ids[(i + 1) % n]), "weight": -0.5},
            ]
            return client.post("/api/search", json={"terms": terms, "k": 20})

        def knn(i: int):
            body = {"text": query(i), "num_images": 20, "modality": "image", "indice_name": "pixgrep"}
            return client.post("/knn-service", json=body)

        buffer = io.BytesIO()
        pixels = np.random.default_rng(2).integers(0, 255, (480, 640, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
        photo = buffer.getvalue()

        measure("first", lambda i: search(q="warm up"), 1)
        measure("text", lambda i: search(q=query(i)))
        measure("text_scoped", lambda i: search(q=query(n + i), root=f"{args.root}/d{i % 100:03d}"))
        measure("like", lambda i: search(like=int(ids[i])))
        measure("refine", refine)
        measure("knn", knn)
        upload = lambda i: client.post("/api/search/image", files={"file": ("q.jpg", photo)}, data={"k": 20})
        measure("upload", upload, max(1, n // 4))

        def worker(offset: int) -> list[float]:
            with http_client(base) as own:
                return [
                    timed(lambda i=i: own.get("/api/search", params={"q": query(i), "k": 20}))
                    for i in range(offset, offset + n // 4)
                ]

        started = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            samples = [s for chunk in pool.map(worker, range(0, n, n // 4)) for s in chunk]
        wall = time.perf_counter() - started
        results["text_x4"] = dict(percentiles(samples), requests_per_s=round(len(samples) / wall, 1))
        client.close()
        results["server_memory_mb"] = server_memory(server.pid)
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()

    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "model": args.model,
        "model_id": model_id,
        "dim": dim,
        "rows": args.rows,
        "fill_catalog_s": round(fill_s, 1),
        # The machine may be shared: its load says how much the numbers are worth.
        "load_average_before_after": [round(load_before[0], 1), round(os.getloadavg()[0], 1)],
        "server_ready_s": round(startup_s, 2),
        "latency": results,
        "dedup": not args.no_dedup,
    }
    print(json.dumps(report, indent=2))
    print(
        "| request | p50 ms | p95 ms | search alone p50 / p95 ms | n |\n|---|---|---|---|---|",
        file=sys.stderr,
    )
    for name, row in results.items():
        if "p50_ms" not in row:  # server_memory_mb
            continue
        inside = f"{row['search_p50_ms']} / {row['search_p95_ms']}" if "search_p50_ms" in row else ""
        print(f"| {name} | {row['p50_ms']} | {row['p95_ms']} | {inside} | {row['n']} |", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
