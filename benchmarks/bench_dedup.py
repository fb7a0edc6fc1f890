"""Duplicate folding on real photos: how many distinct photos fold together, how many planted
copies do, and the fingerprint distances behind the constants of images/fingerprint.py.

    .venv/bin/python benchmarks/bench_dedup.py --out /tmp/dedup [--photos 3000] [--planted 200]

Builds (outside the repository) a folder of the first N Flickr8k photos plus 4 copies of a seeded
sample of them (JPEG quality 60-95; resized 50-150 %; a 180 px quality-70 thumbnail; a crop of 90 %
of each side), indexes it with pixgrep-mini, then prints:
- for "a dog", "a man climbing a mountain", "children playing", "a person on a bike": results in
  the top 200, copies folded, and folds of distinct photos (a copy folded with another photo's copy);
- each original searched by its own picture: how many of its re-encoded, resized and thumbnail
  copies come back in one group, and whether the group shows its largest copy;
- the fingerprint distances (bits of the 256-bit hash, mean colour difference) of copy pairs by
  kind, and of distinct photo pairs that pixgrep-mini scores at a cosine of 0.6 or more.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FLICKR = ROOT.parent / "shared" / "data" / "flickr8k" / "images"
QUERIES = ("a dog", "a man climbing a mountain", "children playing", "a person on a bike")
KINDS = ("jpeg", "resize", "small", "crop")


def build(out: Path, photos: int, planted: int) -> dict[str, str]:
    """The folder of photos and copies; {copy name: original name}."""
    from PIL import Image

    folder = out / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(p.name for p in FLICKR.iterdir())[:photos]
    for name in names:
        shutil.copyfile(FLICKR / name, folder / name)
    rng = random.Random(7)
    origin = {}
    for name in sorted(rng.sample(names, planted)):
        with Image.open(FLICKR / name) as opened:
            image = opened.convert("RGB")
        stem = name.rsplit(".", 1)[0]
        scale = rng.uniform(0.5, 1.5)
        size = (round(image.width * scale), round(image.height * scale))
        small = image.copy()
        small.thumbnail((180, 180))
        w, h = round(image.width * 0.9), round(image.height * 0.9)
        left, top = rng.randint(0, image.width - w), rng.randint(0, image.height - h)
        made = {
            "jpeg": (image, rng.randint(60, 95)),
            "resize": (
                image.resize(size, Image.BICUBIC),
                90,
            ),
            "small": (small, 70),
            "crop": (image.crop((left, top, left + w, top + h)), 90),
        }
        for kind, (picture, quality) in made.items():
            picture.save(folder / f"{stem}-{kind}.jpg", "JPEG", quality=quality)
            origin[f"{stem}-{kind}.jpg"] = name
    return origin


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--photos", type=int, default=3000)
    parser.add_argument("--planted", type=int, default=200)
    args = parser.parse_args()

    import pixgrep
    from pixgrep.catalog.db import CatalogDB
    from pixgrep.catalog.fingerprints import fingerprints_of
    from pixgrep.images.fingerprint import HASH_BYTES

    origin = build(args.out, args.photos, args.planted)
    (args.out / "truth.json").write_text(json.dumps(origin))
    folder = args.out / "photos"
    source = lambda path: origin.get(Path(path).name, Path(path).name)  # noqa: E731
    with pixgrep.open_catalog(args.out / "catalog.db", model="pixgrep-mini") as catalog:
        catalog.index([folder], progress=True)
        for query in QUERIES:
            hits = catalog.search(query, k=200, roots=[str(folder)])
            folded = sum(len(h.duplicate_paths) for h in hits)
            wrong = sum(source(d) != source(h.path) for h in hits for d in h.duplicate_paths)
            print(f"{query!r}: {len(hits)} results, {folded} folded, {wrong} distinct photos folded")
        together = total = largest = 0
        for original in sorted(set(origin.values())):
            mine = {n for n, o in origin.items() if o == original and "-crop" not in n}
            hits = catalog.search([str(folder / original)], k=20, roots=[str(folder)])
            groups = [[h.path, *h.duplicate_paths] for h in hits]
            group = max(groups, key=lambda paths: len(mine & {Path(p).name for p in paths}))
            together += len(mine & {Path(p).name for p in group})
            total += len(mine)
            largest += group[0] == max(group, key=_pixels)
        print(f"planted copies (not crops) folded together: {together}/{total}; largest shown: {largest}")
        records = list(catalog.images_at([str(p) for p in folder.iterdir()]).values())
        vectors = catalog.vectors_of(records)
        records = [r for r in records if r.id in vectors]
    db = CatalogDB(args.out / "catalog.db")
    prints = fingerprints_of(db, [r.content_hash for r in records])
    db.close()
    names = [Path(r.path).name for r in records]
    index = {n: i for i, n in enumerate(names)}
    fp = np.stack([np.frombuffer(prints[r.content_hash], np.uint8) for r in records])
    bits = lambda a, b: np.unpackbits(fp[a, :HASH_BYTES] ^ fp[b, :HASH_BYTES], axis=-1).sum(-1)  # noqa: E731
    colour = lambda a, b: np.abs(fp[a, HASH_BYTES:].astype(int) - fp[b, HASH_BYTES:]).mean(-1)  # noqa: E731
    for kind in KINDS:
        pairs = [(index[o], index[c]) for c, o in origin.items() if c.endswith(f"-{kind}.jpg")]
        a, b = np.array(pairs).T
        apart = bits(a, b)
        print(
            f"original vs {kind:6s}: bits max {apart.max():3d} p99 {np.percentile(apart, 99):.1f}, "
            f"colour max {colour(a, b).max():.2f}"
        )
    matrix = np.stack([vectors[r.id] for r in records]).astype(np.float32)
    cosines = matrix @ matrix.T
    a, b = np.nonzero(np.triu(cosines >= 0.6, 1))
    distinct = np.array([source(names[i]) != source(names[j]) for i, j in zip(a, b, strict=True)])
    a, b = a[distinct], b[distinct]
    print(
        f"distinct pairs at cosine >= 0.6: {len(a)}; bits min {bits(a, b).min()}, "
        f"1st percentile {np.percentile(bits(a, b), 1):.0f}"
    )


def _pixels(path: str) -> int:
    from PIL import Image

    with Image.open(path) as image:
        return image.width * image.height


if __name__ == "__main__":
    main()
