"""`pixgrep export-vectors --parquet` (earlier name: `export`) and `pixgrep import`: embeddings
out of and into a catalog."""

from __future__ import annotations

import argparse
import json
import sys

EXPORT_EPILOG = """\
examples:
  pixgrep export-vectors --parquet photos.parquet         the catalog's one model
  pixgrep export-vectors --parquet photos.parquet --model pixgrep-mini

Columns: path, content_hash, model, vector (float32), width, height, taken_at, size, mtime_ns, format,
path_bytes, caption (of imported rows).
"""

IMPORT_EPILOG = """\
examples:
  pixgrep import photos.parquet --model pixgrep-mini       a pixgrep export
  pixgrep import /data/clip-out --model ViT-B-32__laion2b_s34b_b79k
                                                          clip-retrieval output (img_emb/ + metadata/)
  pixgrep -n --in /data/photos "a red car"                 search what was imported

Needed columns: a path ('path' or 'image_path') and the vector ('vector' or 'embedding'; a clip-retrieval
folder has its vectors in img_emb/*.npy). A 'caption', 'TEXT' or 'text' column is kept and searched as
words. Rows without a content hash are replaced when a local index reads the same file. Ctrl-C is safe:
run the same command again to resume.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from pixgrep.cli.options import add_batch_size_option, add_common_options, add_json_option

    export = subparsers.add_parser(
        "export-vectors",
        aliases=["export"],  # its earlier name; `models export` writes a model folder, not vectors
        help="write the catalog's vectors to a Parquet file (earlier name: export)",
        description="Write one row per image with a vector of the model: path, content hash, model id,\n"
        "vector, width, height, capture time.",
        epilog=EXPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument(
        "--parquet",
        required=True,
        metavar="OUT",
        help="Parquet file to write (an earlier export there is replaced; any other file is refused)",
    )
    add_common_options(export, model=False)
    export.add_argument(
        "--model",
        metavar="NAME_OR_DIR",
        help="whose vectors to export: a model id in the catalog, a model name or folder "
        "(default: the catalog's only model)",
    )
    export.set_defaults(func=_export)

    imp = subparsers.add_parser(
        "import",
        help="add vectors from Parquet files or clip-retrieval output to the catalog",
        description="Store images and their vectors computed elsewhere (another pixgrep, a cluster,\n"
        "clip-retrieval) in the catalog, so they can be searched here.",
        epilog=IMPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.add_argument("inputs", nargs="+", metavar="PARQUET_OR_DIR", help="Parquet file or folder")
    add_batch_size_option(imp, default=10_000, help="rows per catalog transaction (default 10000)")
    add_json_option(imp, "print the summary as one JSON object")
    add_common_options(imp)
    imp.set_defaults(func=_import)


def _export_model(catalog, name: str | None) -> str:
    from pixgrep.errors import PixgrepError

    if name is None:  # the catalog's model, by the rule every command follows (api.Catalog.held_model)
        held = catalog.held_model()
        if held is None:
            raise PixgrepError("the catalog holds no vectors to export")
        return held
    models = catalog.vector_models()
    if name in models:
        return name
    from pixgrep.models import load_encoder

    return load_encoder(name).model_id


def _export(args: argparse.Namespace) -> int:
    from pixgrep.api import open_catalog

    with open_catalog(args.catalog, create=False) as catalog:
        model = _export_model(catalog, args.model)
        rows = catalog.export_parquet(args.parquet, model)
    print(f"pixgrep: wrote {rows} rows of model {model} to {args.parquet}", file=sys.stderr)
    return 0


def _import(args: argparse.Namespace) -> int:
    from pixgrep.api import open_catalog
    from pixgrep.catalog.parquet import find_sources

    find_sources(args.inputs)  # unreadable or unusable files fail before the model or the catalog opens
    with open_catalog(args.catalog, args.model) as catalog:
        summary = catalog.import_parquet(args.inputs, batch_size=args.batch_size)
        catalog.prepare_search(progress=True, large_only=True)  # the ANN index now, not in the first query
    if args.json:
        print(json.dumps(summary.to_json()))
    else:
        resumed = f" ({summary.resumed} stored by an earlier, interrupted run)" if summary.resumed else ""
        print(
            f"pixgrep: imported {summary.rows} rows from {summary.files} file(s) in {summary.seconds:.1f} s"
            f"{resumed}",
            file=sys.stderr,
        )
    return 0
