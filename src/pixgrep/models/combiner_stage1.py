"""CLIP4Cir's stage 1 for pixgrep-mini, measured: fine-tune the text head with the sum combiner.

Stage 1 of CLIP4Cir (Baldrati et al.) fine-tunes the text encoder so that normalise(image + text)
lands on the target image; stage 2 then trains the Combiner over the fine-tuned text vectors. For
pixgrep-mini the one cheap text-side part is its text head (a linear layer over frozen
all-MiniLM-L6-v2 features), so stage 1 here trains a copy of that head, starting from the shipped
one, on Flickr8k-CIR train triplets; the image side stays the catalog's vectors. Everything runs on
cached frozen-tower features (`pixgrep train mini`'s cache), so the experiment takes minutes:

    python -m pixgrep.models.combiner_stage1 --cir /tmp/flickr8k-cir --flickr ../shared/data/flickr8k \
        --cache-dir $PIXGREP_CACHE/mini-features --text-cache /tmp/flickr8k-cir-texts \
        --lr 1e-4 3e-4 --seeds 0 1 2

prints, for dev and test, R@1/5/10/50 (mean over the seeds) of the sum and the Combiner with the
shipped text head and with each stage-1 head (docs/quality.md has the numbers). This module is an
experiment, not used at query time: the stage-1 head is not shipped (it did not help,
docs/composed.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from pixgrep.eval.composed import CirFeatures, composed_recalls, query_vectors

SPLITS = ("train", "dev", "test")


@dataclass
class Stage1Config:
    seed: int = 0
    lr: float = 1e-4
    weight_decay: float = 0.0
    dropout: float = 0.1  # on the frozen MiniLM features
    batch_size: int = 256
    epochs: int = 40
    patience: int = 5
    logit_scale: float = 100.0


@dataclass
class SplitData:
    """One Flickr8k-CIR split on frozen features: the gallery's unit image vectors (g, 512), the
    modification texts' MiniLM features (n, 384), reference and target gallery rows."""

    gallery: np.ndarray
    minilm: np.ndarray
    reference: np.ndarray
    target: np.ndarray

    def features(self, text_weight: np.ndarray, text_bias: np.ndarray) -> CirFeatures:
        """CirFeatures with the texts through one text head (unit vectors, as the ONNX graph gives)."""
        return CirFeatures(
            self.gallery, _unit(self.minilm @ text_weight.T + text_bias), self.reference, self.target
        )


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def _minilm_features(texts: Sequence[str], cache: Path) -> np.ndarray:
    """MiniLM features of the modification texts, encoded once (keyed by the texts' digest)."""
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = cache / f"cir-texts-{digest}.npy"
    if path.exists():
        return np.load(path)
    from pixgrep.models.mini.features import encode_texts_torch, load_text_tower

    feats = encode_texts_torch(load_text_tower(), texts)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, feats)
    tmp.replace(path)
    return feats


def load_splits(
    cir_dir: Path, flickr: Path, cache_dir: Path, text_cache: Path, heads: dict[str, Any]
) -> dict[str, SplitData]:
    """The three Flickr8k-CIR splits on the cached Lite0 features through the shipped image head."""
    from pixgrep.eval.cir import read_cir
    from pixgrep.models.mini.features import ensure_features

    feats = ensure_features(flickr, cache_dir)
    row = {str(n): i for i, n in enumerate(feats["lite0"]["names"])}
    out: dict[str, SplitData] = {}
    for split in SPLITS:
        data = read_cir(cir_dir / "captions" / f"cap.rc2.{split}.json", flickr / "images")
        names = [data.paths[name].name for name in data.gallery]
        lite0 = feats["lite0"]["feats"][[row[n] for n in names]]
        gallery = _unit(lite0 @ heads["image_weight"].T + heads["image_bias"])
        pos = {name: i for i, name in enumerate(data.gallery)}
        triplets = [t for t in data.triplets if t.target is not None]
        out[split] = SplitData(
            gallery=gallery,
            minilm=_minilm_features([t.text for t in triplets], text_cache),
            reference=np.asarray([pos[t.reference] for t in triplets], np.int64),
            target=np.asarray([pos[str(t.target)] for t in triplets], np.int64),
        )
    return out


def _score(recalls: dict[str, float]) -> float:
    return float(np.mean([recalls[f"R@{k}"] for k in (1, 5, 10, 50)]))


