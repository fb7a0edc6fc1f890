"""Train the two linear heads of pixgrep-mini on frozen-tower features (LiT with both towers locked).

Symmetric InfoNCE with a learned temperature, on Flickr8k train; each step takes a batch of images
with one random caption of their five. Dropout on the input features is the regulariser that
matters on 6000 images. The checkpoint is chosen on dev (sum of the six recalls), never on test;
test recalls are only reported. Image-feature standardisation is folded into the saved image head,
so the exported graph is simply backbone -> pool -> linear -> L2 norm.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pixgrep.models.mini.spec import HEADS_PATH, load_heads  # noqa: F401  (load_heads re-exported)

KS = (1, 5, 10)


@dataclass
class TrainConfig:
    seed: int = 0
    epochs: int = 200
    towers: tuple[str, ...] = ("lite0",)
    image_size: int | None = None  # input size the towers share (None: the largest tower's own)
    pools: tuple[str, ...] = ("head_avg",)  # pooled views of each tower (spec.POOLS), side by side
    text_pools: tuple[str, ...] = ("mean",)  # text views (spec.TEXT_POOLS), side by side
    embed_dim: int = 512
    members: int = 1  # heads trained with seeds seed, seed+1, ...; the vector is their concatenation
    batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 0.1
    init_temperature: float = 0.07
    image_dropout: float = 0.7
    text_dropout: float = 0.4
    eval_every: int = 5
    extra: dict[str, Any] = field(default_factory=dict)


def recalls(img: np.ndarray, txt: np.ndarray, txt_to_img: np.ndarray) -> dict[str, float]:
    """Flickr 1k protocol in percent, by the one rank rule of `pixgrep.lab.metrics` (ties pessimistic):
    t2i R@K (is the caption's image in the top K images) and i2t R@K (is any of the image's
    captions in the top K captions). Inputs are unit rows; the six values sum to the dev score."""
    from pixgrep.lab.metrics import retrieval_metrics

    result = retrieval_metrics(img, txt, txt_to_img, KS)
    return {f"{way}_R@{k}": float(result[f"{way}_R@{k}"]) for way in ("t2i", "i2t") for k in KS}


def format_recalls(name: str, r: dict[str, float]) -> str:
    t2i = " / ".join(f"{r[f't2i_R@{k}']:.1f}" for k in KS)
    i2t = " / ".join(f"{r[f'i2t_R@{k}']:.1f}" for k in KS)
    return f"{name}: text->image R@1/5/10 {t2i}   image->text R@1/5/10 {i2t}   (sum {sum(r.values()):.1f})"


def _split(features: dict[str, Any], split: str, towers: tuple[str, ...]):
    """(image features, caption features, caption -> image row) for one split."""
    names = list(features["splits"][split])
    rows = {n: i for i, n in enumerate(features[towers[0]]["names"])}
    img = np.concatenate([features[t]["feats"][[rows[n] for n in names]] for t in towers], axis=1)
    pos = {n: i for i, n in enumerate(names)}
    cap_names = features["captions"]["names"]
    keep = np.array([n in pos for n in cap_names])
    txt = features["captions"]["feats"][keep]
    txt_to_img = np.array([pos[n] for n in cap_names[keep]])
    return img.astype(np.float32), txt.astype(np.float32), txt_to_img


def train(
    features: dict[str, Any], cfg: TrainConfig, log: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Train, select on dev, return the folded heads and the dev/test recalls of the chosen epoch.
    `log` gets one line per evaluation (default: the "pixgrep.models.mini" logger).

    With `cfg.members` = k > 1, k heads are trained the same way with seeds seed .. seed+k-1, each
    selected on dev by itself, and stacked: the model's vector is the concatenation of the k unit
    vectors divided by sqrt(k), so a dot product is the mean of the k members' cosines (an ensemble
    at the cost of one backbone pass; the vector is k * embed_dim wide)."""
    if cfg.members <= 1:
        return _train_one(features, cfg, log)
    from dataclasses import replace

    say = log or _default_log()
    parts = []
    for i in range(cfg.members):
        say(f"member {i + 1} of {cfg.members}: seed {cfg.seed + i}")
        parts.append(_train_one(features, replace(cfg, seed=cfg.seed + i, members=1), log))
    out: dict[str, Any] = {
        key: np.concatenate([p[key] for p in parts]).astype(np.float32)
        for key in ("image_weight", "image_bias", "text_weight", "text_bias")
    }
    out["logit_scale"] = float(np.mean([p["logit_scale"] for p in parts]))
    out["epoch"] = [p["epoch"] for p in parts]
    out["members"] = [{"epoch": p["epoch"], "dev": p["dev"], "test": p["test"]} for p in parts]
    for split in ("dev", "test"):
        img, txt, txt_to_img = _split(features, split, tuple(cfg.towers))
        out[split] = recalls(
            embed_stacked(img, out["image_weight"], out["image_bias"], cfg.members),
            embed_stacked(txt, out["text_weight"], out["text_bias"], cfg.members),
            txt_to_img,
        )
    return out


def _default_log() -> Callable[[str], None]:
    from pixgrep.lab.mini.features import log_progress

    return log_progress


