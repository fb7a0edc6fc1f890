"""Indexing speed, JPEG draft quality, int8 cost. Results: docs/catalog.md, docs/benchmarks.md.

    # images/s of `index` vs the encoder alone on the same preprocessed batches (models interleaved)
    .venv/bin/python benchmarks/bench_index.py throughput --model /tmp/vitb32 /tmp/vitb32@int8 \\
        --images ../shared/data/flickr8k/images --count 1000
    # the same on 300 phone-sized photos made from them
    .venv/bin/python benchmarks/bench_index.py throughput --model /tmp/vitb32@int8 --count 300 --big 2000x1500

    # int8 vs float32: cosine and top-10 agreement on Flickr8k test photos and captions
    .venv/bin/python benchmarks/bench_index.py cost --model pixgrep-mini

    # cosine between draft-decoded and fully decoded photos, per draft size
    .venv/bin/python benchmarks/bench_index.py draft --photos ../shared/data/exif-samples

`--model` takes anything `--model` does (registry name or folder); for `draft`, the default
"lite0" is the pretrained EfficientNet-Lite0 image tower of pixgrep-mini (its pooled features),
which needs the `mini` extra: draft quality needs trained weights, random ones would say nothing.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _encoder(name: str):
    """`--model` value; a "+spin" suffix: that model with ONNX Runtime's thread spinning left on."""
    if name == "lite0":
        return _Lite0Features()
    from pixgrep.models import load_encoder

    spin = name.endswith("+spin")
    encoder = load_encoder(name.removesuffix("+spin"))
    encoder.visual_spinning = spin
    return encoder


class _Lite0Features:
    """Pretrained EfficientNet-Lite0 pooled features behind the Encoder methods the pipeline uses."""

    model_id = "lite0-features"
    dim = 1280

    def __init__(self) -> None:
        import torch

        from pixgrep.lab.mini.features import load_image_tower
        from pixgrep.models.mini.spec import IMAGE_TOWERS
        from pixgrep.models.preprocess import PreprocessConfig

        torch.set_num_threads(2)
        self.torch = torch
        self.net = load_image_tower("lite0")
        self.cfg = PreprocessConfig.from_dict(IMAGE_TOWERS["lite0"]["preprocess"])
        self.image_size = self.cfg.size

    def preprocess(self, image):
        from pixgrep.models.preprocess import preprocess

        return preprocess(image, self.cfg)

    def preprocess_for_index(self, image):
        from pixgrep.models.preprocess import preprocess

        return preprocess(image, self.cfg, crop_while_resizing=True)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            out = self.net(self.torch.from_numpy(np.ascontiguousarray(pixels))).numpy()
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def _machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = float("nan")
    return f"{platform.machine()}, {cores} cores, {mem:.0f} GB, Python {platform.python_version()}"


def _big_photos(sources: list[Path], folder: Path, size: tuple[int, int]) -> None:
    """Phone-sized JPEGs (default 2000x1500) made from real photos, so decoding costs what it costs
    on a real library: upscaled with bicubic, saved at quality 90 with 4:2:0 chroma, as cameras do."""
    from PIL import Image

    for src in sources:
        with Image.open(src) as im:
            im.convert("RGB").resize(size, Image.Resampling.BICUBIC).save(
                folder / src.name, quality=90, subsampling=2
            )


