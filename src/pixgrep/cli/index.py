"""`pixgrep index` and `pixgrep stats`. Heavy imports happen inside the handlers."""

from __future__ import annotations

import argparse
import json

INDEX_EPILOG = """\
examples:
  pixgrep index ~/Photos                          index new and changed images, drop deleted ones
  pixgrep index ~/Photos /mnt/nas/pictures        several folders in one run
  pixgrep index . --exclude '*.png' --exclude 'drafts'
  pixgrep index ~/Photos --json                   one JSON object: found, encoded, reused, skipped,
                                                  removed, seconds
  pixgrep index /mnt/shared/photos --ray auto     the model runs on the Ray cluster this machine is in

Skipped: hidden files and folders (unless --include-hidden), junk folders (.git, node_modules,
@eaDir, .thumbnails, $RECYCLE.BIN, lost+found, ...), links to folders. A file that cannot be
decoded is reported once and not retried until it changes. Ctrl-C is safe: the next run resumes.
"""

STATS_EPILOG = """\
examples:
  pixgrep stats
  pixgrep stats --json --catalog /tmp/test.db
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from pixgrep.cli.options import (
        add_batch_size_option,
        add_common_options,
        add_json_option,
        add_walk_options,
    )

    index = subparsers.add_parser(
        "index",
        help="index the images under folders (new, changed, moved, deleted)",
        description="Bring the catalog up to date for every image under the folders: encode new and\n"
        "changed files, reuse stored vectors for moved or duplicated ones, drop rows of deleted files.",
        epilog=INDEX_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    index.add_argument("dirs", nargs="+", metavar="PATH", help="folder (or single image file) to index")
    add_walk_options(
        index,
        exclude_help="skip files and folders whose name, path below DIR, or absolute path matches "
        "(repeatable)",
        hidden_help="also index hidden files and folders",
    )
    add_batch_size_option(
        index,
        default=None,
        help="images per model call and per catalog transaction (default: 32 on the CPU, 128 on a GPU)",
    )
    index.add_argument(
        "--ray",
        nargs="?",
        const=True,
        default=False,
        metavar="ADDRESS",
        help="run the model on a Ray cluster: 'auto', ray://HOST:PORT or a GCS HOST:PORT; no ADDRESS "
        "starts a local Ray instance (needs the ray extra; docs/distributed.md)",
    )
    from pixgrep.cli.words_options import add_ocr_option  # words: text in pictures

    add_ocr_option(index)
    add_json_option(index, "print the summary as one JSON object")
    add_common_options(index)
    index.set_defaults(func=_index)

    stats = subparsers.add_parser(
        "stats",
        help="what the catalog holds",
        description="Catalog path, image and error counts, vectors per model, how many images have a GPS "
        "position, a place name, a camera and keywords, size on disk.",
        epilog=STATS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_json_option(stats, "print one JSON object")
    add_common_options(stats, model=False)
    stats.set_defaults(func=_stats)


def _index(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pixgrep.api import open_catalog
    from pixgrep.catalog.ingest import validate_roots

    # A typo in a path fails before the model loads. With --ray, object-store URIs (s3://, gs://)
    # are listed later, on the driver, through pyarrow.
    local = [Path(d) for d in args.dirs if not (args.ray and "://" in d)]
    if local or not args.ray:
        validate_roots(local)
    if args.ocr:
        from pixgrep.images.ocr import require_ocr

        require_ocr()  # the missing extra fails before the model loads
    if args.ray:
        from pixgrep.catalog.ray_ingest import require_ray

        require_ray()  # a missing extra fails before the model loads, too
    with open_catalog(args.catalog, args.model) as catalog:
        summary = catalog.index(
            args.dirs,
            exclude=args.exclude,
            include_hidden=args.include_hidden,
            progress=True,
            batch_size=args.batch_size or _default_batch(catalog, args.ray),
            ray=args.ray,
            ocr=args.ocr,
        )
        catalog.prepare_search(progress=True, large_only=True)  # the ANN index now, not in the first query
    if args.json:
        print(json.dumps(summary.to_json()))
    return 0


def _default_batch(catalog, ray) -> int:
    """The device's batch size (models/devices.py); 32 for Ray, whose workers pick their own device."""
    return 32 if ray else int(getattr(catalog.encoder, "preferred_batch_size", 32))


def _stats(args: argparse.Namespace) -> int:
    from pixgrep.api import open_catalog
    from pixgrep.cli.options import human_size

    with open_catalog(args.catalog, create=False) as catalog:
        stats = catalog.stats()
    if args.json:
        print(json.dumps(stats))
        return 0
    print(f"catalog   {stats['catalog']}")
    print(f"images    {stats['images']}")
    print(f"errors    {stats['errors']}  (files that could not be decoded)")
    vectors = stats["vectors"] or {}
    if not vectors:
        print("vectors   none")
    for i, (model, count) in enumerate(sorted(vectors.items())):
        print(f"{'vectors' if i == 0 else '':<9} {count}  {model}")
    if "with_gps" in stats:
        print(f"gps       {stats['with_gps']}  (a place name: {stats['with_place']})")
        print(f"camera    {stats['with_camera']}  (make or model known)")
        print(f"keywords  {stats['with_keywords']}  ({stats['keywords']} different)")
    if "with_text" in stats:  # words: OCR (docs/words.md)
        ocr = "on" if stats["ocr"] else "off (pixgrep index --ocr reads it)"
        print(f"text      {stats['with_text']}  (of {stats['text_read']} read; OCR {ocr})")
    if stats.get("with_caption"):  # captions imported from Parquet
        print(f"captions  {stats['with_caption']}  (imported)")
    for model, index in sorted((stats.get("search_index") or {}).items()):
        if index is None:
            print(f"search    {model}: no index yet (built by the next search)")
            continue
        how = f"ANN: {index['ann']}" if index["ann"] else f"exact (ANN from {index['ann_min_rows']} images)"
        print(
            f"search    {model}: {index['rows']} rows, {how}; "
            f"{index['appended']} appended, {index['dead']} dead"
        )
    print(f"size      {human_size(stats['bytes'])}")
    return 0