def embed_stacked(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, members: int = 1) -> np.ndarray:
    """What the model folder's head computes: x @ W.T + b, each of the `members` blocks L2-normalised,
    side by side, divided by sqrt(members) (a unit vector)."""
    y = (x.astype(np.float64) @ weight.T.astype(np.float64) + bias).reshape(len(x), members, -1)
    y /= np.maximum(np.linalg.norm(y, axis=-1, keepdims=True), 1e-12)
    return (y.reshape(len(x), -1) / math.sqrt(members)).astype(np.float32)


def _train_one(
    features: dict[str, Any], cfg: TrainConfig, log: Callable[[str], None] | None = None
) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from pixgrep.lab.mini.features import log_progress

    log = log or log_progress

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    towers = tuple(cfg.towers)
    tr_img, tr_txt, tr_map = _split(features, "train", towers)
    dev = _split(features, "dev", towers)
    test = _split(features, "test", towers)

    # standardise image features, centre text features, with train statistics only
    img_mean, img_std = tr_img.mean(0), tr_img.std(0) + 1e-6
    txt_mean = tr_txt.mean(0)
    caps_of = [np.flatnonzero(tr_map == i) for i in range(len(tr_img))]

    img_in = torch.from_numpy((tr_img - img_mean) / img_std)
    txt_in = torch.from_numpy(tr_txt - txt_mean)
    img_head = torch.nn.Linear(img_in.shape[1], cfg.embed_dim)
    txt_head = torch.nn.Linear(txt_in.shape[1], cfg.embed_dim)
    log_scale = torch.nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))
    params = [*img_head.parameters(), *txt_head.parameters(), log_scale]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(tr_img) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, anneal_strategy="cos"
    )

    def embed(img: np.ndarray, txt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            i = F.normalize(img_head(torch.from_numpy((img - img_mean) / img_std)), dim=-1)
            t = F.normalize(txt_head(torch.from_numpy(txt - txt_mean)), dim=-1)
        return i.numpy(), t.numpy()

    best: dict[str, Any] = {"score": -1.0}
    start = time.time()
    for epoch in range(1, cfg.epochs + 1):
        img_head.train()
        txt_head.train()
        order = rng.permutation(len(tr_img))
        for s in range(steps_per_epoch):
            idx = order[s * cfg.batch_size : (s + 1) * cfg.batch_size]
            cap = np.array([rng.choice(caps_of[i]) for i in idx])
            zi = F.normalize(img_head(F.dropout(img_in[idx], cfg.image_dropout, True)), dim=-1)
            zt = F.normalize(txt_head(F.dropout(txt_in[cap], cfg.text_dropout, True)), dim=-1)
            logits = log_scale.exp().clamp(max=100.0) * zi @ zt.T
            labels = torch.arange(len(idx))
            loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            r = recalls(*embed(dev[0], dev[1]), dev[2])
            score = sum(r.values())
            if score > best["score"]:
                best = {
                    "score": score,
                    "epoch": epoch,
                    "dev": r,
                    "state": {
                        "img_w": img_head.weight.detach().clone(),
                        "img_b": img_head.bias.detach().clone(),
                        "txt_w": txt_head.weight.detach().clone(),
                        "txt_b": txt_head.bias.detach().clone(),
                        "log_scale": float(log_scale.detach()),
                    },
                }
            log(
                f"epoch {epoch:4d}  loss {loss.item():.3f}  scale {log_scale.exp().item():5.1f}  "
                f"dev sum {score:6.1f}  (best {best['score']:.1f} @ {best['epoch']})  "
                f"{time.time() - start:.0f}s"
            )

    st = best["state"]
    img_head.weight.data, img_head.bias.data = st["img_w"], st["img_b"]
    txt_head.weight.data, txt_head.bias.data = st["txt_w"], st["txt_b"]
    test_r = recalls(*embed(test[0], test[1]), test[2])

    # fold the input standardisation into the linear layers: W (x - m) / s + b = (W / s) x + (b - W/s m)
    w_i = st["img_w"].numpy().astype(np.float64) / img_std[None, :]
    b_i = st["img_b"].numpy().astype(np.float64) - w_i @ img_mean
    w_t = st["txt_w"].numpy().astype(np.float64)
    b_t = st["txt_b"].numpy().astype(np.float64) - w_t @ txt_mean
    return {
        "image_weight": w_i.astype(np.float32),
        "image_bias": b_i.astype(np.float32),
        "text_weight": w_t.astype(np.float32),
        "text_bias": b_t.astype(np.float32),
        "logit_scale": float(min(math.exp(st["log_scale"]), 100.0)),
        "epoch": best["epoch"],
        "dev": best["dev"],
        "test": test_r,
    }


def save_heads(result: dict[str, Any], cfg: TrainConfig, path: Path = HEADS_PATH) -> None:
    """Small float32 arrays plus the training config and the measured recalls, as JSON text."""
    meta = {
        "config": asdict(cfg),
        "selected_epoch": result["epoch"],
        **({"members": result["members"]} if "members" in result else {}),
        "dev": result["dev"],
        "test": result["test"],
        "logit_scale": result["logit_scale"],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(
        tmp,
        image_weight=result["image_weight"],
        image_bias=result["image_bias"],
        text_weight=result["text_weight"],
        text_bias=result["text_bias"],
        logit_scale=np.float32(result["logit_scale"]),
        meta=np.array(json.dumps(meta, sort_keys=True)),
    )
    tmp.replace(path)
