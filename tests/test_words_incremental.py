"""The word index once built costs what changed: an index run that adds, renames or removes a few
files rebuilds their rows only, never reading every path of the catalog again."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from fakes import FakeEncoder
from PIL import Image

import pixgrep
from pixgrep.catalog import words
from pixgrep.search.words import fts_query


def picture(path: Path, seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def names(results) -> list[str]:
    return sorted(os.path.basename(r.path) for r in results)


def test_a_sync_after_the_first_reads_only_the_rows_written_since(tmp_path, monkeypatch):
    root = tmp_path / "pics"
    picture(root / "harbour_sunset.png", 1)
    picture(root / "mountain_lake.png", 2)
    whole_reads = []
    real_sources = words._sources
    monkeypatch.setattr(
        words,
        "_sources",
        lambda db, ids=None, span=None: (whole_reads.append(ids is None), real_sources(db, ids, span))[1],
    )
    with pixgrep.open_catalog(tmp_path / "c.db", encoder=FakeEncoder()) as cat:
        cat.index([root])
        assert whole_reads == [True]  # the first sync builds the index from every row
        whole_reads.clear()
        picture(root / "lighthouse_storm.png", 3)
        (root / "harbour_sunset.png").rename(root / "harbour_dawn.png")
        (root / "mountain_lake.png").unlink()
        cat.index([root])
        assert names(cat.search("words:lighthouse")) == ["lighthouse_storm.png"]
        assert names(cat.search("words:harbour")) == ["harbour_dawn.png"]
        assert cat.search("words:sunset") == [] and cat.search("words:mountain") == []
        assert whole_reads and not any(whole_reads)  # rows by id only
        stored = cat._db.conn.execute("SELECT COUNT(*) FROM words_source").fetchone()[0]
        assert stored == 2


def test_a_catalog_synced_before_marks_existed_is_compared_whole_once(tmp_path):
    root = tmp_path / "pics"
    picture(root / "harbour_sunset.png", 1)
    with pixgrep.open_catalog(tmp_path / "c.db", encoder=FakeEncoder()) as cat:
        cat.index([root])
        with cat._db.conn:  # what an older pixgrep left: an index without the mark
            cat._db.conn.execute("DELETE FROM meta WHERE key = ?", (words.SYNC_MARK_KEY,))
            cat._db.conn.execute("DELETE FROM words")  # ... and rows it lost, written long ago
            cat._db.conn.execute("DELETE FROM words_source")
            cat._db.conn.execute("UPDATE images SET indexed_at = 1")
            cat._db.conn.execute("UPDATE meta SET value = 'old' WHERE key = ?", (words.SYNC_META_KEY,))
        assert names(cat.search("words:harbour")) == ["harbour_sunset.png"]


def test_the_end_of_an_import_builds_the_word_index_so_the_first_search_has_nothing_to_build(
    tmp_path, monkeypatch
):
    pa = pytest.importorskip("pyarrow", reason="importing Parquet needs pip install 'pixgrep[parquet]'")
    import pyarrow.parquet as pq

    source = tmp_path / "clip-out"
    (source / "img_emb").mkdir(parents=True)
    (source / "metadata").mkdir()
    vectors = np.random.default_rng(0).standard_normal((3, FakeEncoder.dim)).astype(np.float16)
    np.save(source / "img_emb" / "img_emb_0.npy", vectors)
    paths = ["/data/lighthouse_storm.jpg", "/data/harbour_dawn.jpg", "/data/mountain_lake.jpg"]
    pq.write_table(pa.table({"image_path": paths}), source / "metadata" / "metadata_0.parquet")
    with pixgrep.open_catalog(tmp_path / "c.db", encoder=FakeEncoder()) as cat:
        cat.import_parquet([source])
        cat.prepare_search(large_only=True)  # what `pixgrep import` ends with
        assert words.has_index(cat._db)
        monkeypatch.setattr(words, "_rebuild", lambda *a: pytest.fail("the first search rebuilt rows"))
        assert names(cat.search("words:lighthouse", roots=["/"])) == ["lighthouse_storm.jpg"]


def test_every_loose_prefix_has_a_prefix_index_of_its_length(tmp_path):
    # FTS5 answers a prefix of any other length by a scan that can read the whole row list of a
    # word every row holds ("pictures"): ~17 ms per query at 10M rows.
    for n in range(1, 40):
        query = fts_query("x" * n, loose=True)
        assert query is not None
        if query.endswith("*"):
            assert len(query.strip('"*')) in words.PREFIX_LENGTHS
    with pixgrep.open_catalog(tmp_path / "c.db", encoder=FakeEncoder()) as cat:
        cat.index([tmp_path])
        assert words._has_current_prefixes(cat._db)
        sql = cat._db.conn.execute("SELECT sql FROM sqlite_master WHERE name = 'words'").fetchone()[0]
        assert "prefix = '2 3 4 5'" in sql


def _old_layout(db) -> None:
    """What an older pixgrep built: the same rows, prefix indexes of 2 and 3 letters only."""
    with db.conn:
        db.conn.execute("DROP TABLE words")
        db.conn.execute("DELETE FROM words_source")
        db.conn.execute(
            "CREATE VIRTUAL TABLE words USING fts5(text, name, folder, meta, caption, "
            "tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3')"
        )
    words.sync(db, force=True)


def test_an_index_with_older_prefix_lengths_is_searched_as_it_is_and_rebuilt_by_the_next_run(
    tmp_path, monkeypatch
):
    root = tmp_path / "pics"
    picture(root / "harbour_sunsets.png", 1)
    picture(root / "mountain_lake.png", 2)
    with pixgrep.open_catalog(tmp_path / "c.db", encoder=FakeEncoder()) as cat:
        cat.index([root])
        _old_layout(cat._db)
        assert not words._has_current_prefixes(cat._db)
        assert names(cat.search("words:harbour")) == ["harbour_sunsets.png"]
        assert names(cat.search("words:sunsetting")) == ["harbour_sunsets.png"]  # loose: "sunse"*
        cat.prepare_search(relayout_words=False)  # a server's warm-up: no minutes under its lock
        assert not words._has_current_prefixes(cat._db)
    with pixgrep.open_catalog(tmp_path / "c.db", encoder=FakeEncoder()) as cat:
        picture(root / "lighthouse_storm.png", 3)
        cat.index([root])
        cat.prepare_search(large_only=True)  # what `pixgrep index` ends with
        assert words._has_current_prefixes(cat._db)
        monkeypatch.setattr(words, "_rebuild", lambda *a: pytest.fail("the search rebuilt rows"))
        assert names(cat.search("words:harbour")) == ["harbour_sunsets.png"]
        assert names(cat.search("words:lighthouse")) == ["lighthouse_storm.png"]
        assert names(cat.search("words:sunsetting")) == ["harbour_sunsets.png"]
        assert cat._db.conn.execute("SELECT COUNT(*) FROM words_source").fetchone()[0] == 3


def test_a_whole_sync_goes_in_steps_and_drops_rows_whose_image_is_gone(tmp_path, monkeypatch):
    root = tmp_path / "pics"
    for n, name in enumerate(("harbour", "lighthouse", "meadow", "glacier", "canyon")):
        picture(root / f"{name}_view.png", n)
    with pixgrep.open_catalog(tmp_path / "c.db", encoder=FakeEncoder()) as cat:
        cat.index([root])
        db = cat._db
        monkeypatch.setattr(words, "WHOLE_STEP", 2)  # three steps over five images
        ids = [row[0] for row in db.conn.execute("SELECT id FROM images ORDER BY id")]
        with db.conn:  # rows an index lost, and rows of images no longer there (before and after)
            db.conn.execute("DELETE FROM words WHERE rowid IN (?, ?)", (ids[1], ids[4]))
            db.conn.execute("DELETE FROM words_source WHERE image_id IN (?, ?)", (ids[1], ids[4]))
            for ghost in (ids[0] - 1, ids[-1] + 7):
                db.conn.execute("INSERT INTO words (rowid, name) VALUES (?, 'ghost')", (ghost,))
                db.conn.execute("INSERT INTO words_source VALUES (?, x'00')", (ghost,))
        assert words.sync(db, force=True) == 4  # two rebuilt, two removed
        assert cat.search("words:ghost") == []
        for name in ("harbour", "lighthouse", "meadow", "glacier", "canyon"):
            assert names(cat.search(f"words:{name}")) == [f"{name}_view.png"]
        assert db.conn.execute("SELECT COUNT(*) FROM words_source").fetchone()[0] == 5
        assert words.sync(db, force=True) == 0


def test_rows_in_step_inside_the_sync_window_are_not_rebuilt(tmp_path, monkeypatch):
    # Rows written in the last MARK_SLACK_S before a sync are named again by the next one (a
    # writer may commit after it stamped them); those the index already holds as they are stay.
    root = tmp_path / "pics"
    for n, name in enumerate(("harbour", "lighthouse", "meadow")):
        picture(root / f"{name}_view.png", n)
    rebuilt: list[int] = []
    real_rebuild = words._rebuild
    monkeypatch.setattr(words, "_rebuild", lambda db, rows: (rebuilt.extend(rows), real_rebuild(db, rows))[1])
    with pixgrep.open_catalog(tmp_path / "c.db", encoder=FakeEncoder()) as cat:
        cat.index([root])
        assert len(rebuilt) == 3
        rebuilt.clear()
        picture(root / "glacier_view.png", 9)
        (root / "meadow_view.png").rename(root / "canyon_view.png")
        cat.index([root])  # its sync names all four rows (written within the window)
        assert len(rebuilt) == 2  # the new file and the renamed one
        assert names(cat.search("words:glacier")) == ["glacier_view.png"]
        assert names(cat.search("words:canyon")) == ["canyon_view.png"]
        assert cat.search("words:meadow") == []
        assert names(cat.search("words:harbour")) == ["harbour_view.png"]
