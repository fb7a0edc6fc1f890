"""`pixgrep eval words FOLDER --queries FILE` (eval/words.py; docs/words.md)."""

from __future__ import annotations

import argparse
import json


def register(benchmarks: argparse._SubParsersAction) -> None:
    from pixgrep.cli.options import add_common_options, add_json_option
    from pixgrep.cli.words_options import add_ocr_option

    parser = benchmarks.add_parser(
        "words",
        help="words retrieval: is the expected picture first for (query, expected image) rows",
        description="Index FOLDER, then search each query of a TSV (query<TAB>expected, or a header "
        "with query, expected and kind columns) with words and by CLIP alone; per kind: the share "
        "with the expected picture first under both, and how often the first result is the same.",
    )
    parser.add_argument("dir", metavar="FOLDER", help="the pictures (expected names are relative to it)")
    parser.add_argument("--queries", required=True, metavar="FILE", help="the (query, expected) TSV")
    add_ocr_option(parser)
    add_common_options(parser)
    add_json_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pixgrep.api import open_catalog
    from pixgrep.lab.eval.words import read_queries, run_words

    read_queries(args.queries)  # a bad file fails before the model loads
    with open_catalog(args.catalog, args.model) as catalog:
        result = run_words(catalog, args.dir, args.queries, ocr=args.ocr)
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return 0
    text = result["text"]
    read = f", text found in {text['with_text']} of {text['text_read']} read" if text["ocr"] else ", OCR off"
    print(f"{result['images']} images{read}; model {result['model']}")
    print(f"{'kind':18} {'queries':>7} {'first':>7} {'CLIP alone':>10} {'same first':>10}")
    for kind, stat in result["kinds"].items():
        print(
            f"{kind:18} {stat['queries']:7d} {stat['first']:6.1f}% {stat['first_clip_alone']:9.1f}% "
            f"{stat['same_first']:9.1f}%"
        )
    return 0
