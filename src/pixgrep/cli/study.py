"""CLI: `pixgrep study rank|probe`, small studies of a model (the work is in pixgrep.lab.studies).

`pixgrep rank` and `pixgrep probe`, their earlier top-level names, are routed here by the command
table (cli/__init__.py: ALIASES). Heavy imports happen inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import os

from pixgrep.cli.options import add_common_options, add_in_option, add_json_option, add_model_option
from pixgrep.errors import PixgrepError

FORMATTER = argparse.RawDescriptionHelpFormatter


def _print_json(data: object) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "study",
        help="small studies of a model: rank captions for an image, probe how detail changes a match",
        description="Small studies of how a model matches images and texts (pixgrep.lab.studies). "
        "`pixgrep rank` and `pixgrep probe`, their earlier names, still work.",
        formatter_class=FORMATTER,
    )
    studies = parser.add_subparsers(dest="study", metavar="STUDY", parser_class=type(parser))
    studies.required = True
    _register_rank(studies)
    _register_probe(studies)


# -- pixgrep study rank ------------------------------------------------------------------------


def _register_rank(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rank",
        help="rank captions against one image (cosine and softmax probability)",
        description="Image-to-text matching for one image: the captions sorted by cosine "
        "similarity, with the softmax probability over the given captions at the model's "
        "logit scale (as in CLIP's image-text matching tables); for SigLIP-family models each "
        "caption's own sigmoid probability with the model's logit bias (they do not sum to 1).",
        epilog='example:\n  pixgrep study rank cat.jpg "a cat on a sofa" "a dog on a sofa" "an empty sofa"',
        formatter_class=FORMATTER,
    )
    parser.add_argument("image", metavar="IMAGE", help="the image file")
    parser.add_argument("captions", metavar="CAPTION", nargs="*", help="captions to rank")
    parser.add_argument(
        "--captions", dest="captions_file", metavar="FILE", help="more captions, one per line"
    )
    add_model_option(parser)
    add_json_option(parser)
    parser.set_defaults(func=_run_rank)


def _run_rank(args: argparse.Namespace) -> int:
    from pixgrep.lab.studies import rank_captions
    from pixgrep.textfiles import read_lines

    captions = list(args.captions)
    if args.captions_file:
        captions += read_lines(args.captions_file, "captions file")
    if not captions:
        raise PixgrepError("no captions to rank (give them as arguments or with --captions FILE)")
    if not os.path.isfile(args.image):  # before loading a model
        raise PixgrepError(f"{args.image}: no such file")
    from pixgrep.models import load_encoder

    result = rank_captions(load_encoder(args.model), args.image, captions)
    if args.json:
        _print_json(result)
        return 0
    print(f"{'cosine':>7} {result['probability_kind']:>7}  caption")  # softmax, or SigLIP's sigmoid
    for row in result["captions"]:
        print(f"{row['cosine']:7.4f} {100 * row['probability']:6.2f}%  {row['caption']}")
    return 0


# -- pixgrep study probe -------------------------------------------------------------------------


def _register_probe(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "probe",
        help="best image and cosine for increasingly detailed descriptions",
        description="For increasingly detailed descriptions of the same scene, the best image "
        "under --in and its cosine, to see where added detail stops helping. The folder is "
        "indexed first, as `pixgrep search` does. Descriptions are plain text (no query syntax).",
        epilog="example:\n"
        '  pixgrep study probe "a kitchen" "a kitchen with a kettle" "a kitchen with a red kettle" \\\n'
        '      --in ~/Photos --tone "messy, dingy"\n'
        "With --tone, each description is also searched with the tone words appended\n"
        '("a kitchen, messy, dingy"), and the change in the best cosine is shown.',
        formatter_class=FORMATTER,
    )
    parser.add_argument("levels", metavar="DESCRIPTION", nargs="+", help="descriptions, least detailed first")
    add_in_option(parser, "folder to search (default: .)")
    parser.add_argument(
        "--tone", metavar="WORDS", help='tone words to append to each description, e.g. "messy, dingy"'
    )
    parser.add_argument(
        "-n", "--no-index", action="store_true", help="search the catalog as it is, without indexing"
    )
    add_common_options(parser)
    add_json_option(parser)
    parser.set_defaults(func=_run_probe)


def _run_probe(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pixgrep.lab.studies import probe
    from pixgrep.progress import show_progress

    roots = [Path(os.path.expanduser(r)) for r in (args.roots or ["."])]
    for root in roots:
        if not root.exists():
            raise PixgrepError(f"{root}: no such folder")
    roots = [r.resolve() for r in roots]
    from pixgrep.api import open_catalog

    with open_catalog(args.catalog, args.model) as catalog:
        if not args.no_index:
            catalog.index(roots, progress=show_progress())
        result = probe(catalog, args.levels, roots, args.tone)
    if args.json:
        _print_json(result)
        return 0
    header = f"{'level':>5} {'cosine':>7} {'change':>7}"
    if args.tone:
        header += f" {'+tone':>7} {'change':>7}"
    print(f"{header}  description")
    for row in result["levels"]:
        change = "" if row["change"] is None else f"{row['change']:+.4f}"
        line = f"{row['level']:5d} {row['cosine']:7.4f} {change:>7}"
        if args.tone:
            line += f" {row['tone']['cosine']:7.4f} {row['tone']['change']:+7.4f}"
        print(f"{line}  {row['query']}")
        print(f"{'':6}best: {row['best']}")
        if args.tone:
            print(f"{'':6}best with tone: {row['tone']['best']}")
    return 0
