"""The word index's prefix terms on file names shaped like a real photo library, with the prefix
indexes an older pixgrep built ("2 3") and the ones it builds now (catalog/words.py PREFIX_LENGTHS).

    python benchmarks/bench_word_prefix.py --rows 1000000

Rows are named as phones and cameras name them (`IMG_1234.JPG`, `DSC01234.JPG`, `PXL_...jpg`,
`Screenshot ... .png`, `WhatsApp Image ... .jpeg`) under `/home/alice/Pictures/YEAR/DATE PLACE/`,
split into words by pixgrep's own name_words and folder_words. FTS5 finds a prefix that has no
prefix index of its length by scanning terms from it on, and that scan first reads the row list of
the term sorted just before it: behind `pictures` (every row) that is the whole library. Prints,
for each layout, the bytes per row of the FTS data and the best-of-3 time of each query; the
queries are what the search's loose tier asks for a few words (search/words.py fts_query), a
prefix the user typed, and whole words that many rows hold (bm25 over every row that matches),
with the probe that stops at 10,000 matches (in auto mode such words rank as CLIP alone).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from pixgrep.catalog.words import PREFIX_LENGTHS, folder_words, name_words  # noqa: E402
from pixgrep.search.words import fts_query  # noqa: E402

PLACES = "paris rome beach mountains wedding birthday garden christmas kids school lake hiking berlin tokyo"
LOOSE_WORDS = ("playground", "police", "portrait", "planes", "sunsets", "entrance", "through")
TYPED = ('"pict"*', '"playgro"*')
WHOLE = ('"beach"', '"img"')


def library_path(i: int, rng: random.Random) -> str:
    year = 2005 + i % 20
    folder = f"/home/alice/Pictures/{year}/{year}-{(i // 300) % 12 + 1:02d}-{(i // 30) % 28 + 1:02d} "
    folder += rng.choice(PLACES.split())
    names = (
        f"IMG_{i % 10000:04d}.JPG",
        f"DSC{i % 100000:05d}.JPG",
        f"PXL_{year}0714_{rng.randrange(10**9):09d}.jpg",
        f"Screenshot {year}-07-14 at 12.{i % 60:02d}.{i % 59:02d}.png",
        f"WhatsApp Image {year}-07-14 at 12.{i % 60:02d}.{i % 59:02d}.jpeg",
    )
    return f"{folder}/{names[i % 5]}"


def build(path: str, rows: int, prefixes: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE VIRTUAL TABLE words USING fts5(text, name, folder, meta, caption, "
        f"tokenize = 'unicode61 remove_diacritics 2', prefix = '{prefixes}')"
    )
    rng = random.Random(1)
    with conn:
        for start in range(0, rows, 50_000):
            batch = [(i, library_path(i, rng)) for i in range(start, min(rows, start + 50_000))]
            conn.executemany(
                "INSERT INTO words (rowid, text, name, folder, meta, caption) VALUES (?, '', ?, ?, '', '')",
                [(i, name_words(os.path.basename(p)), folder_words(p)) for i, p in batch],
            )
    return conn


RANKED = "SELECT COUNT(*) FROM (SELECT rowid FROM words WHERE words MATCH ? ORDER BY bm25(words) LIMIT 1000)"
# What the search asks first in auto mode (search/words.py COMMON_FROM): whether 10,000 images match.
PROBE = "SELECT COUNT(*) FROM (SELECT rowid FROM words WHERE words MATCH ? LIMIT 10000)"


def best_ms(conn: sqlite3.Connection, query: str, sql: str = RANKED) -> str:
    times, found = [], 0
    for _ in range(3):
        start = time.perf_counter()
        found = conn.execute(sql, (query,)).fetchone()[0]
        times.append(time.perf_counter() - start)
    return f"{min(times) * 1000:.2f} ms, {found} rows"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    report: dict = {"rows": args.rows, "layouts": {}}
    with tempfile.TemporaryDirectory() as work:
        for label, prefixes, longest in (
            ("then", "2 3", None),
            ("now", " ".join(map(str, PREFIX_LENGTHS)), max(PREFIX_LENGTHS)),
        ):
            conn = build(os.path.join(work, f"{label}.db"), args.rows, prefixes)
            data = conn.execute("SELECT SUM(length(block)) FROM words_data").fetchone()[0]
            # The loose tier's prefixes as each version asked them: the word less two letters,
            # and now at most `longest` letters.
            loose = [
                f'"{w[: len(w) - 2 if longest is None else min(len(w) - 2, longest)]}"*' for w in LOOSE_WORDS
            ]
            assert longest is None or loose == [fts_query(w, loose=True) for w in LOOSE_WORDS]
            queries = {q: best_ms(conn, q) for q in (*loose, *TYPED, *WHOLE)}
            queries |= {f"{q} (the probe)": best_ms(conn, q, PROBE) for q in WHOLE}
            report["layouts"][label] = {
                "prefixes": prefixes,
                "fts_data_bytes_per_row": round(data / args.rows, 1),
                "best_of_3": queries,
            }
            conn.close()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
