"""CLI: `pixgrep eval retrieval|classes` and `pixgrep classify`.

Parsing and rendering only; the work is in pixgrep.lab.eval (retrieval, classes) and pixgrep.tagging
(classify, XMP). `eval composed|make-cir` are in cli/composed.py; the studies in cli/study.py.
Heavy imports happen inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import sys

from pixgrep.cli.options import (
    add_captions_options,
    add_common_options,
    add_images_option,
    add_json_option,
    add_model_option,
    number_between,
    whole_number,
)

FORMATTER = argparse.RawDescriptionHelpFormatter


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_eval(subparsers)
    _register_classify(subparsers)


def _print_json(data: object) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _load_encoder(model: str | None):
    from pixgrep.models import load_encoder

    return load_encoder(model)


def _open_catalog(args: argparse.Namespace):
    from pixgrep.api import open_catalog

    return open_catalog(args.catalog, args.model)


# -- pixgrep eval ------------------------------------------------------------------------------

EVAL_EPILOG = """\
examples:
  pixgrep eval retrieval --images flickr8k/images --captions flickr8k/captions.tsv \\
      --split flickr8k/test.txt
  pixgrep eval classes cifar10-test --json
  pixgrep eval classes imagenet-sample --templates single --templates my_prompts.txt

Image vectors come from the catalog (--catalog), so a second run only encodes the texts.
Ties in scores are ranked pessimistically (a tie with a wrong item counts against the model);
docs/quality.md explains the protocols and lists measured numbers.
"""


def _register_eval(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="measure retrieval and zero-shot quality on benchmark folders",
        description="Measure how well a model finds images: the standard retrieval and "
        "zero-shot classification protocols, on folders of images.",
        epilog=EVAL_EPILOG,
        formatter_class=FORMATTER,
    )
    benchmarks = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", parser_class=type(parser))
    benchmarks.required = True

    retrieval = benchmarks.add_parser(
        "retrieval",
        help="text-to-image and image-to-text Recall@1/5/10 from a captions file",
        description="Text-to-image: for each caption, is its image among the top K images? "
        "Image-to-text: for each image, is any of its captions among the top K captions? "
        "Any number of captions per image. Also the median and mean rank.",
        epilog="captions: a TSV (`image<TAB>caption`, or with a header row naming the columns "
        "`image` and `caption`, as Flickr8k's captions.tsv), or a COCO / Karpathy captions JSON.",
    )
    add_images_option(retrieval, "folder the image names are relative to")
    add_captions_options(retrieval, split_required=False)
    retrieval.add_argument(
        "--all",
        dest="all_parts",
        action="store_true",
        help="score each caption as `pixgrep --all` does: all of its parts (docs/search.md)",
    )
    retrieval.add_argument(
        "--ignore-tone",
        action="store_true",
        help="remove the tone component from the captions first, as `pixgrep --ignore-tone`",
    )
    add_common_options(retrieval)
    add_json_option(retrieval)
    retrieval.set_defaults(func=_run_eval_retrieval)

    classes = benchmarks.add_parser(
        "classes",
        help="class-folder benchmarks: rclip retrieval top-1/top-5 and zero-shot accuracy",
        description="For a folder of class sub-folders (DIR/cat/*.jpg), or of files named "
        "ID_class_name.jpg: (a) the rclip paper's retrieval metric: each class's prompt "
        '"a photo of a {class}." ranks all images; top-1/top-5 = share of classes with an image '
        "of that class first / in the first five; (b) zero-shot classification accuracy (each "
        "image gets the class whose prompt scores best), single prompt vs prompt ensembling.",
    )
    classes.add_argument("dir", metavar="DIR", help="the class folder")
    classes.add_argument(
        "--templates",
        metavar="single|ensemble|FILE",
        action="append",
        help='prompt set(s) for zero-shot accuracy, repeatable: `single` ("a photo of a {}."), '
        "`ensemble` (CLIP's 80 ImageNet prompts, averaged per class), or a file with one "
        "template per line containing {} (default: single and ensemble)",
    )
    add_common_options(classes)
    add_json_option(classes)
    classes.set_defaults(func=_run_eval_classes)


def _run_eval_retrieval(args: argparse.Namespace) -> int:
    from pixgrep.lab.eval.retrieval import run_retrieval

    with _open_catalog(args) as catalog:
        result = run_retrieval(
            catalog,
            args.images,
            args.captions,
            args.split,
            all_parts=args.all_parts,
            ignore_tone=args.ignore_tone,
        )
    if args.json:
        _print_json(result)
        return 0
    switches = [name for name, on in (("--all", args.all_parts), ("--ignore-tone", args.ignore_tone)) if on]
    print(
        f"{result['images']} images, {result['captions']} captions, model {result['model']}"
        + (f" ({' '.join(switches)})" if switches else "")
    )
    if result.get("captions_cut"):
        print(f"({result['captions_cut']} caption(s) longer than the model's context length: cut)")
    if result["caption_keys_remapped"]:
        print(f"({result['caption_keys_remapped']} caption key(s) like X.jpg.1 read as X.jpg)")
    if result.get("caption_keys_skipped"):
        print(f"({result['caption_keys_skipped']} caption key(s) naming no image file skipped)")
    print(f"{'':15} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'median':>7} {'mean':>8}")
    for name, prefix in (("text -> image", "t2i_"), ("image -> text", "i2t_")):
        print(
            f"{name:15} {result[prefix + 'R@1']:6.1f} {result[prefix + 'R@5']:6.1f} "
            f"{result[prefix + 'R@10']:6.1f} {result[prefix + 'median_rank']:7g} "
            f"{result[prefix + 'mean_rank']:8.1f}"
        )
    return 0


def _run_eval_classes(args: argparse.Namespace) -> int:
    from pixgrep.lab.eval.classes import run_classes

    modes = args.templates or ["single", "ensemble"]
    with _open_catalog(args) as catalog:
        result = run_classes(catalog, args.dir, modes)
    if args.json:
        _print_json(result)
        return 0
    print(f"{result['classes']} classes, {result['images']} images, model {result['model']}")
    print(
        f'retrieval ("a photo of a {{class}}." over all images):  '
        f"top-1 {result['retrieval_top1']:.1f}%  top-5 {result['retrieval_top5']:.1f}%"
    )
    print(f"{'zero-shot':30} {'top-1':>6} {'top-5':>6}")
    for mode, top1 in result["zeroshot_top1"].items():
        name = f"{mode} ({result['templates'][mode]} prompt{'s' if result['templates'][mode] > 1 else ''})"
        print(f"{name:30} {top1:5.1f}% {result['zeroshot_top5'][mode]:5.1f}%")
    return 0


# -- pixgrep classify --------------------------------------------------------------------------


def _register_classify(subparsers: argparse._SubParsersAction) -> None:
    from pixgrep.tagging import WRITE_MIN_PROBABILITY

    parser = subparsers.add_parser(
        "classify",
        help="zero-shot labels for images, optionally written to XMP sidecars",
        description="Zero-shot classification: each image gets the labels whose prompts match "
        "it best, with softmax probabilities over all labels (CLIP's 80 ImageNet prompts per "
        "label, averaged; the model's logit scale).",
        epilog="examples:\n"
        '  pixgrep classify ~/Photos/2024 --labels "cat, dog, bird, car, beach, mountain"\n'
        "  pixgrep classify IMG_0001.jpg --labels-file labels.txt --top 2 --write-xmp\n\n"
        "--write-xmp merges the labels with probability >= --min-prob (by default only the\n"
        "best label, and only when it wins clearly) as keywords (dc:subject, lr:hierarchicalSubject,\n"
        "digiKam:TagsList) into the sidecar IMG_0001.jpg.xmp beside each image, the name\n"
        "darktable and digiKam read; existing keywords and other metadata are kept, and the\n"
        "image files themselves are never written.",
        formatter_class=FORMATTER,
    )
    parser.add_argument(
        "paths", metavar="PATH", nargs="+", help="image files or folders (searched recursively)"
    )
    labels = parser.add_mutually_exclusive_group(required=True)
    labels.add_argument("--labels", metavar="LIST", help='comma-separated labels, e.g. "cat, dog, bird"')
    labels.add_argument("--labels-file", metavar="FILE", help="labels, one per line")
    parser.add_argument(
        "--top", type=whole_number(1), default=3, metavar="N", help="labels shown per image (default 3)"
    )
    parser.add_argument(
        "--templates",
        metavar="single|ensemble|FILE",
        default="ensemble",
        help="prompts per label (default: ensemble, CLIP's 80 ImageNet prompts)",
    )
    parser.add_argument(
        "--write-xmp",
        action="store_true",
        help="write the shown labels with probability >= --min-prob into XMP sidecar files",
    )
    parser.add_argument(
        "--min-prob",
        type=number_between(0.0, 1.0, "--min-prob"),
        default=WRITE_MIN_PROBABILITY,
        metavar="P",
        help="with --write-xmp, write only labels with probability >= P (0..1; default "
        f"{WRITE_MIN_PROBABILITY:g}: at most one label per image, the best, when it wins clearly; "
        "lower it to write several of the --top labels)",
    )
    add_model_option(parser)
    add_json_option(parser)
    parser.set_defaults(func=_run_classify)


def _run_classify(args: argparse.Namespace) -> int:
    from pixgrep.lab.eval.datasets import read_labels
    from pixgrep.tagging.classify import classify_paths, expand_paths
    from pixgrep.tagging.templates import templates_for

    labels = read_labels(args.labels, args.labels_file)
    templates = templates_for(args.templates)
    expand_paths(args.paths)  # a missing path fails before the model loads
    rows = classify_paths(
        _load_encoder(args.model),
        args.paths,
        labels,
        top=args.top,
        templates=templates,
        write_xmp=args.write_xmp,
        min_probability=args.min_prob,
    )
    if args.json:
        _print_json({"labels": labels, "images": rows})
        return 0
    for row in rows:
        best = "  ".join(f"{x['label']} {100 * x['probability']:.1f}%" for x in row["labels"])
        print(f"{row['path']}\t{best}")
        if args.write_xmp and row["keywords_added"]:
            print(f"  + {row['sidecar']}: {', '.join(row['keywords_added'])}", file=sys.stderr)
    return 0
