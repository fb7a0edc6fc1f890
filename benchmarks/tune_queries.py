"""How allof.POWER / WHOLE_WEIGHT and tone.RANK were chosen: a grid on the Flickr8k *dev* split.

    python benchmarks/query_sets.py captions --out /tmp/sets --split dev
    python benchmarks/tune_queries.py --sets /tmp/sets --model pixgrep-mini

Prints text-to-image R@1 for each setting (plain search, all-of per power and whole weight, and
--ignore-tone per subspace rank). Text vectors are encoded once per distinct text.
"""

from __future__ import annotations

import argparse
import csv
import itertools
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
    from pixgrep.lab.eval.vectors import catalog_image_vectors
    from pixgrep.search import allof, tone
    from pixgrep.tagging.zeroshot import encode_texts_batched

    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", required=True)
    parser.add_argument("--split", default="dev")
    parser.add_argument("--model", default="pixgrep-mini")
    parser.add_argument("--catalog", default=os.environ.get("PIXGREP_CATALOG"))
    parser.add_argument("--full", action="store_true", help="all 5000 single captions (default: half)")
    parser.add_argument("--images", type=int, help="only the queries of the first N images of the split")
    parser.add_argument("--grid", choices=("tone", "allof", "all", "chosen"), default="all")
    parser.add_argument("--data", default=str(DATA), help="the flickr8k folder")
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
        folder = Path(args.data) / "images"
        images = catalog_image_vectors(catalog, [folder], [folder / n for n in names])
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
        lexicon = tone.load_lexicon()
        word_vectors = np.asarray(encoder.encode_texts(lexicon), np.float64)
    stacked = np.concatenate(list(differences.values())).astype(np.float64)
    _, _, vt = np.linalg.svd(stacked, full_matrices=False)
    _, _, wt = np.linalg.svd(word_vectors, full_matrices=False)
    subspaces = {f"templates rank {r}": vt[:r] for r in (1, 2, 4, 8)}
    subspaces |= {f"words rank {r}": wt[:r] for r in (1, 2, 4, 8)}
    subspaces["none"] = vt[:0]
    if args.grid == "chosen":  # the shipped constants only (the test split is measured once)
        subspaces = {f"shipped rank {tone.RANK}": vt[: tone.RANK], "none": vt[:0]}
    stripped = {t: tone.strip_tone_items(t) for _, t in [*sets["plain"], *sets["tone"], *sets["sum"]]}
    missing = [t for t in dict.fromkeys(stripped.values()) if t not in row]
    if missing:  # tone-stripped texts not encoded above
        with pixgrep.open_catalog(args.catalog, args.model) as catalog:
            extra = encode_texts_batched(catalog.encoder, missing)
        row |= {t: len(vectors) + i for i, t in enumerate(missing)}
        vectors = np.concatenate([vectors, extra])
    if args.grid in ("tone", "all", "chosen"):
        tone_grid(sets, sample, vectors, row, images, position, subspaces, stripped)
    if args.grid in ("allof", "all"):
        allof_grid(sets, plans, vectors, row, images, position)
    if args.grid == "chosen":
        shipped = [(allof.MIN_PARTS, allof.POWER, allof.WHOLE_WEIGHT, allof.CAP)]
        allof_grid(sets, plans, vectors, row, images, position, shipped)


def tone_grid(sets, sample, vectors, row, images, position, subspaces, stripped) -> None:
    """--ignore-tone variants: with or without the tone-only list items dropped, per subspace."""
    from pixgrep.search import tone

    base = vectors[[row[t.rstrip(" .")] if t.rstrip(" .") in row else row[t] for _, t in sample]] @ images.T
    for strip in (False, True):
        for name, basis in subspaces.items():
            space = tone.ToneSpace(basis.astype(np.float32), {})
            project = space.project if len(basis) else (lambda v: v)
            line = [f"strip={strip} {name}:"]
            texts = [stripped[t] if strip else t for _, t in sets["sum"]]
            toned = project(vectors[[row[t] for t in texts]]) @ images.T
            line.append(f"overlap {overlap(toned, base):.3f}")
            for set_name in ("plain", "tone"):
                rows = sets[set_name]
                truth = np.array([position[image] for image, _ in rows])
                texts = [stripped.get(t, t) if strip else t for _, t in rows]
                scores = project(vectors[[row[t] for t in texts]]) @ images.T
                line.append(f"{set_name} {r1(scores, truth)}")
            print(" ".join(line), flush=True)


def allof_grid(sets, plans, vectors, row, images, position, settings=None) -> None:
    """R@1/5/10 of all-of per (fewest parts, power, whole weight, cap) on single and detailed queries."""
    from pixgrep.search import allof

    for name in ("plain", "l3", "l5"):
        rows = sets[name]
        truth = np.array([position[image] for image, _ in rows])
        print(f"{name}: plain {r1(vectors[[row[t] for _, t in rows]] @ images.T, truth)}", flush=True)
    grid = itertools.product((2, 3, 4), (0.0, -0.25, -0.5, -1.0), (1.0, 2.0, 4.0), (2.0, 3.0, 4.0, np.inf))
    for min_parts, power, whole, cap in settings or grid:
        allof.WHOLE_WEIGHT = whole
        line = [f"min_parts={min_parts} p={power} w={whole} cap={cap}:"]
        for name in ("plain", "l3", "l5"):
            rows = sets[name]
            truth = np.array([position[image] for image, _ in rows])
            out = np.empty((len(rows), len(images)), np.float32)
            for i, plan in enumerate(plans[name]):
                texts = plan.texts() if len(plan.parts) >= min_parts else [plan.text]
                weights = plan.weights() if len(plan.parts) >= min_parts else None
                out[i] = allof.combine(vectors[[row[t] for t in texts]] @ images.T, power, weights, cap)
            line.append(f"{name} {r1(out, truth)}")
        print(" ".join(line), flush=True)


if __name__ == "__main__":
    main()
