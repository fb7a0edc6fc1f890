"""`pixgrep train mini`: extract (once) frozen-tower features of Flickr8k and train the mini heads.

`pixgrep train combiner` lives in cli/composed.py (the command table in cli/__init__.py adds it)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pixgrep.cli.options import add_json_option, add_training_options

DEFAULT_DATA = "../shared/data/flickr8k"


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="train pixgrep's own small models",
        description="Train pixgrep's own small models from data on this machine.",
    )
    sub = train.add_subparsers(dest="what", metavar="WHAT", parser_class=type(train))
    sub.required = True
    mini = sub.add_parser(
        "mini",
        help="train the pixgrep-mini projection heads on Flickr8k",
        description=(
            "Train the two linear heads of pixgrep-mini (frozen EfficientNet-Lite image tower, frozen "
            "all-MiniLM-L6-v2 text tower) contrastively on the Flickr8k train split, choose the "
            "checkpoint on dev, and print dev and test Recall@1/5/10 both ways. Tower features are "
            "extracted once with the ONNX towers (a few minutes on 2 cores) and cached; a training run "
            "then takes a few minutes. Needs pixgrep[train] (torch)."
        ),
    )
    mini.add_argument(
        "--data",
        metavar="DIR",
        default=DEFAULT_DATA,
        help=f"Flickr8k folder with images/, captions.tsv, train/dev/test.txt (default: {DEFAULT_DATA})",
    )
    add_training_options(mini, epochs=200, epochs_help="training epochs")
    mini.add_argument(
        "--towers", default="lite0", help="image tower(s), comma separated: lite0, lite2 (default: lite0)"
    )
    mini.add_argument(
        "--image-size",
        type=int,
        metavar="PX",
        help="input size all image towers share (default: the largest tower's own: lite0 224, lite2 260)",
    )
    mini.add_argument(
        "--pools",
        default="head_avg",
        help="pooled views of each image tower's one pass, comma separated, side by side: head_avg, "
        "head_max, stage7_avg ... stage4_avg (default: head_avg)",
    )
    mini.add_argument(
        "--text-pools",
        default="mean",
        help="views of the text tower's one pass, each L2-normalised, side by side: mean (the sentence "
        "vector), layer5_mean, cls (default: mean)",
    )
    mini.add_argument(
        "--members",
        type=int,
        default=1,
        metavar="K",
        help="train K heads (seeds S .. S+K-1) and stack them: the vector is their K unit vectors side "
        "by side over sqrt(K), K * 512 wide, at the same image cost (default: 1)",
    )
    mini.add_argument("--image-dropout", type=float, default=0.7, help="dropout on image features (0.7)")
    mini.add_argument("--text-dropout", type=float, default=0.4, help="dropout on text features (0.4)")
    mini.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="where tower features are cached (default: $PIXGREP_CACHE/mini-features)",
    )
    mini.add_argument("--out", metavar="FILE", help="heads file to write (default: the packaged heads.npz)")
    mini.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log progress lines on stderr even when it is not a terminal",
    )
    add_json_option(mini, "print the final recalls as one JSON object")
    mini.set_defaults(func=run_train_mini)


def run_train_mini(args: argparse.Namespace) -> int:
    import json

    from pixgrep.errors import PixgrepError

    data = Path(args.data)
    for need in ("images", "captions.tsv", "train.txt", "dev.txt", "test.txt"):
        if not (data / need).exists():
            raise PixgrepError(f"{data} is not a Flickr8k folder: {need} is missing (use --data DIR)")
    towers = tuple(t.strip() for t in args.towers.split(",") if t.strip())
    from pixgrep.cli.logs import configure_logging
    from pixgrep.lab.mini.features import ensure_features
    from pixgrep.models.mini.spec import IMAGE_TOWERS, check_pools, check_text_pools

    configure_logging(verbose=args.verbose or None)  # progress lines: on a terminal, or with -v

    unknown = [t for t in towers if t not in IMAGE_TOWERS]
    if unknown or not towers:
        raise PixgrepError(f"unknown tower {unknown}; choose from {', '.join(IMAGE_TOWERS)}")
    pools = check_pools([p.strip() for p in args.pools.split(",") if p.strip()])
    text_pools = check_text_pools([p.strip() for p in args.text_pools.split(",") if p.strip()])
    if not 1 <= args.members <= 8:
        raise PixgrepError(f"--members {args.members}: give 1 to 8 heads")
    if args.image_size is not None and not 32 <= args.image_size <= 1024:
        raise PixgrepError(f"--image-size {args.image_size}: give a size from 32 to 1024 pixels")
    try:
        import torch
    except ImportError:
        raise PixgrepError("pixgrep train mini needs torch: pip install 'pixgrep[train]'") from None

    from pixgrep.lab.mini.train import TrainConfig, format_recalls, save_heads, train
    from pixgrep.models.mini.spec import HEADS_PATH, image_size

    size = image_size(towers, args.image_size)
    cache_dir = Path(args.cache_dir) if args.cache_dir else None
    features = ensure_features(data, cache_dir, towers, 2, size, pools, text_pools)  # ONNX Runtime
    torch.set_num_threads(max(1, args.threads))
    cfg = TrainConfig(
        seed=args.seed,
        epochs=args.epochs,
        towers=towers,
        image_size=size,
        pools=pools,
        text_pools=text_pools,
        members=args.members,
        image_dropout=args.image_dropout,
        text_dropout=args.text_dropout,
    )
    result = train(features, cfg)
    out = Path(args.out) if args.out else HEADS_PATH
    save_heads(result, cfg, out)
    if args.json:
        print(
            json.dumps(
                {
                    "epoch": result["epoch"],
                    "dev": {k: round(v, 2) for k, v in result["dev"].items()},
                    "test": {k: round(v, 2) for k, v in result["test"].items()},
                    "logit_scale": round(result["logit_scale"], 4),
                    "heads": str(out),
                }
            )
        )
    else:
        for i, member in enumerate(result.get("members", [])):
            print(format_recalls(f"member {i + 1} test", member["test"]))
        print(
            f"selected epoch {result['epoch']} on dev; "
            f"logit_scale {result['logit_scale']:.1f}; heads -> {out}"
        )
        print(format_recalls("dev  (1k)", result["dev"]))
        print(format_recalls("test (1k)", result["test"]))
    return 0
