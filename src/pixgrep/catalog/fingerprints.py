"""Perceptual fingerprints per content hash (images/fingerprint.py): read for duplicate folding,
and computed once for the pictures a catalog stored before it kept them.

An index run stores the fingerprint of every picture it decodes for the model, in the same
transaction as its vector. Pictures stored by an older pixgrep have none: the first index run
that finds the table incomplete decodes those (every local, decodable file, one per content
hash), committing every COMMIT_EVERY, then marks the catalog complete, so later runs pay one
meta lookup. Ctrl-C keeps what was committed and the next run goes on. Imported rows (no file)
never get one: they fold only with identical copies.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Iterable

from pixgrep.catalog.db import SYNTHETIC_END, SYNTHETIC_PREFIX, CatalogDB, one_line_errors

__all__ = ["fill_missing", "fingerprints_of"]

COMPLETE_KEY = "fingerprints_complete"
COMMIT_EVERY = 256
DRAFT_SIDE = 256  # JPEGs decode at a reduced scale: the fingerprint reads a 64 x 64 thumbnail


@one_line_errors  # a damaged page among them is one line, as for the catalog's own reads
def fingerprints_of(db: CatalogDB, hashes: Iterable[str]) -> dict[str, bytes]:
    """The stored fingerprints of these content hashes (those without one are left out)."""
    wanted = list(dict.fromkeys(hashes))
    out: dict[str, bytes] = {}
    try:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for digest, bits in db.conn.execute(
                f"SELECT content_hash, bits FROM fingerprints WHERE content_hash IN ({marks}) "
                "AND bits IS NOT NULL",
                chunk,
            ):
                out[digest] = bytes(bits)
    except sqlite3.OperationalError as exc:  # a read-only catalog from before the table existed
        if "no such table" not in str(exc):
            raise
    return out


def _missing(db: CatalogDB) -> list[tuple[str, str]]:
    """(content hash, path) of one local, decoded file per content hash without a fingerprint."""
    rows = db.conn.execute(
        "SELECT content_hash, MIN(path) FROM images WHERE error IS NULL AND content_hash != '' "
        "AND NOT (content_hash >= ? AND content_hash < ?) "  # imported rows: no file
        "AND NOT EXISTS (SELECT 1 FROM fingerprints f WHERE f.content_hash = images.content_hash) "
        "GROUP BY content_hash",
        (SYNTHETIC_PREFIX, SYNTHETIC_END),
    ).fetchall()
    return [(digest, path) for digest, path in rows if isinstance(path, str) and os.path.isabs(path)]


def _compute(job: tuple[str, str]) -> tuple[str, bytes | None]:
    from pixgrep.images.decode import ImageDecodeError, decode_file  # index runs only, not searches
    from pixgrep.images.fingerprint import fingerprint

    digest, path = job
    try:
        return digest, fingerprint(decode_file(path, draft_size=DRAFT_SIDE)[0])
    except (ImageDecodeError, OSError):
        return digest, None  # stored as tried: a file that changes gets a new hash


def fill_missing(db: CatalogDB, *, progress: bool = False) -> int:
    """Fingerprint the stored pictures that have none (see the module docstring); how many."""
    if db.read_only or db.get_meta(COMPLETE_KEY) == "1":
        return 0
    todo = _missing(db)
    bar = None
    if progress and todo and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="img", desc="fingerprints (once)", file=sys.stderr, leave=False)
    done: list[tuple[str, bytes | None]] = []

    def commit() -> None:
        with db.conn:
            db.conn.executemany("INSERT OR REPLACE INTO fingerprints VALUES (?, ?)", done)
        db.committed()
        done.clear()

    from concurrent.futures import ThreadPoolExecutor

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
            for result in pool.map(_compute, todo):
                done.append(result)
                if bar is not None:
                    bar.update(1)
                if len(done) >= COMMIT_EVERY:
                    commit()
        commit()
    finally:
        if bar is not None:
            bar.close()
    db.set_meta(COMPLETE_KEY, "1")
    return len(todo)