def train_text_head(
    train: SplitData,
    dev: SplitData,
    weight: np.ndarray,
    bias: np.ndarray,
    cfg: Stage1Config,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Fine-tune a copy of the text head so that normalise(image + text) finds the target (the sum
    combiner of stage 1); the best dev epoch (mean sum R@1/5/10/50) is kept. Returns
    {"weight", "bias", "epoch", "dev"}; epoch 0 means the shipped head was never beaten."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    w = torch.nn.Parameter(torch.from_numpy(weight.copy()))
    b = torch.nn.Parameter(torch.from_numpy(bias.copy()))
    opt = torch.optim.AdamW([w, b], lr=cfg.lr, weight_decay=cfg.weight_decay)
    minilm = torch.from_numpy(train.minilm)
    reference = torch.from_numpy(train.gallery[train.reference])
    target = torch.from_numpy(train.gallery[train.target])

    def dev_recalls() -> dict[str, float]:
        feats = dev.features(w.detach().numpy(), b.detach().numpy())
        return composed_recalls(feats, query_vectors(feats, "sum"))

    first = dev_recalls()
    best: dict[str, Any] = {"score": _score(first), "epoch": 0, "dev": first, "weight": weight, "bias": bias}
    start = time.time()
    for epoch in range(1, cfg.epochs + 1):
        order = rng.permutation(len(train.reference))
        total = 0.0
        for s in range(0, len(order), cfg.batch_size):
            idx = torch.from_numpy(order[s : s + cfg.batch_size])
            if len(idx) < 2:
                continue
            text = F.normalize(F.dropout(minilm[idx], cfg.dropout, True) @ w.T + b, dim=-1)
            query = F.normalize(reference[idx] + text, dim=-1)
            loss = F.cross_entropy(cfg.logit_scale * query @ target[idx].T, torch.arange(len(idx)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        recalls = dev_recalls()
        if _score(recalls) > best["score"]:
            best = {
                "score": _score(recalls),
                "epoch": epoch,
                "dev": recalls,
                "weight": w.detach().numpy().copy(),
                "bias": b.detach().numpy().copy(),
            }
        log(
            f"stage 1 epoch {epoch:3d}  loss {total / len(order):.3f}  dev sum R@1/5/10/50 "
            + " / ".join(f"{recalls[f'R@{k}']:.1f}" for k in (1, 5, 10, 50))
            + f"  (best {best['score']:.2f} @ {best['epoch']})  {time.time() - start:.0f}s"
        )
        if epoch - best["epoch"] >= cfg.patience:
            break
    return best


def run(
    cir_dir: Path,
    flickr: Path,
    cache_dir: Path,
    text_cache: Path,
    stage1: Sequence[Stage1Config],
    seeds: Sequence[int] = (0,),
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Stage 2 alone (the shipped text head) against stage 1 + stage 2, per stage-1 setting and seed
    (a seed seeds both stages). Returns {setting: {"runs": [per seed {split: {fusion: R@K}}],
    "mean": {split: {fusion: R@K}}}}; a setting is to be chosen on dev (mean of the Combiner's R@K)."""
    import torch

    from pixgrep.models.combiner import SHIPPED_MINI, Combiner, load_combiner
    from pixgrep.models.combiner_train import CombinerConfig, train_combiner
    from pixgrep.models.mini.train import load_heads

    heads = load_heads()
    splits = load_splits(cir_dir, flickr, cache_dir, text_cache, heads)
    torch.set_num_threads(1)  # as `pixgrep train combiner`: reproducible for a seed
    w, b = heads["text_weight"], heads["text_bias"]

    def table(weight: np.ndarray, bias: np.ndarray, combiner: Combiner) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for split in ("dev", "test"):
            feats = splits[split].features(weight, bias)
            out[split] = {
                "sum": composed_recalls(feats, query_vectors(feats, "sum")),
                "combiner": composed_recalls(feats, query_vectors(feats, "combiner", combiner)),
            }
        return out

    def stage2(weight: np.ndarray, bias: np.ndarray, seed: int) -> Combiner:
        train, dev = splits["train"].features(weight, bias), splits["dev"].features(weight, bias)
        result = train_combiner(train, dev, CombinerConfig(seed=seed), log=log)
        return Combiner(result["weights"], {"model_id": "stage1-experiment", "epoch": result["epoch"]})

    results: dict[str, Any] = {"shipped combiner": {"runs": [table(w, b, load_combiner(SHIPPED_MINI))]}}
    results["stage 2 only"] = {"runs": [table(w, b, stage2(w, b, seed)) for seed in seeds]}
    for cfg in stage1:
        runs = []
        for seed in seeds:
            head = train_text_head(splits["train"], splits["dev"], w, b, replace(cfg, seed=seed), log=log)
            run = table(head["weight"], head["bias"], stage2(head["weight"], head["bias"], seed))
            run["stage1_epoch"] = head["epoch"]
            runs.append(run)
        results[f"stage 1 lr {cfg.lr:g} + stage 2"] = {"runs": runs, "config": asdict(cfg)}
    for row in results.values():
        row["mean"] = {
            split: {
                fusion: {
                    k: float(np.mean([r[split][fusion][k] for r in row["runs"]]))
                    for k in row["runs"][0][split][fusion]
                }
                for fusion in ("sum", "combiner")
            }
            for split in ("dev", "test")
        }
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cir", type=Path, required=True, help="Flickr8k-CIR folder (pixgrep eval make-cir)")
    parser.add_argument("--flickr", type=Path, required=True, help="the Flickr8k folder")
    parser.add_argument("--cache-dir", type=Path, required=True, help="`pixgrep train mini`'s feature cache")
    parser.add_argument(
        "--text-cache", type=Path, required=True, help="folder for the modification texts' MiniLM features"
    )
    parser.add_argument(
        "--lr", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3], help="stage-1 rates to try"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of both stages")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    configs = [replace(Stage1Config(), lr=lr) for lr in args.lr]
    results = run(
        args.cir,
        args.flickr,
        args.cache_dir,
        args.text_cache,
        configs,
        args.seeds,
        log=lambda line: print(line, file=sys.stderr),
    )
    print(f"R@1 / R@5 / R@10 / R@50, mean over seeds {args.seeds} (the shipped combiner: its one file)")
    for name, row in results.items():
        for split in ("dev", "test"):
            for fusion, r in row["mean"][split].items():
                cells = " / ".join(f"{r[f'R@{k}']:.1f}" for k in (1, 5, 10, 50))
                mean = np.mean([r[f"R@{k}"] for k in (1, 5, 10, 50)])
                print(f"{name:26} {split:5} {fusion:9} {cells}   (mean {mean:.2f})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
