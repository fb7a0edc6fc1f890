"""`pixgrep duplicates [--in DIR] [--json]`: the groups of near-identical images in the catalog.

Parsing and rendering only; the grouping is search/dedup.py (through api.Catalog.duplicates).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from pixgrep.errors import PixgrepError

DESCRIPTION = """\
List groups of near-identical images already in the catalog: the same file content, or image
vectors at least the duplicate threshold apart whose pictures also look alike (perceptual
fingerprints: re-encoded and resized copies, not other shots of one scene). Nothing is indexed,
moved or deleted. Within a group the best copy comes first: the largest picture, then the newest."""


def register(subparsers) -> None:
    from pixgrep.cli.options import add_common_options, add_in_option, add_json_option, number_between

    parser = subparsers.add_parser(
        "duplicates",
        help="list groups of near-identical images in the catalog",
        description=DESCRIPTION,
        epilog="exit status: 0 groups printed, 1 no duplicates, 2 an error.",
    )
    add_in_option(parser, "only images below DIR, repeatable (default: the whole catalog)")
    parser.add_argument(
        "--threshold",
        type=number_between(0.0, 1.0, "a duplicate threshold (a cosine)", low_open=True),
        default=None,
        metavar="COS",
        help="image-image cosine from which two images are duplicates (default: the model's measured "
        "threshold, 0.65 for pixgrep-mini; for other models only identical files)",
    )
    add_json_option(parser, 'one JSON object per group: {"count": N, "images": [...]}')
    add_common_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    roots = None
    if args.roots:
        roots = [os.path.abspath(os.path.expanduser(root)) for root in args.roots]
        for given, root in zip(args.roots, roots, strict=True):
            if not os.path.isdir(root):
                raise PixgrepError(f"--in {given}: no such folder")

    import pixgrep

    with pixgrep.open_catalog(args.catalog, args.model, create=False) as catalog:
        groups = catalog.duplicates(roots=roots, threshold=args.threshold)
    out = []
    for group in groups:
        if args.json:
            images = [
                {"path": r.path, "size": r.size, "width": r.width, "height": r.height, "taken_at": r.taken_at}
                for r in group
            ]
            out.append(json.dumps({"count": len(group), "images": images}, ensure_ascii=False) + "\n")
        else:
            out.append(f"{len(group)} near-identical:\n" + "".join(f"  {r.path}\n" for r in group))
    sys.stdout.write("".join(out))
    if not groups:
        print("pixgrep: no duplicates found", file=sys.stderr)
        return 1
    if not args.json:
        extra = sum(len(g) - 1 for g in groups)
        print(f"{len(groups)} group(s), {extra} image(s) beyond the first of each", file=sys.stderr)
    return 0
