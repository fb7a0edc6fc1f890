"""Train a Combiner (CLIP4Cir stage 2) on frozen features; the only module that imports torch for it.

The loss is the paper's: each combined query against the batch's target image vectors, cross
entropy over cosine logits at a fixed scale (100). AdamW, a seeded shuffle, and early stopping on
the dev split's mean Recall@1/5/10/50 (the best epoch is kept). The result is plain float32 arrays
in the layout of pixgrep.models.combiner, which runs them in numpy at query time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pixgrep.lab.eval.composed import CirFeatures, composed_recalls


@dataclass
class CombinerConfig:
    seed: int = 0
    projection: int = 512
    hidden: int = 1024
    lambda_hidden: int = 256
    dropout: float = 0.5
    batch_size: int = 256
    lr: float = 2e-4
    weight_decay: float = 0.01
    epochs: int = 20
    patience: int = 5  # epochs without a better dev score before stopping
    logit_scale: float = 100.0


def torch_combiner(dim: int, cfg: CombinerConfig):
    """The torch module (the same equations as Combiner._forward, with dropout in training)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class TorchCombiner(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.text_proj = nn.Linear(dim, cfg.projection)
            self.image_proj = nn.Linear(dim, cfg.projection)
            self.hidden = nn.Linear(2 * cfg.projection, cfg.hidden)
            self.out = nn.Linear(cfg.hidden, dim)
            self.lambda1 = nn.Linear(2 * cfg.projection, cfg.lambda_hidden)
            self.lambda2 = nn.Linear(cfg.lambda_hidden, 1)
            self.drop = nn.Dropout(cfg.dropout)

        def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
            t = self.drop(F.relu(self.text_proj(text)))
            i = self.drop(F.relu(self.image_proj(image)))
            joint = torch.cat([t, i], dim=-1)
            hidden = self.drop(F.relu(self.hidden(joint)))
            lam = torch.sigmoid(self.lambda2(self.drop(F.relu(self.lambda1(joint)))))
            return F.normalize(self.out(hidden) + lam * text + (1 - lam) * image, dim=-1)

        def layers(self) -> dict[str, nn.Linear]:
            """Layer name in the Combiner file -> layer (weights NAME_w, biases NAME_b)."""
            return {
                "text_proj": self.text_proj,
                "image_proj": self.image_proj,
                "hidden": self.hidden,
                "out": self.out,
                "lambda1": self.lambda1,
                "lambda2": self.lambda2,
            }

        def arrays(self) -> dict[str, np.ndarray]:
            out: dict[str, np.ndarray] = {}
            for name, layer in self.layers().items():
                w, b = _file_names(name)
                out[w] = layer.weight.detach().cpu().numpy().astype(np.float32).copy()
                out[b] = layer.bias.detach().cpu().numpy().astype(np.float32).copy()
            return out

        def load_arrays(self, weights: dict[str, np.ndarray]) -> None:
            with torch.no_grad():
                for name, layer in self.layers().items():
                    w, b = _file_names(name)
                    layer.weight.copy_(torch.from_numpy(np.asarray(weights[w], np.float32)))
                    layer.bias.copy_(torch.from_numpy(np.asarray(weights[b], np.float32)))

    return TorchCombiner()


def _file_names(layer: str) -> tuple[str, str]:
    """lambda1 -> (lambda_w1, lambda_b1); hidden -> (hidden_w, hidden_b)."""
    if layer.startswith("lambda"):
        return f"lambda_w{layer[-1]}", f"lambda_b{layer[-1]}"
    return f"{layer}_w", f"{layer}_b"


def evaluate(module, features: CirFeatures) -> dict[str, float]:
    """Dev/test recalls of a torch Combiner (eval mode, no dropout)."""
    import torch

    module.eval()
    with torch.no_grad():
        queries = module(
            torch.from_numpy(features.gallery[features.reference]), torch.from_numpy(features.texts)
        ).numpy()
    return composed_recalls(features, queries)


def dev_score(recalls: dict[str, float]) -> float:
    return float(np.mean([recalls[f"R@{k}"] for k in (1, 5, 10, 50)]))


def train_combiner(
    train: CirFeatures,
    dev: CirFeatures,
    cfg: CombinerConfig,
    log: Callable[[str], None] = print,
    progress: Callable[[int, int, float], None] | None = None,
) -> dict[str, Any]:
    """Train, keep the best dev epoch; returns {"weights", "epoch", "dev", "config"}.

    progress(epoch, epochs, dev score) is called after every epoch (a terminal bar)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    dim = train.gallery.shape[1]
    module = torch_combiner(dim, cfg)
    opt = torch.optim.AdamW(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    reference = torch.from_numpy(np.ascontiguousarray(train.gallery[train.reference]))
    text = torch.from_numpy(np.ascontiguousarray(train.texts))
    target = torch.from_numpy(np.ascontiguousarray(train.gallery[train.target]))
    best: dict[str, Any] = {"score": -1.0, "epoch": 0}
    start = time.time()
    for epoch in range(1, cfg.epochs + 1):
        module.train()
        order = rng.permutation(len(train))
        total = 0.0
        for s in range(0, len(order), cfg.batch_size):
            idx = torch.from_numpy(order[s : s + cfg.batch_size])
            if len(idx) < 2:
                continue  # a contrastive batch needs negatives
            query = module(reference[idx], text[idx])
            logits = cfg.logit_scale * query @ target[idx].T
            loss = F.cross_entropy(logits, torch.arange(len(idx)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        recalls = evaluate(module, dev)
        score = dev_score(recalls)
        if score > best["score"]:
            best = {"score": score, "epoch": epoch, "dev": recalls, "weights": module.arrays()}
        log(
            f"epoch {epoch:3d}  loss {total / len(train):.3f}  dev R@1/5/10/50 "
            + " / ".join(f"{recalls[f'R@{k}']:.1f}" for k in (1, 5, 10, 50))
            + f"  (best {best['score']:.1f} @ {best['epoch']})  {time.time() - start:.0f}s"
        )
        if progress:
            progress(epoch, cfg.epochs, score)
        if epoch - best["epoch"] >= cfg.patience:
            break
    return {"weights": best["weights"], "epoch": best["epoch"], "dev": best["dev"], "config": asdict(cfg)}


# -- data: triplet files -> features --------------------------------------------------------


def concat_features(parts: list[CirFeatures]) -> CirFeatures:
    """Several splits (FashionIQ's three categories) as one: galleries stacked, rows shifted."""
    if len(parts) == 1:
        return parts[0]
    offsets = np.cumsum([0] + [len(p.gallery) for p in parts[:-1]])
    members = None
    if all(p.members is not None for p in parts):
        members = [m + off for p, off in zip(parts, offsets, strict=True) for m in p.members or []]
    return CirFeatures(
        gallery=np.concatenate([p.gallery for p in parts]),
        texts=np.concatenate([p.texts for p in parts]),
        reference=np.concatenate([p.reference + off for p, off in zip(parts, offsets, strict=True)]),
        target=np.concatenate([p.target + off for p, off in zip(parts, offsets, strict=True)]),
        members=members,
    )


TRAIN_SPLITS = ("train",)
DEV_SPLITS = ("val", "dev")


def triplet_files(source: Path, fmt: str | None) -> tuple[list[Path], list[Path]]:
    """(train captions files, dev captions files) of a data set folder or one captions file.

    A folder: its `train` files, and `val` (CIRR, FashionIQ) or `dev` (Flickr8k-CIR) ones. A file:
    that file, and the file of the same name with val or dev in place of its split, if present;
    without one, the dev triplets are a seeded 10% of the file's (see hold_out)."""
    from pixgrep.errors import PixgrepError
    from pixgrep.lab.eval.cir import split_files

    if source.is_dir():
        files = split_files(source, fmt)  # type: ignore[arg-type]

        def pick(names: tuple[str, ...]) -> list[Path]:
            for name in names:
                chosen = [f for key, f in files.items() if key == name or key.startswith(name + ".")]
                if chosen:
                    return chosen
            return []

        train, dev = pick(TRAIN_SPLITS), pick(DEV_SPLITS)
        if not train:
            raise PixgrepError(
                f"{source}/captions has no train split (cap.rc2.train.json or cap.CATEGORY.train.json)"
            )
        return train, dev
    if not source.is_file():
        raise PixgrepError(f"--triplets {source}: no such file or folder")
    parts = source.name.split(".")
    dev = []
    if len(parts) >= 3:
        for name in DEV_SPLITS:
            candidate = source.with_name(".".join([*parts[:-2], name, parts[-1]]))
            if candidate != source and candidate.is_file():
                dev = [candidate]
                break
    return [source], dev


def hold_out(features: CirFeatures, seed: int, share: float = 0.1) -> tuple[CirFeatures, CirFeatures]:
    """A seeded split of one set into (train, dev) when no dev file exists."""
    rows = np.random.default_rng(seed).permutation(len(features))
    cut = max(1, int(round(len(rows) * share)))
    return features.subset(np.sort(rows[cut:])), features.subset(np.sort(rows[:cut]))
