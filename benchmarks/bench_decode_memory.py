"""Peak memory (RSS) of decoding huge images: `pixgrep index` on a 250-megapixel PNG and a
100-megapixel JPEG, and `pixgrep serve` answering three concurrent uploads of each.
Results are recorded in docs/reliability.md.

    .venv/bin/python benchmarks/bench_decode_memory.py --model MODEL_DIR [--src SRC_DIR]

`--src` picks the pixgrep source tree to measure (default: this checkout's src), so the same
command measures another branch. Each measurement is a fresh process; the numbers are its
peak resident set size (VmHWM) and, for the server, the
resident size left after the uploads (VmRSS), which shows whether memory was given back.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_files(folder: Path) -> dict[str, Path]:
    from PIL import Image, ImageDraw

    files = {}
    for name, size, fmt in (("png-250mpx", (20000, 12500), "PNG"), ("jpeg-100mpx", (12500, 8000), "JPEG")):
        path = folder / name / f"{name}.{fmt.lower()}"
        path.parent.mkdir(parents=True)
        image = Image.new("RGB", size, (40, 90, 160))
        pen = ImageDraw.Draw(image)
        for i in range(40):  # some structure, so the file is a picture and not one flat colour
            x, y = (i * 997) % size[0], (i * 631) % size[1]
            pen.ellipse((x, y, x + size[0] // 6, y + size[1] // 6), fill=(200, 60 + i * 4, 30))
        image.save(path, fmt, **({"compress_level": 6} if fmt == "PNG" else {"quality": 85}))
        del image, pen
        files[name] = path
    return files


def env_for(src: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PIXGREP_CATALOG", "PIXGREP_TOKEN")}
    env.update(PYTHONPATH=str(src), OMP_NUM_THREADS="1")
    return env


def index_peak(src: Path, model: str, folder: Path, catalog: Path) -> float:
    """Peak RSS in MB of one `pixgrep index` run (a fresh child process)."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork and exec.
    script = (
        "import sys\n"
        "from pixgrep.cli import main\n"
        "status = main(sys.argv[1:])\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "print(int(hwm.split()[1]) / 1024, file=sys.stderr)\n"
        "sys.exit(status)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "index", str(folder), "--catalog", str(catalog), "--model", model],
        capture_output=True,
        text=True,
        env=env_for(src),
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return float(done.stderr.strip().splitlines()[-1])


def _status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def server_peak(src: Path, model: str, upload: Path, catalog: Path, uploads: int = 3) -> tuple[float, float]:
    """(peak RSS, RSS after) in MB of `pixgrep serve` answering `uploads` concurrent uploads."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "pixgrep.cli", "serve", "--port", str(port), "--catalog", str(catalog)]
        + ["--model", model],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env_for(src),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                httpx.get(url + "/indices-list", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        data = upload.read_bytes()
        statuses: list[int] = []

        def send() -> None:
            response = httpx.post(url + "/api/search/image", files={"file": (upload.name, data)}, timeout=600)
            statuses.append(response.status_code)

        threads = [threading.Thread(target=send) for _ in range(uploads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        time.sleep(1.0)
        return _status_mb(server.pid, "VmHWM"), _status_mb(server.pid, "VmRSS")
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--src", type=Path, default=ROOT / "src")
    parser.add_argument("--files", type=Path, help="reuse the test files made by an earlier run here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.files and (args.files / "png-250mpx").exists():
            files = {p.parent.name: p for p in sorted(args.files.glob("*/*.*"))}
        else:
            files = make_files(args.files or Path(tmp))
        rows = {}
        for name, path in files.items():
            index = index_peak(args.src, args.model, path.parent, Path(tmp) / f"{name}.db")
            peak, after = server_peak(args.src, args.model, path, Path(tmp) / f"{name}.db")
            rows[name] = {
                "file_mb": round(path.stat().st_size / 1e6, 1),
                "index_peak_mb": round(index),
                "serve_3_uploads_peak_mb": round(peak),
                "serve_rss_after_mb": round(after),
            }
            print(name, json.dumps(rows[name]), flush=True)
    print("load:", os.getloadavg())


if __name__ == "__main__":
    main()
