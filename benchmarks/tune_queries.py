"""How allof.POWER / WHOLE_WEIGHT and tone.RANK were chosen: a grid on the Flickr8k *dev* split.

    python benchmarks/query_sets.py captions --out /tmp/sets --split dev
    python benchmarks/tune_queries.py --sets /tmp/sets --model pixgrep-mini

Prints text-to-image R@1 for each setting (plain search, all-of per power and whole weight, and
--ignore-tone per subspace rank). Text vectors are encoded once per distinct text.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "flickr8k"


def read_tsv(path: Path) -> list[tuple[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [(row["image"], row["caption"]) for row in csv.DictReader(handle, delimiter="\t")]


def r1(scores: np.ndarray, truth: np.ndarray) -> str:
    """R@1/R@5/R@10 (ties pessimistic, as pixgrep/metrics.py)."""
    best = scores[np.arange(len(truth)), truth]
    others = scores.copy()
    others[np.arange(len(truth)), truth] = -np.inf
    ranks = 1 + (others >= best[:, None]).sum(axis=1)
    return "/".join(f"{100 * np.mean(ranks <= k):.2f}" for k in (1, 5, 10))


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of the top 10 (by score rows) that two score matrices have in common."""
    top_a, top_b = np.argsort(-a, axis=1)[:, :10], np.argsort(-b, axis=1)[:, :10]
    return float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(top_a, top_b, strict=True)]))


def main() -> None:
    import pixgrep
    from pixgrep.eval.vectors import catalog_image_vectors
    from pixgrep.eval.zeroshot import encode_texts_batched
    from pixgrep.search import allof, tone

    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", required=True)
    parser.add_argument("--split", default="dev")
    parser.add_argument("--model", default="pixgrep-mini")
    parser.add_argument("--catalog", default=os.environ.get("PIXGREP_CATALOG"))
    parser.add_argument("--full", action="store_true", help="all 5000 single captions (default: half)")
    parser.add_argument("--images", type=int, help="only the queries of the first N images of the split")
    args = parser.parse_args()
    sets = {
        name: read_tsv(Path(args.sets) / f"flickr8k-{args.split}-{name}.tsv")
        for name in ("plain", "l3", "l5", "tone")
    }
    names = list(dict.fromkeys(image for image, _ in sets["plain"]))
    # every other single caption (2500 of 5000) keeps the encoding time down on a shared machine
    if args.images:  # the queries of the first N images only (all images stay in the pool)
        keep = set(names[: args.images])
        sets = {name: [r for r in rows if r[0] in keep] for name, rows in sets.items()}
    elif not args.full:
        sets["plain"], sets["tone"] = sets["plain"][::2], sets["tone"][::2]
    # "QUERY, sad, ugly, messy" for a sample of the single captions (top-10 overlap with "QUERY")
    sample = sets["plain"][:: max(1, len(sets["plain"]) // 500)][:500]
    sets["sum"] = [(image, f"{text.rstrip(' .')}, sad, ugly, messy") for image, text in sample]
    position = {n: i for i, n in enumerate(names)}
    with pixgrep.open_catalog(args.catalog, args.model) as catalog:
        encoder = catalog.encoder
        images = catalog_image_vectors(catalog, [DATA / "images"], [DATA / "images" / n for n in names])
        plans = {
            name: [
                allof.plan_parts(t, bool(c))
                for (_, t), c in zip(rows, encoder.cut_texts([t for _, t in rows]), strict=True)
            ]
            for name, rows in sets.items()
        }
        unique = list(
            dict.fromkeys(
                t
                for name, ps in plans.items()
                for p in ps
                for t in ([p.text] if name == "tone" else [p.text, *p.texts()])
            )
        )
        print(f"{len(unique)} distinct texts to encode")
        # Text vectors are cached beside the sets (a rerun on a busy machine skips the text tower).
        import hashlib

        key = hashlib.sha256("\n".join([encoder.model_id, *unique]).encode()).hexdigest()[:16]
        cache = Path(args.sets) / f"vectors-{key}.npy"
        if cache.exists():
            vectors = np.load(cache)
        else:
            vectors = encode_texts_batched(encoder, unique)
            np.save(cache, vectors)
        row = {t: i for i, t in enumerate(unique)}
        differences = tone._differences(encoder, tone.load_lexicon())
    stacked = np.concatenate(list(differences.values())).astype(np.float64)
    _, _, vt = np.linalg.svd(stacked, full_matrices=False)
    for rank in (4, 8, 12, 16, 24):
        space = tone.ToneSpace(vt[:rank].astype(np.float32), {})
        base = (
            vectors[[row[t.rstrip(" .")] if t.rstrip(" .") in row else row[t] for _, t in sample]] @ images.T
        )
        toned = space.project(vectors[[row[t] for _, t in sets["sum"]]]) @ images.T
        plain_toned = vectors[[row[t] for _, t in sets["sum"]]] @ images.T
        print(
            f"top-10 overlap with QUERY: 'QUERY, sad, ugly, messy' plain {overlap(plain_toned, base):.3f}, "
            f"--ignore-tone rank {rank} {overlap(toned, base):.3f}",
            flush=True,
        )
    for name, rows in sets.items():
        if name == "sum":
            continue
        truth = np.array([position[image] for image, _ in rows])
        plain = vectors[[row[t] for _, t in rows]] @ images.T
        line = [f"{name}: plain {r1(plain, truth)}"]
        if name != "tone":
            for power in (0.0, -0.5, -1.0, -2.0):
                for whole in (0.0, 1.0, 2.0):
                    allof.WHOLE_WEIGHT = whole
                    scores = np.stack(
                        [
                            allof.combine(vectors[[row[t] for t in p.texts()]] @ images.T, power, p.weights())
                            for p in plans[name]
                        ]
                    )
                    line.append(f"all p={power} w={whole} {r1(scores, truth)}")
        if name in ("plain", "tone"):
            stacked = np.concatenate(list(differences.values())).astype(np.float64)
            _, _, vt = np.linalg.svd(stacked, full_matrices=False)
            for rank in (1, 2, 4, 8, 12, 16, 24, 32):
                space = tone.ToneSpace(vt[:rank].astype(np.float32), {})
                projected = space.project(vectors[[row[t] for _, t in rows]]) @ images.T
                line.append(f"ignore-tone rank {rank} {r1(projected, truth)}")
        print("\n  ".join(line), flush=True)


if __name__ == "__main__":
    main()
