"""`pixgrep eval words`: how often the expected picture comes first for the words people say.

The queries file is a TSV: `query<TAB>expected` rows, or with a header naming the columns
`query`, `expected` and optionally `kind` (results are reported per kind). `expected` is a file
name or a path relative to the folder. Each query is searched twice over the folder: with words
(the default ranking) and by CLIP alone; reported per kind: the share with the expected picture
first, under both, and the share of queries whose first result is the same under both (for
queries that name no written word, that share says the words left the ranking alone).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pixgrep.errors import PixgrepError


def read_queries(path: str | os.PathLike) -> list[tuple[str, str, str]]:
    """(kind, query, expected) rows; PixgrepError for a file it cannot use."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [row for row in csv.reader(f, delimiter="\t") if row and any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError) as exc:
        raise PixgrepError(f"cannot read the queries file {path}: {exc}") from None
    if rows and {"query", "expected"} <= {cell.strip().lower() for cell in rows[0]}:
        header = [cell.strip().lower() for cell in rows.pop(0)]
        at = {name: header.index(name) for name in ("query", "expected")}
        kind_at = header.index("kind") if "kind" in header else None
        out = [
            (row[kind_at] if kind_at is not None else "query", row[at["query"]], row[at["expected"]])
            for row in rows
            if len(row) > max(at.values())
        ]
    else:
        out = [("query", row[0], row[1]) for row in rows if len(row) >= 2]
    if not out:
        raise PixgrepError(f"{path}: no query<TAB>expected rows")
    return out


def run_words(
    catalog: Any,
    folder: str | os.PathLike,
    queries: str | os.PathLike,
    *,
    ocr: bool | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Index `folder` (reading text when `ocr` or the catalog says so), then search every query."""
    root = Path(os.path.expanduser(folder)).resolve()
    if not root.is_dir():
        raise PixgrepError(f"no such folder: {folder}")
    rows = read_queries(queries)
    summary = catalog.index([root], ocr=ocr)
    per_kind: dict[str, dict[str, float]] = {}
    for kind, query, expected in rows:
        target = str(root / expected)
        both = {}
        for mode in ("auto", "off"):
            found = catalog.search(query, k=1, roots=[str(root)], words=mode)
            both[mode] = found[0].path if found else None
        stat = per_kind.setdefault(kind, {"queries": 0, "first": 0, "first_clip_alone": 0, "same_first": 0})
        stat["queries"] += 1
        stat["first"] += both["auto"] == target
        stat["first_clip_alone"] += both["off"] == target
        stat["same_first"] += both["auto"] == both["off"]
    for stat in per_kind.values():
        n = stat["queries"]
        for key in ("first", "first_clip_alone", "same_first"):
            stat[key] = round(100.0 * stat[key] / n, 1)
    return {
        "folder": str(root),
        "model": catalog.encoder.model_id,
        "images": summary.found,
        "text": {key: catalog.stats()[key] for key in ("ocr", "with_text", "text_read", "text_free")},
        "kinds": per_kind,
    }
