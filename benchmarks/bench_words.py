"""OCR cost per picture and the share skipped as text-free (docs/words.md, docs/benchmarks.md).

    # 200 Flickr8k photos, and the screenshots and signs of tests/wordset.py
    .venv/bin/python benchmarks/bench_words.py ../shared/data/flickr8k/images --count 200
    .venv/bin/python tests/wordset.py ../shared/data/flickr8k /tmp/wordset
    .venv/bin/python benchmarks/bench_words.py /tmp/wordset/pictures --only 'Screenshot*' 'IMG_*'

One reader on one core (as each thread of an index run): decode at the OCR cap as indexing does,
then read. CPU seconds are this process's user + system time, so they hold on a busy machine;
wall seconds do not. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import resource
import statistics
import time
from pathlib import Path


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder")
    parser.add_argument("--count", type=int, default=0, help="the first N pictures by name (0: all)")
    parser.add_argument("--only", nargs="*", default=[], metavar="GLOB", help="only names matching")
    args = parser.parse_args()

    from pixgrep.images.decode import decode_file
    from pixgrep.images.ocr import OCR_MAX_SIDE, TextReader

    names = sorted(n for n in os.listdir(args.folder) if not n.startswith("."))
    if args.only:
        names = [n for n in names if any(fnmatch.fnmatch(n, glob) for glob in args.only)]
    if args.count:
        names = names[: args.count]
    reader = TextReader(threads=1)
    first = decode_file(Path(args.folder) / names[0], draft_size=OCR_MAX_SIDE)[0]
    started = time.perf_counter()
    reader.read(first)
    load = time.perf_counter() - started
    cpu, wall, text_free, with_text = [], [], 0, 0
    for name in names:
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        image = decode_file(Path(args.folder) / name, draft_size=OCR_MAX_SIDE)[0]
        page = reader.read(image)
        cpu.append(cpu_seconds() - cpu0)
        wall.append(time.perf_counter() - wall0)
        text_free += page.text_free
        with_text += bool(page.lines)
    print(
        json.dumps(
            {
                "folder": args.folder,
                "pictures": len(names),
                "engine_load_s": round(load, 3),
                "cpu_ms_mean": round(1000 * statistics.mean(cpu), 1),
                "cpu_ms_median": round(1000 * statistics.median(cpu), 1),
                "wall_ms_mean": round(1000 * statistics.mean(wall), 1),
                "text_free_share": round(text_free / len(names), 3),
                "with_text": with_text,
                "load_average": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
