"""Deterministic builders (and scorers) of the test sets of detailed queries, tone and
near-duplicates, written outside the repository.

    python benchmarks/query_sets.py captions --out /tmp/sets [--split test]
        flickr8k-<split>-l3.tsv   one query per image: 3 of its captions (seeded choice) joined
        flickr8k-<split>-l5.tsv   one query per image: all 5 captions joined
        flickr8k-<split>-tone.tsv every caption with 2-3 seeded tone words appended ("..., sad, ugly")
        flickr8k-<split>-plain.tsv every caption as it is (the same protocol as captions.tsv)
    python benchmarks/query_sets.py duplicates --out /tmp/dups --model pixgrep-mini
        200 seeded test images, 3 altered copies each (JPEG quality 60-95, resize 50-150 %, crop to
        90 %), and each original's nearest distinct neighbour among the Flickr8k test and dev images
        (by image vector), plus
        truth.json (the true groups)
    python benchmarks/query_sets.py score-duplicates --truth /tmp/dups/truth.json --found groups.json
        pairwise precision and recall of `pixgrep duplicates --json` output against the truth
    python benchmarks/query_sets.py cosines --truth /tmp/dups/truth.json --model pixgrep-mini
        image-image cosines of true copies vs nearest distinct neighbours (to choose the threshold)
    python benchmarks/query_sets.py overlap --split test --model pixgrep-mini [--sample 500]
        mean top-10 overlap of "QUERY, sad, ugly, messy" with --ignore-tone vs "QUERY"

Flickr8k is read from ../shared/data/flickr8k (or --data). The captions are joined as sentences
("A dog runs. A dog plays in the snow."), so the part splitter sees each caption as one sentence.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "flickr8k"
SEED = 13


def read_captions(data: Path, split: str) -> dict[str, list[str]]:
    names = [line.strip() for line in (data / f"{split}.txt").read_text().splitlines() if line.strip()]
    wanted = set(names)
    captions: dict[str, list[tuple[int, str]]] = {name: [] for name in names}
    with open(data / "captions.tsv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if row["image"] in wanted:
                captions[row["image"]].append((int(row["index"]), row["caption"]))
    return {name: [c for _, c in sorted(rows)] for name, rows in captions.items()}


def sentence(caption: str) -> str:
    text = " ".join(caption.split()).rstrip(" .")
    return text[:1].upper() + text[1:]


def tone_lexicon() -> list[str]:
    from pixgrep.search.tone import load_lexicon

    return load_lexicon()


def write_tsv(path: Path, rows: list[tuple[str, str]]) -> None:
    with open(path, "w", encoding="utf-8") as out:
        out.write("image\tcaption\n")
        for image, caption in rows:
            out.write(f"{image}\t{caption}\n")
    print(f"{path}: {len(rows)} queries")


def build_captions(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    captions = read_captions(Path(args.data), args.split)
    rng = random.Random(SEED)
    l3, l5, plain, toned = [], [], [], []
    words = tone_lexicon()
    for name, caps in captions.items():
        chosen = sorted(rng.sample(range(len(caps)), 3))
        l3.append((name, ". ".join(sentence(caps[i]) for i in chosen) + "."))
        l5.append((name, ". ".join(sentence(c) for c in caps) + "."))
        for caption in caps:
            plain.append((name, caption))
            tones = rng.sample(words, rng.choice((2, 3)))
            toned.append((name, sentence(caption) + ", " + ", ".join(tones)))
    prefix = f"flickr8k-{args.split}"
    write_tsv(out / f"{prefix}-l3.tsv", l3)
    write_tsv(out / f"{prefix}-l5.tsv", l5)
    write_tsv(out / f"{prefix}-plain.tsv", plain)
    write_tsv(out / f"{prefix}-tone.tsv", toned)


def _alter(source: Path, target_stem: Path, kind: str, rng: random.Random) -> Path:
    from PIL import Image

    with Image.open(source) as opened:
        image = opened.convert("RGB")
    if kind == "jpeg":
        quality = rng.randint(60, 95)
    elif kind == "resize":
        scale = rng.uniform(0.5, 1.5)
        image = image.resize((max(8, round(image.width * scale)), max(8, round(image.height * scale))))
        quality = 90
    else:  # crop to 90 % of each side, at a seeded position
        w, h = round(image.width * 0.9), round(image.height * 0.9)
        left, top = rng.randint(0, image.width - w), rng.randint(0, image.height - h)
        image = image.crop((left, top, left + w, top + h))
        quality = 90
    target = target_stem.with_name(f"{target_stem.name}-{kind}.jpg")
    image.save(target, "JPEG", quality=quality)
    return target


def build_duplicates(args: argparse.Namespace) -> None:
    import shutil

    import numpy as np

    import pixgrep
    from pixgrep.lab.eval.vectors import catalog_image_vectors

    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    test = [line.strip() for line in (data / "test.txt").read_text().splitlines() if line.strip()]
    rng = random.Random(SEED)
    originals = sorted(rng.sample(test, args.count))
    dev = [line.strip() for line in (data / "dev.txt").read_text().splitlines() if line.strip()]
    everything = sorted(set(test) | set(dev))
    # Nearest distinct neighbour of each original among the test and dev images, by image vector
    # (the 2000 images the evaluations index anyway; all 8091 take half an hour on a busy machine).
    with pixgrep.open_catalog(args.catalog, args.model) as catalog:
        paths = [data / "images" / n for n in everything]
        vectors = catalog_image_vectors(catalog, paths, paths, progress=True)
    names = everything
    index = {n: i for i, n in enumerate(names)}
    chosen = set(originals)
    groups, singles = [], []
    for name in originals:
        scores = vectors @ vectors[index[name]]
        for j in np.argsort(-scores):
            neighbour = names[int(j)]
            if neighbour != name and neighbour not in chosen:
                break
        chosen.add(neighbour)
        shutil.copyfile(data / "images" / name, out / name)
        stem = out / Path(name).stem
        copies = [_alter(data / "images" / name, stem, kind, rng).name for kind in ("jpeg", "resize", "crop")]
        groups.append([name, *copies])
        shutil.copyfile(data / "images" / neighbour, out / neighbour)
        singles.append(neighbour)
    (out / "truth.json").write_text(json.dumps({"groups": groups, "singles": singles}, indent=1))
    print(f"{out}: {len(groups)} groups of 4, {len(singles)} nearest distinct neighbours")


def _pairs(groups: list[list[str]]) -> set[tuple[str, str]]:
    pairs = set()
    for group in groups:
        names = sorted(os.path.basename(p) for p in group)
        pairs.update((a, b) for i, a in enumerate(names) for b in names[i + 1 :])
    return pairs


def score_duplicates(args: argparse.Namespace) -> None:
    truth = _pairs(json.loads(Path(args.truth).read_text())["groups"])
    found_groups = []
    for line in Path(args.found).read_text().splitlines():
        if line.strip():
            found_groups.append([row["path"] for row in json.loads(line)["images"]])
    found = _pairs(found_groups)
    hits = len(truth & found)
    result = {
        "true_pairs": len(truth),
        "found_pairs": len(found),
        "recall": round(hits / len(truth), 4) if truth else None,
        "precision": round(hits / len(found), 4) if found else None,
    }
    print(json.dumps(result))


def cosines(args: argparse.Namespace) -> None:
    import numpy as np

    import pixgrep
    from pixgrep.lab.eval.vectors import catalog_image_vectors

    truth = json.loads(Path(args.truth).read_text())
    folder = Path(args.truth).parent
    names = sorted({n for group in truth["groups"] for n in group} | set(truth["singles"]))
    with pixgrep.open_catalog(args.catalog, args.model) as catalog:
        paths = [folder / n for n in names]
        vectors = dict(zip(names, catalog_image_vectors(catalog, paths, paths, progress=True), strict=True))
    same: dict[str, list[float]] = {"jpeg": [], "resize": [], "crop": []}
    distinct = []
    for group, neighbour in zip(truth["groups"], truth["singles"], strict=True):
        original = vectors[group[0]]
        for copy in group[1:]:
            same[copy.rsplit("-", 1)[1][:-4]].append(float(original @ vectors[copy]))
        distinct.append(float(original @ vectors[neighbour]))
    for kind, values in same.items():
        low, median = np.percentile(values, 1), np.median(values)
        print(f"copy {kind:6s} min {min(values):.4f}  p1 {low:.4f}  median {median:.4f}")
    high, median = np.percentile(distinct, 99), np.median(distinct)
    print(f"distinct neighbour  max {max(distinct):.4f}  p99 {high:.4f}  median {median:.4f}")


def overlap(args: argparse.Namespace) -> None:
    import pixgrep

    captions = read_captions(Path(args.data), args.split)
    rng = random.Random(SEED)
    queries = rng.sample([sentence(c) for caps in captions.values() for c in caps], args.sample)
    folder = Path(args.data) / "images"
    paths = [str(folder / name) for name in captions]
    with pixgrep.open_catalog(args.catalog, args.model) as catalog:
        catalog.index(paths, progress=True)
        total = {"plain": 0.0, "ignore_tone": 0.0}
        for query in queries:
            base = {r.path for r in catalog.search(query, k=10, dedup=False)}
            toned = f"{query}, sad, ugly, messy"
            for mode, ignore in (("plain", False), ("ignore_tone", True)):
                got = {r.path for r in catalog.search(toned, k=10, ignore_tone=ignore, dedup=False)}
                total[mode] += len(got & base) / 10
    print(
        json.dumps(
            {mode: round(value / len(queries), 4) for mode, value in total.items()}
            | {"queries": len(queries)}
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, func in (
        ("captions", build_captions),
        ("duplicates", build_duplicates),
        ("score-duplicates", score_duplicates),
        ("cosines", cosines),
        ("overlap", overlap),
    ):
        sub = commands.add_parser(name)
        sub.set_defaults(func=func)
        sub.add_argument("--data", default=str(DATA), help="the flickr8k folder")
        sub.add_argument("--out", help="output folder (outside the repository)")
        sub.add_argument("--split", default="test")
        sub.add_argument("--model", default="pixgrep-mini")
        sub.add_argument("--catalog", default=os.environ.get("PIXGREP_CATALOG"))
        sub.add_argument("--count", type=int, default=200)
        sub.add_argument("--sample", type=int, default=500)
        sub.add_argument("--truth")
        sub.add_argument("--found")
    args = parser.parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
