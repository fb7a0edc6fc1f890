"""Photo metadata costs: reading it from real files, and filtering a big catalog by it.

    .venv/bin/python benchmarks/bench_metadata.py read      # exif-samples: headers + sidecars per file
    .venv/bin/python benchmarks/bench_metadata.py filter --rows 100000
    .venv/bin/python benchmarks/bench_metadata.py mask --rows 1000000     # the row mask alone

`filter` fills a synthetic catalog (synthetic_catalog.py) plus photo_meta/photo_keywords rows (a
quarter with GPS around four cities, ten cameras, one keyword in ten), then times, per filter, the
allowed-id query, the row mask over the search matrix, a filtered top-10 and a newest-first
listing. `mask` times VectorMatrix.mask_of_ids over a synthetic id array (a shuffled base plus a
5% journal tail) against concatenating the ids and np.isin. Prints the load average beside every
number (the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).parent))


def load() -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def bench_read() -> None:
    import warnings

    from pixgrep.images.sidecar import read_photo_meta

    warnings.simplefilter("ignore")
    files = [p for p in sorted((ROOT.parent / "shared/data/exif-samples").rglob("*")) if p.is_file()]
    started = time.perf_counter()
    for path in files:
        read_photo_meta(str(path))
    seconds = time.perf_counter() - started
    print(f"read {len(files)} files in {seconds:.2f} s: {1000 * seconds / len(files):.1f} ms/file ({load()})")


def bench_filter(rows: int) -> None:
    from synthetic_catalog import fill_catalog

    from pixgrep.catalog.db import CatalogDB
    from pixgrep.catalog.metadata import MetaFilter, matching_ids
    from pixgrep.search.listing import list_images
    from pixgrep.search.matrix_store import load_matrix
    from pixgrep.search.scope import Scope
    from pixgrep.search.topk import top

    folder = tempfile.mkdtemp(prefix="pixgrep-bench-meta-")
    path = Path(folder) / "c.db"
    fill_catalog(path, rows, "bench", 512, folder=folder)
    db = CatalogDB(path)
    rng = np.random.default_rng(1)
    cities = [(43.77, 11.25), (48.85, 2.35), (40.42, -3.70), (60.17, 24.94)]
    cameras = [("Canon", f"EOS {n}D") for n in range(5)] + [("NIKON", f"D{n}00") for n in range(5)]
    with db.conn:
        for image_id in range(1, rows + 1):
            lat = lon = None
            if image_id % 4 == 0:
                lat, lon = cities[(image_id // 4) % 4]
                lat, lon = lat + rng.normal(0, 0.05), lon + rng.normal(0, 0.05)
            make, model = cameras[image_id % 10]
            db.conn.execute(
                "INSERT INTO photo_meta (image_id, source, latitude, longitude, make, model, city, country, "
                "placed, read_at) VALUES (?, '', ?, ?, ?, ?, ?, ?, 1, 0)",
                (
                    image_id,
                    lat,
                    lon,
                    make,
                    model,
                    "Florence" if lat and lat < 44 else None,
                    "Italy" if lat and lat < 44 else None,
                ),
            )
            if image_id % 10 == 0:
                db.conn.execute("INSERT INTO photo_keywords VALUES (?, 'holiday', 'holiday')", (image_id,))
    matrix = load_matrix(db, "bench")
    query = rng.standard_normal(512).astype(np.float32)
    query /= np.linalg.norm(query)
    print(f"{rows} images, {matrix.rows} matrix rows ({load()})")
    for label, meta in (
        ("--near 43.77,11.25,10", MetaFilter(near=(43.77, 11.25, 10.0))),
        ("--camera canon", MetaFilter(camera="canon")),
        ("--tag holiday", MetaFilter(tag="holiday")),
        ("--place italy", MetaFilter(place="italy")),
    ):
        times = {}
        for _ in range(3):
            t0 = time.perf_counter()
            allowed = matching_ids(db, meta)
            t1 = time.perf_counter()
            matrix.mask_of_ids(allowed)  # timed apart: the mask top() builds from the ids
            t2 = time.perf_counter()
            top(matrix, query, 10, Scope(allowed=frozenset(allowed)))
            t3 = time.perf_counter()
            list_images(db, Scope(allowed=frozenset(allowed)), k=10)
            t4 = time.perf_counter()
            for name, value in (("ids", t1 - t0), ("mask", t2 - t1), ("top10", t3 - t2), ("list", t4 - t3)):
                times[name] = min(times.get(name, 1e9), value)
        assert allowed is not None
        print(
            f"{label:<24} {len(allowed):>7} allowed: ids {1000 * times['ids']:.1f} ms, mask "
            f"{1000 * times['mask']:.1f} ms, filtered top-10 {1000 * times['top10']:.1f} ms, "
            f"listing {1000 * times['list']:.1f} ms (best of 3; {load()})"
        )
    db.close()


def bench_mask(rows: int) -> None:
    import types

    from pixgrep.search.matrix import VectorMatrix

    rng = np.random.default_rng(0)
    tail = rows // 20
    base_ids = rng.permutation(rows).astype("<i8") + 1
    base = types.SimpleNamespace(rows=rows, ids=base_ids, id_order=np.argsort(base_ids, kind="stable"))
    view = VectorMatrix.__new__(VectorMatrix)
    view.base, view.tail_ids, view._ids = base, np.arange(rows + 1, rows + tail + 1, dtype="<i8"), None
    assert len(view.ids) == rows + tail  # derived once per view, as a server's first query does
    for share in (0.005, 0.05, 0.5):
        allowed = {int(i) for i in rng.choice(rows + tail, int(share * rows), replace=False) + 1}

        def isin(allowed=allowed) -> np.ndarray:
            ids = np.concatenate([base.ids, view.tail_ids])
            return np.isin(ids, np.fromiter(allowed, np.int64, len(allowed)))

        best = {}
        for name, run in (("isin", isin), ("mask", lambda allowed=allowed: view.mask_of_ids(allowed))):
            for _ in range(3):
                started = time.perf_counter()
                run()
                best[name] = min(best.get(name, 1e9), time.perf_counter() - started)
        print(
            f"{len(allowed):>7} allowed of {rows + tail} rows: concatenate + np.isin "
            f"{1000 * best['isin']:.1f} ms, mask_of_ids {1000 * best['mask']:.1f} ms (best of 3; {load()})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=("read", "filter", "mask"))
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    if args.what == "read":
        bench_read()
    elif args.what == "mask":
        bench_mask(args.rows)
    else:
        bench_filter(args.rows)


if __name__ == "__main__":
    main()
