"""CLI for composed retrieval: `train combiner`, `eval composed`, `eval make-cir`, `models add-combiner`.

The command table (cli/__init__.py) adds each register_* function's command to its group (train,
eval, models); the work is in eval.cir*, eval.composed, models.combiner*.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pixgrep.cli.options import (
    add_captions_options,
    add_common_options,
    add_images_option,
    add_json_option,
    add_training_options,
    whole_number,
)
from pixgrep.errors import PixgrepError

FORMATTER = argparse.RawDescriptionHelpFormatter


# -- pixgrep train combiner ------------------------------------------------------------------


def register_train(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "combiner",
        help="train a Combiner (CLIP4Cir) for image + text queries of one model",
        description="Train the Combiner of CLIP4Cir (Baldrati et al., CVPR 2022) over a model's frozen "
        "vectors, on (reference image, modification text, target image) triplets in CIRR or FashionIQ "
        "layout: contrastive loss against the batch's targets, AdamW, early stopping on the dev split. "
        "Image vectors come from the catalog (the split's images are indexed first); texts are encoded "
        "once. Prints dev Recall@K of the Combiner and of the plain sum. Needs torch.",
        epilog="examples:\n"
        "  D=../shared/data/flickr8k\n"
        "  pixgrep eval make-cir --captions $D/captions.tsv --split $D/train.txt --out /tmp/f8cir\n"
        "  pixgrep eval make-cir --captions $D/captions.tsv --split $D/dev.txt --out /tmp/f8cir\n"
        "  pixgrep train combiner --triplets /tmp/f8cir --images $D/images --model pixgrep-mini \\\n"
        "      --out mini-combiner.npz\n"
        "  pixgrep models add-combiner pixgrep-mini mini-combiner.npz\n\n"
        "--triplets DIR: DIR/captions/ holds the train split and val (or dev) for early stopping;\n"
        "a single captions FILE: the matching val/dev file beside it, else a seeded 10% of FILE.",
        formatter_class=FORMATTER,
    )
    parser.add_argument(
        "--triplets", required=True, metavar="DIR_OR_FILE", help="data set folder or captions file"
    )
    add_images_option(parser, "folder the image splits' paths are under")
    parser.add_argument("--format", choices=("cirr", "fashioniq"), help="data set format (default: detected)")
    parser.add_argument("--out", required=True, metavar="FILE", help="Combiner file to write (.npz)")
    add_training_options(parser, epochs=20, epochs_help="most epochs")
    parser.add_argument(
        "--patience",
        type=whole_number(1),
        default=5,
        help="stop after this many epochs without a better dev score (default: 5)",
    )
    parser.add_argument(
        "--projection", type=whole_number(1), default=512, help="projection size (default: 512)"
    )
    parser.add_argument(
        "--hidden", type=whole_number(1), default=1024, help="hidden layer size (default: 1024)"
    )
    parser.add_argument(
        "--storage",
        choices=("float16", "float32"),
        default="float16",
        help="how the file stores its weights (default: float16, half the size; queries compute in float32)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every epoch on stderr")
    add_json_option(parser, "print the result as one JSON object")
    add_common_options(parser)
    parser.set_defaults(func=run_train_combiner)


def run_train_combiner(args: argparse.Namespace) -> int:
    from pixgrep.api import open_catalog
    from pixgrep.lab.combiner_train import concat_features, hold_out, triplet_files
    from pixgrep.lab.eval.cir import read_cir
    from pixgrep.lab.eval.composed import cir_features, composed_recalls, query_vectors
    from pixgrep.progress import bar, show_progress

    out = Path(args.out)
    if out.exists() and out.is_dir():
        raise PixgrepError(f"--out {out} is a folder; give a file name such as {out}/combiner.npz")
    train_files, dev_files = triplet_files(Path(args.triplets), args.format)
    train_sets = [read_cir(f, args.images, fmt=args.format) for f in train_files]
    dev_sets = [read_cir(f, args.images, fmt=args.format) for f in dev_files]
    try:
        import torch
    except ImportError:
        raise PixgrepError("training a Combiner needs torch: pip install torch") from None
    from pixgrep.lab.combiner_train import CombinerConfig, train_combiner
    from pixgrep.models.combiner import save_combiner

    with open_catalog(args.catalog, args.model) as catalog:
        progress = show_progress()
        train = concat_features([cir_features(catalog, s, progress=progress) for s in train_sets])
        if dev_sets:
            dev = concat_features([cir_features(catalog, s, progress=progress) for s in dev_sets])
            dev_source = [str(f) for f in dev_files]
        else:
            train, dev = hold_out(train, args.seed)
            dev_source = [f"seeded 10% of {train_files[0]}"]
        model_id = catalog.encoder.model_id
    torch.set_num_threads(args.threads)
    cfg = CombinerConfig(
        seed=args.seed,
        epochs=args.epochs,
        patience=args.patience,
        projection=args.projection,
        hidden=args.hidden,
    )
    meter = bar(cfg.epochs, "training", "epoch")

    def on_epoch(epoch: int, epochs: int, score: float) -> None:
        meter.set_postfix_str(f"dev mean R@K {score:.1f}")
        meter.update(1)

    def log(line: str) -> None:
        if args.verbose:
            print(line, file=sys.stderr)

    try:
        result = train_combiner(train, dev, cfg, log=log, progress=on_epoch)
    finally:
        meter.close()
    sum_dev = composed_recalls(dev, query_vectors(dev, "sum"))
    meta = {
        "model_id": model_id,
        "config": result["config"],
        "epoch": result["epoch"],
        "dev": result["dev"],
        "dev_sum": sum_dev,
        "train_triplets": len(train),
        "dev_triplets": len(dev),
        "trained_on": [Path(f).name for f in train_files],
        "dev_on": [Path(f).name if not f.startswith("seeded") else f for f in dev_source],
    }
    save_combiner(out, result["weights"], meta, storage=args.storage)
    summary = {
        "out": str(out),
        "model": model_id,
        "epoch": result["epoch"],
        "train_triplets": len(train),
        "dev_triplets": len(dev),
        "dev": {k: round(v, 2) for k, v in result["dev"].items()},
        "dev_sum": {k: round(v, 2) for k, v in sum_dev.items()},
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"trained on {len(train)} triplets, best dev epoch {result['epoch']}; Combiner -> {out}")
    keys = [k for k in result["dev"]]
    print(f"{'dev (' + str(len(dev)) + ')':14} " + " ".join(f"{k:>8}" for k in keys))
    for name, recalls in (("combiner", result["dev"]), ("sum", sum_dev)):
        print(f"{name:14} " + " ".join(f"{recalls[k]:8.1f}" for k in keys))
    return 0


# -- pixgrep eval composed / make-cir --------------------------------------------------------


def register_eval(benchmarks: argparse._SubParsersAction) -> None:
    composed = benchmarks.add_parser(
        "composed",
        help="composed retrieval (image + text) Recall@1/5/10/50 on CIRR or FashionIQ triplets",
        description="For each triplet, the reference image and the modification text make one query "
        "(--fusion: the model's Combiner, the sum of the two vectors, or one side alone) that ranks every "
        "image of the split; the reference never counts as a hit, as in CIRR. Recall@1/5/10/50, and CIRR's "
        "Recall_subset@1/2/3 when the triplets carry img_set.members.",
        epilog="--triplets is a CIRR (cap.rc2.SPLIT.json) or FashionIQ (cap.CATEGORY.SPLIT.json) captions\n"
        "file; the image split defaults to ../image_splits/ beside its captions/ folder.",
        formatter_class=FORMATTER,
    )
    composed.add_argument(
        "--triplets", required=True, metavar="CAPTIONS_JSON", help="CIRR or FashionIQ captions file"
    )
    add_images_option(composed, "folder the split's image paths are under")
    composed.add_argument(
        "--image-split", metavar="FILE", help="image split file (default: the standard layout's)"
    )
    composed.add_argument(
        "--fusion",
        choices=("combiner", "sum", "image", "text"),
        default="combiner",
        help="how the query is made (default: combiner)",
    )
    composed.add_argument("--combiner", metavar="FILE", help="a Combiner file (default: the model's own)")
    add_common_options(composed)
    add_json_option(composed)
    composed.set_defaults(func=run_eval_composed)

    make = benchmarks.add_parser(
        "make-cir",
        help="build Flickr8k-CIR triplets (CIRR layout) from a captions file and one split",
        description="Build composed-retrieval triplets from captioned images (docs/composed.md): for each "
        "target image of the split, the reference is the other split image whose caption words overlap "
        "most (Jaccard of content words; ties by file name), and the modification text is the target's "
        "caption words the reference's captions never use. Deterministic. Writes "
        "OUT/captions/cap.rc2.NAME.json and OUT/image_splits/split.rc2.NAME.json (NAME: the split "
        "file's stem).",
    )
    add_captions_options(make, split_required=True)
    make.add_argument("--out", required=True, metavar="DIR", help="data set folder to write into")
    add_json_option(make, "print a JSON summary")
    make.set_defaults(func=run_make_cir)


def run_eval_composed(args: argparse.Namespace) -> int:
    from pixgrep.api import open_catalog
    from pixgrep.lab.eval.composed import run_composed

    with open_catalog(args.catalog, args.model) as catalog:
        result = run_composed(
            catalog, args.triplets, args.images, args.image_split, args.fusion, args.combiner
        )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    keys = [k for k in result if k.startswith(("R@", "Recall_subset@"))]
    print(
        f"{result['triplets']} triplets, {result['images']} images, model {result['model']}, "
        f"fusion {result['fusion']}"
    )
    print(" ".join(f"{k:>16}" if k.startswith("Recall") else f"{k:>6}" for k in keys))
    print(" ".join(f"{result[k]:16.1f}" if k.startswith("Recall") else f"{result[k]:6.1f}" for k in keys))
    return 0


def run_make_cir(args: argparse.Namespace) -> int:
    from pixgrep.lab.eval.cir_build import make_cir

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise PixgrepError(f"--out {out} is a file, not a folder")
    summary = make_cir(args.captions, args.split, out)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{summary['split']}: {summary['triplets']} triplets from {summary['images']} images "
            f"({summary['dropped']} dropped: modification under 2 words) -> {summary['captions']}"
        )
    return 0


# -- pixgrep models add-combiner -------------------------------------------------------------


def register_models(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "add-combiner",
        help="give a model a trained Combiner for image + text queries",
        description="Check that FILE is a Combiner trained for MODEL, and copy it into the model's folder "
        "as combiner.npz: image + text queries with that model then use it (--fusion sum does not).",
    )
    parser.add_argument("model", metavar="MODEL", help="registry name or model folder")
    parser.add_argument("file", metavar="FILE", help="a Combiner file from `pixgrep train combiner`")
    parser.set_defaults(func=run_add_combiner)


def run_add_combiner(args: argparse.Namespace) -> int:
    import os
    import shutil

    from pixgrep.models import load_encoder
    from pixgrep.models.combiner import FILE_NAME, load_combiner, model_folder_of

    combiner = load_combiner(args.file)  # a bad file fails before a model is built or downloaded
    encoder = load_encoder(args.model)
    combiner.check_model(encoder.model_id)
    folder = model_folder_of(encoder)
    if folder is None:
        raise PixgrepError(f"model {args.model} has no folder to hold a Combiner")
    dest = folder / FILE_NAME
    tmp = folder / f".{FILE_NAME}.{os.getpid()}.tmp"
    shutil.copyfile(args.file, tmp)
    tmp.replace(dest)
    print(f"{encoder.model_id}: Combiner -> {dest}")
    return 0
