"""Captions of imported Parquet rows in the word index: kept per row (clip-retrieval's `caption`,
LAION's `TEXT`), indexed in the import's own transaction, replaced by a re-import, rebuilt with a
missing index, exported and imported again, counted by `pixgrep stats`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fakes import FakeEncoder

pa = pytest.importorskip("pyarrow", reason="needs the parquet extra (pip install 'pixgrep[parquet]')")
pq = pytest.importorskip("pyarrow.parquet")

import pixgrep  # noqa: E402
from pixgrep.catalog import words  # noqa: E402

COUNT = 30
CAPTIONED = 7  # the row whose caption names the lighthouse
PATHS = [f"/mnt/cluster/laion/{n:05d}.jpg" for n in range(COUNT)]


def captions(special: str | None = "an old lighthouse above the harbour at dusk") -> list[str | None]:
    rows: list[str | None] = [f"a photo of a street, number {n}" for n in range(COUNT)]
    rows[3] = None  # a row without a caption
    rows[CAPTIONED] = special
    return rows


def write_rows(path: Path, texts: list[str | None] | None, column: str = "caption", dim: int = 192) -> Path:
    """A Parquet file of COUNT rows at PATHS with random vectors and, unless None, a text column."""
    vectors = np.random.default_rng(1).standard_normal((COUNT, dim)).astype(np.float32)
    table = {"image_path": PATHS, "embedding": pa.array(list(vectors), pa.list_(pa.float32(), dim))}
    if texts is not None:
        table[column] = pa.array(texts, pa.string())
    pq.write_table(pa.table(table), path)
    return path


def open_cat(path: Path) -> pixgrep.Catalog:
    return pixgrep.open_catalog(path, encoder=FakeEncoder())


def found(cat: pixgrep.Catalog, query: str, **options) -> list[str]:
    return [r.path for r in cat.search(query, roots=["/"], **options)]


@pytest.mark.parametrize("column", ["caption", "TEXT", "text"])
def test_a_word_query_naming_a_caption_finds_that_row_first(tmp_path, column):
    with open_cat(tmp_path / "c.db") as cat:
        cat.import_parquet([write_rows(tmp_path / "rows.parquet", captions(), column)])
        first = cat.search("lighthouse harbour", k=5, roots=["/"])[0]
        assert first.path == PATHS[CAPTIONED]
        assert first.words == ("lighthouse", "harbour") and first.words_from == ("caption",)
        # A query naming no caption's words ranks as CLIP alone.
        assert found(cat, "a red fox", k=10) == found(cat, "a red fox", k=10, words="off")
        assert cat.stats()["with_caption"] == COUNT - 1


def test_an_existing_word_index_takes_the_captions_in_the_imports_transaction(tmp_path):
    with open_cat(tmp_path / "c.db") as cat:
        cat.search("anything", roots=["/"])  # builds the (empty) word index
        assert words.has_index(cat._db)
        cat.import_parquet([write_rows(tmp_path / "rows.parquet", captions())])
        # No sync in between: the import itself wrote the index rows.
        hits = words.match(cat._db, '"lighthouse"')
        assert [cat.images([h.image_id])[h.image_id].path for h in hits] == [PATHS[CAPTIONED]]


def test_an_import_keeps_an_index_in_step_and_never_claims_one_that_was_not(tmp_path):
    with open_cat(tmp_path / "c.db") as cat:
        cat.search("anything", roots=["/"])
        cat.import_parquet([write_rows(tmp_path / "a.parquet", captions())])
        assert words.in_step(cat._db)  # the first search has nothing to compare
        # Another writer stores a row and does not bring the word index up to date.
        vector = np.ones(FakeEncoder.dim, np.float32) / np.sqrt(FakeEncoder.dim)
        row = ("/mnt/other/sunset_pier.jpg", 1, 1, "f" * 32, 8, 8, "JPEG", None, None)
        cat._db.write_batch([row], {"f" * 32: vector}, "fake")
        cat.import_parquet([write_rows(tmp_path / "b.parquet", captions("a windmill"))])
        assert not words.in_step(cat._db)
        assert found(cat, "words:sunset pier") == ["/mnt/other/sunset_pier.jpg"]
        assert found(cat, "words:windmill") == [PATHS[CAPTIONED]]


def test_a_reimport_replaces_captions_and_one_without_captions_keeps_them(tmp_path):
    with open_cat(tmp_path / "c.db") as cat:
        cat.import_parquet([write_rows(tmp_path / "a.parquet", captions())])
        assert found(cat, "words:lighthouse") == [PATHS[CAPTIONED]]
        cat.import_parquet([write_rows(tmp_path / "b.parquet", captions("a windmill in a tulip field"))])
        assert found(cat, "words:lighthouse") == []
        assert found(cat, "words:windmill tulip") == [PATHS[CAPTIONED]]
        cat.import_parquet([write_rows(tmp_path / "c.parquet", None)])  # vectors only: captions stay
        assert found(cat, "words:windmill") == [PATHS[CAPTIONED]]
        cat.import_parquet([write_rows(tmp_path / "d.parquet", captions(None))])  # no caption now
        assert found(cat, "words:windmill") == []
        assert cat.stats()["with_caption"] == COUNT - 2


def test_a_missing_word_index_is_rebuilt_with_the_captions(tmp_path):
    with open_cat(tmp_path / "c.db") as cat:
        cat.import_parquet([write_rows(tmp_path / "rows.parquet", captions())])
        assert found(cat, "words:lighthouse") == [PATHS[CAPTIONED]]
        with cat._db.conn:
            cat._db.conn.execute("DROP TABLE words")
        assert found(cat, "words:lighthouse") == [PATHS[CAPTIONED]]


def test_a_read_only_catalog_searches_the_captions(tmp_path):
    from reliability_kit import read_only

    home = tmp_path / "home"
    home.mkdir()
    with open_cat(home / "c.db") as cat:
        cat.import_parquet([write_rows(tmp_path / "rows.parquet", captions())])
        cat._db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # no index built yet
    with read_only(home), open_cat(home / "c.db") as cat:
        assert cat._db.read_only
        assert found(cat, "words:lighthouse") == [PATHS[CAPTIONED]]


def test_a_deleted_image_takes_its_caption_along(tmp_path):
    with open_cat(tmp_path / "c.db") as cat:
        cat.import_parquet([write_rows(tmp_path / "rows.parquet", captions())])
        assert cat._db.remove_images([PATHS[CAPTIONED]]) == 1
        assert found(cat, "words:lighthouse") == []
        assert cat.stats()["with_caption"] == COUNT - 2


def test_export_and_import_keep_the_captions(tmp_path):
    with open_cat(tmp_path / "c.db") as cat:
        cat.import_parquet([write_rows(tmp_path / "rows.parquet", captions())])
        assert cat.export_parquet(tmp_path / "out.parquet", "fake") == COUNT
    table = pq.read_table(tmp_path / "out.parquet")
    assert dict(zip(table.column("path").to_pylist(), table.column("caption").to_pylist(), strict=True)) == (
        dict(zip(PATHS, captions(), strict=True))
    )
    with open_cat(tmp_path / "again.db") as again:
        again.import_parquet([tmp_path / "out.parquet"])
        assert found(again, "lighthouse harbour", k=3)[0] == PATHS[CAPTIONED]
        assert again.stats()["with_caption"] == COUNT - 1


def pixgrep_cli(*args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PIXGREP_CATALOG", None)
    done = subprocess.run(
        [sys.executable, "-m", "pixgrep.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_clip_retrieval_captions_through_the_cli(tmp_path, tiny_model_dir):
    """clip-retrieval's layout (img_emb/*.npy + metadata/*.parquet with `caption`), imported,
    searched by words and counted."""
    from pixgrep.models import load_encoder

    dim = load_encoder(str(tiny_model_dir)).dim
    out = tmp_path / "clip-out"
    (out / "img_emb").mkdir(parents=True)
    (out / "metadata").mkdir()
    vectors = np.random.default_rng(2).standard_normal((COUNT, dim)).astype(np.float16)
    np.save(out / "img_emb" / "img_emb_0.npy", vectors)
    pq.write_table(
        pa.table({"image_path": PATHS, "caption": captions()}), out / "metadata" / "metadata_0.parquet"
    )
    common = ("--catalog", tmp_path / "c.db", "--model", tiny_model_dir)
    pixgrep_cli("import", out, *common)
    hits = pixgrep_cli("-n", "--in", "/", "--words", "-f", "lighthouse", *common).stdout.split()
    assert hits == [PATHS[CAPTIONED]]
    stats = pixgrep_cli("stats", "--catalog", tmp_path / "c.db").stdout
    assert f"captions  {COUNT - 1}  (imported)" in stats
    assert json.loads(pixgrep_cli("stats", "--json", "--catalog", tmp_path / "c.db").stdout)[
        "with_caption"
    ] == (COUNT - 1)