def throughput(args: argparse.Namespace) -> dict:
    """Per round and per model (interleaved, so a busy machine hits each model alike): the encoder
    alone on preprocessed batches, then a full `index_roots` run of the same files."""
    from pixgrep.catalog import ingest
    from pixgrep.catalog.db import CatalogDB
    from pixgrep.catalog.ingest import DRAFT_FACTOR, index_roots
    from pixgrep.images.decode import decode_file

    sources = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    sources = sources[: args.count]
    if len(sources) < args.count:
        sys.exit(f"only {len(sources)} JPEGs in {args.images}")
    encoders = {name: _encoder(name) for name in args.model}
    first = next(iter(encoders.values()))
    draft = DRAFT_FACTOR * max(first.image_size)
    work = Path(tempfile.mkdtemp(prefix="pixgrep-bench-index-"))
    try:
        photos = work / "photos"
        photos.mkdir()
        if args.big:
            width, height = (int(x) for x in args.big.split("x"))
            _big_photos(sources, photos, (width, height))
        else:
            for src in sources:
                shutil.copy(src, photos / src.name)

        # Decode + preprocess alone, on the thread pool the indexer uses: the work to be hidden.
        threads = max(1, min(8, os.cpu_count() or 1))
        started, cpu = time.perf_counter(), time.process_time()
        with ThreadPoolExecutor(threads) as pool:
            pixels = list(
                pool.map(
                    lambda p: first.preprocess_for_index(decode_file(p, draft_size=draft)[0]),
                    sorted(photos.iterdir()),
                )
            )
        decode_rate = len(pixels) / (time.perf_counter() - started)
        decode_cpu = (time.process_time() - cpu) / len(pixels)
        batches = [np.stack(pixels[i : i + args.batch_size]) for i in range(0, len(pixels), args.batch_size)]
        for encoder in encoders.values():
            encoder.encode_pixels(batches[0])  # load the session and warm it up, outside the clock

        rounds = []
        for attempt in range(args.rounds):
            for name, encoder in encoders.items():
                load = os.getloadavg()[0]
                started, cpu = time.perf_counter(), time.process_time()
                for batch in batches:
                    encoder.encode_pixels(batch)
                encode_rate = len(pixels) / (time.perf_counter() - started)
                encode_cpu = (time.process_time() - cpu) / len(pixels)
                row = {
                    "model": name,
                    "load_average": round(load, 1),
                    "encoder_only_images_per_s": round(encode_rate, 2),
                    "encoder_only_cpu_ms_per_image": round(1000 * encode_cpu, 1),
                }
                for nice in args.niceness or [ingest.DECODE_NICENESS]:
                    ingest.DECODE_NICENESS = nice
                    catalog = work / f"catalog{attempt}-{len(rounds)}-{nice}.db"
                    db = CatalogDB(catalog)
                    started, cpu = time.perf_counter(), time.process_time()
                    summary = index_roots(db, encoder, [photos], batch_size=args.batch_size)
                    index_rate = summary.encoded / (time.perf_counter() - started)
                    index_cpu = (time.process_time() - cpu) / summary.encoded
                    db.close()
                    assert summary.encoded == len(pixels), summary
                    row[f"index_images_per_s_nice{nice}"] = round(index_rate, 2)
                    row[f"ratio_nice{nice}"] = round(index_rate / encode_rate, 3)
                    # CPU time is far less sensitive to other jobs on the machine than wall time: the
                    # share of the index run's CPU that the model itself needs
                    row[f"index_cpu_ms_per_image_nice{nice}"] = round(1000 * index_cpu, 1)
                    row[f"cpu_ratio_nice{nice}"] = round(encode_cpu / index_cpu, 3)
                row["load_average_after"] = round(os.getloadavg()[0], 1)
                rounds.append(row)
                print(json.dumps(rounds[-1]), file=sys.stderr)
        return {
            "benchmark": "throughput",
            "models": args.model,
            "images": len(pixels),
            "photo_size": args.big or "as in the folder",
            "batch_size": args.batch_size,
            "decode_threads": threads,
            "draft_size": draft,
            "decode_preprocess_images_per_s": round(decode_rate, 1),
            "decode_preprocess_cpu_ms_per_image": round(1000 * decode_cpu, 1),
            "rounds": rounds,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": _machine(),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def cost(args: argparse.Namespace) -> dict:
    """int8 vs float32 on real Flickr8k test photos and captions: cosine (min / mean) and top-10
    agreement of every caption's search over the photos (models/quantize.cost_figures)."""
    import csv

    from pixgrep.catalog.ingest import DRAFT_FACTOR
    from pixgrep.images.decode import decode_file
    from pixgrep.models.quantize import cost_figures

    data = Path(args.flickr)
    names = (data / "test.txt").read_text().split()[: args.count]
    wanted = set(names)
    with open(data / "captions.tsv", newline="") as f:
        captions = [row["caption"] for row in csv.DictReader(f, delimiter="\t") if row["image"] in wanted]
    f32, q8 = _encoder(args.model), _encoder(args.variant or f"{args.model}@int8")
    draft = DRAFT_FACTOR * max(f32.image_size)
    pixels = np.stack([f32.preprocess(decode_file(data / "images" / n, draft_size=draft)[0]) for n in names])

    def run(encoder):
        images = np.concatenate(
            [encoder.encode_pixels(pixels[i : i + 32]) for i in range(0, len(pixels), 32)]
        )
        return images, encoder.encode_texts(captions)

    (img_f, txt_f), (img_q, txt_q) = run(f32), run(q8)
    return {
        "benchmark": "cost",
        "model": f32.model_id,
        "variant": q8.model_id,
        "images": len(names),
        "queries": len(captions),
        **cost_figures(img_f, img_q, txt_f, txt_q),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average": round(os.getloadavg()[0], 1),
        "machine": _machine(),
    }


def _draft_photos(folder: Path, min_side: int, work: Path) -> list[Path]:
    """Real photos big enough for a draft to matter: JPEGs as they are, HEIC/HEIF re-saved as JPEG."""
    from PIL import Image

    from pixgrep.images.decode import ImageDecodeError, decode_file, read_image_info

    photos = []
    for path in sorted(folder.rglob("*")):
        suffix = path.suffix.lower()
        try:
            if suffix in (".jpg", ".jpeg"):
                info = read_image_info(path)
                with Image.open(path) as im:
                    if im.format != "JPEG":
                        continue
                if min(info.width, info.height) >= min_side:
                    photos.append(path)
            elif suffix in (".heic", ".heif"):
                image, _ = decode_file(path)
                if min(image.size) >= min_side:
                    out = work / (path.stem + "-from-heif.jpg")
                    image.convert("RGB").save(out, quality=92)
                    photos.append(out)
        except ImageDecodeError:
            continue
    return photos


def draft(args: argparse.Namespace) -> dict:
    from pixgrep.images.decode import decode_file

    encoder = _encoder(args.model)
    side = max(encoder.image_size)
    work = Path(tempfile.mkdtemp(prefix="pixgrep-bench-draft-"))
    try:
        photos = _draft_photos(Path(args.photos), 2 * side, work)  # smaller ones never draft
        if not photos:
            sys.exit(f"no JPEG under {args.photos} with a shorter side >= {2 * side}")

        def vectors(draft_size):
            # the reference: a full decode, open_clip's preprocessing; a draft: what the indexer does
            prepare = encoder.preprocess_for_index if draft_size else encoder.preprocess
            started = time.perf_counter()
            pixels = [prepare(decode_file(p, draft_size=draft_size)[0]) for p in photos]
            seconds = time.perf_counter() - started
            out = np.concatenate(
                [encoder.encode_pixels(np.stack(pixels[i : i + 16])) for i in range(0, len(pixels), 16)]
            )
            return out, seconds

        results = {}
        for kind in args.formats:
            if kind == "png":  # the same photos, lossless: measures the box reduction used for non-JPEG
                from PIL import Image

                pngs = []
                for path in photos:
                    with Image.open(path) as im:
                        im.save(work / (path.stem + ".png"))  # keeps EXIF (orientation) via info
                    pngs.append(work / (path.stem + ".png"))
                photos = pngs
            full, full_seconds = vectors(None)
            rows = []
            for factor in args.factors:
                got, seconds = vectors(int(round(factor * side)))
                cos = np.sum(got * full, axis=1)
                rows.append(
                    {
                        "factor": factor,
                        "draft_size": int(round(factor * side)),
                        "cosine_mean": round(float(cos.mean()), 5),
                        "cosine_min": round(float(cos.min()), 5),
                        "decode_preprocess_ms": round(1000 * seconds / len(photos), 1),
                    }
                )
                print(kind, json.dumps(rows[-1]), file=sys.stderr)
            results[kind] = {
                "full_decode_preprocess_ms": round(1000 * full_seconds / len(photos), 1),
                "rows": rows,
            }
        return {
            "benchmark": "draft",
            "model": args.model,
            "model_side": side,
            "photos": len(photos),
            **results,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": _machine(),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def float16(args: argparse.Namespace) -> dict:
    """Top-10 of real text queries over real photos: float32 vectors vs the catalog's float16 storage."""
    import csv

    from pixgrep.catalog.db import blob_to_vector, vector_to_blob
    from pixgrep.catalog.ingest import DRAFT_FACTOR
    from pixgrep.images.decode import decode_file

    data = Path(args.flickr)
    names = (data / "test.txt").read_text().split()
    captions = []
    with open(data / "captions.tsv", newline="") as f:
        wanted = set(names)
        captions = [row["caption"] for row in csv.DictReader(f, delimiter="\t") if row["image"] in wanted]
    encoder = _encoder(args.model)
    draft = DRAFT_FACTOR * max(encoder.image_size)
    pixels = [encoder.preprocess(decode_file(data / "images" / n, draft_size=draft)[0]) for n in names]
    images = np.concatenate(
        [encoder.encode_pixels(np.stack(pixels[i : i + 32])) for i in range(0, len(pixels), 32)]
    )
    stored = np.stack([blob_to_vector(vector_to_blob(v)).astype(np.float32) for v in images])
    texts = np.concatenate(
        [encoder.encode_texts(captions[i : i + 256]) for i in range(0, len(captions), 256)]
    )
    k = 10
    exact_scores, stored_scores = texts @ images.T, texts @ stored.T
    top32 = np.argsort(-exact_scores, axis=1, kind="stable")[:, :k]
    top16 = np.argsort(-stored_scores, axis=1, kind="stable")[:, :k]
    same_order = float(np.mean(np.all(top32 == top16, axis=1)))
    same_set = float(np.mean([set(a) == set(b) for a, b in zip(top32, top16, strict=True)]))
    # a swap is only possible between near-ties: the float32 score gap between the two images that
    # float16 put in a different order (first position where the lists differ)
    swaps = [i for i in range(len(captions)) if not np.array_equal(top32[i], top16[i])]
    gaps = []
    for i in swaps:
        j = int(np.argmax(top32[i] != top16[i]))
        gaps.append(float(abs(exact_scores[i, top32[i][j]] - exact_scores[i, top16[i][j]])))
    return {
        "benchmark": "float16",
        "model": args.model,
        "images": len(names),
        "queries": len(captions),
        "k": k,
        "same_top10_in_order": round(same_order, 5),
        "same_top10_set": round(same_set, 5),
        "queries_with_a_swap": len(swaps),
        "largest_float32_gap_of_a_swapped_pair": max(gaps) if gaps else None,
        "max_abs_score_error": float(np.max(np.abs(exact_scores - stored_scores))),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": _machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    tp = sub.add_parser("throughput", help="index images/s vs the encoder alone")
    tp.add_argument("--model", required=True, nargs="+", help="one or more models, run interleaved")
    tp.add_argument("--images", default=str(ROOT.parent / "shared" / "data" / "flickr8k" / "images"))
    tp.add_argument("--count", type=int, default=1000)
    tp.add_argument("--big", metavar="WxH", help="index WxH JPEGs made from the images (e.g. 2000x1500)")
    tp.add_argument("--batch-size", type=int, default=32)
    tp.add_argument("--rounds", type=int, default=2)
    tp.add_argument(
        "--niceness",
        type=int,
        nargs="+",
        default=None,
        help="decode thread niceness values to compare (default: the shipped one)",
    )
    dr = sub.add_parser("draft", help="cosine between draft and full decodes")
    dr.add_argument("--model", default="lite0")
    dr.add_argument("--photos", default=str(ROOT.parent / "shared" / "data" / "exif-samples"))
    dr.add_argument("--factors", type=float, nargs="+", default=[1.0, 1.5, 2.0, 3.0])
    dr.add_argument("--formats", nargs="+", choices=["jpeg", "png"], default=["jpeg", "png"])
    fp = sub.add_parser("float16", help="top-10 ranking with float16 storage vs float32")
    fp.add_argument("--model", default="pixgrep-mini")
    fp.add_argument("--flickr", default=str(ROOT.parent / "shared" / "data" / "flickr8k"))
    cp = sub.add_parser("cost", help="int8 vs float32: cosine and top-10 agreement on Flickr8k test")
    cp.add_argument("--model", default="pixgrep-mini")
    cp.add_argument("--variant", help="the int8 folder (default: MODEL@int8)")
    cp.add_argument("--count", type=int, default=1000)
    cp.add_argument("--flickr", default=str(ROOT.parent / "shared" / "data" / "flickr8k"))
    args = parser.parse_args()
    result = {"throughput": throughput, "draft": draft, "float16": float16, "cost": cost}[args.what](args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
