"""The word index and hybrid ranking with a fake encoder and a fake text reader (no OCR engine):
names split into words, the index following renames, copies, deletions and keywords, OCR text
stored per content, an unreadable picture, word-only search, and a query naming no word ranking
exactly as CLIP alone."""

from __future__ import annotations

import logging
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from fakes import FakeEncoder
from PIL import Image

import pixgrep
from pixgrep.catalog import ocr_pass, words
from pixgrep.catalog.words import folder_words, name_words
from pixgrep.errors import PixgrepError
from pixgrep.images.ocr import PageText, TextLine
from pixgrep.search.words import fts_query


class FakeReader:
    """Reads the text a test put in `texts` (by image size), counting calls; raises for a size
    in `broken`."""

    def __init__(self, texts: dict[tuple[int, int], str], broken: set[tuple[int, int]] = frozenset()):
        self.texts, self.broken, self.calls = texts, broken, 0
        self.lock = threading.Lock()  # the index run reads in a pool of threads

    def read(self, image: Image.Image, full_size=None) -> PageText:
        with self.lock:
            self.calls += 1
        if image.size in self.broken:
            raise RuntimeError("the engine choked")
        text = self.texts.get(image.size)
        if text is None:
            return PageText([], text_free=True)
        return PageText([TextLine(text, 0.97, ((0, 0), (10, 0), (10, 5), (0, 5)))])


def picture(path: Path, seed: int, size: tuple[int, int] = (64, 48)) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "pics"
    picture(root / "passport_scan_2019.png", 1)
    picture(root / "BoardingPassLisbon.png", 2)
    picture(root / "trips" / "Café-Paris" / "IMG_0001.png", 3)
    for n in range(6):
        picture(root / f"{1000 + n}_a1b2.png", 10 + n)
    picture(root / "note.png", 30, size=(80, 60))  # the fake reader finds text in this size
    return root


def open_cat(tmp_path: Path) -> pixgrep.Catalog:
    return pixgrep.open_catalog(tmp_path / "c.db", encoder=FakeEncoder())


@pytest.fixture
def reader(monkeypatch) -> FakeReader:
    """The fake reader every index run with OCR uses (no OCR engine, no ocr extra needed)."""
    fake = FakeReader({})
    monkeypatch.setattr(ocr_pass, "TextReader", lambda threads=None: fake)
    monkeypatch.setattr(ocr_pass, "require_ocr", lambda: None)
    return fake


def index_with_reader(cat: pixgrep.Catalog, root: Path, reader: FakeReader) -> ocr_pass.TextSummary:
    summary = cat.index([root], ocr=True).text
    assert summary is not None
    return ocr_pass.TextSummary(**summary)


def names(results) -> list[str]:
    return [os.path.basename(r.path) for r in results]


def test_file_names_split_into_the_words_people_say():
    assert name_words("passport_scan_2019.jpg") == "passport scan 2019"
    assert name_words("BoardingPassLisbon.JPG") == "BoardingPassLisbon Boarding Pass Lisbon"
    assert name_words("gateB14-final.png") == "gateB14 gate B 14 final"
    assert name_words(".hidden") == "hidden"
    assert folder_words("/a/b/trips/Café-Paris/x.jpg") == "b trips Café Paris"


def test_queries_become_fts5_and_of_words_phrases_and_prefixes():
    assert fts_query("wifi lighthouse42") == '"wifi" "lighthouse42"'
    assert fts_query('the "gate B14" of lighthouse*') == '"gate B14" "lighthouse"*'
    assert fts_query("of this") == '"of" "this"'  # only stop words: search what was said
    assert fts_query('say "" NEAR(x) ^') == '"say" "NEAR" "x"'  # FTS5 syntax stays text
    assert fts_query("museum entrance", loose=True) == '"muse"* "entra"*'
    assert fts_query("!!") is None
    assert fts_query("Strasse 12") == '("Strasse" OR "straße") AND "12"'  # the sharp s either way
    assert fts_query("straße*") == '("straße"* OR "strasse"*)'


def test_words_only_finds_names_folders_and_accents_without_ocr(tmp_path, folder):
    with open_cat(tmp_path) as cat:
        cat.index([folder])
        assert names(cat.search("passport scan", words="only")) == ["passport_scan_2019.png"]
        assert names(cat.search("words:boarding pass", k=3)) == ["BoardingPassLisbon.png"]
        assert names(cat.search("words:boardingpass")) == ["BoardingPassLisbon.png"]
        assert names(cat.search("words:cafe paris")) == ["IMG_0001.png"]  # accents folded
        assert names(cat.search("words:lis*")) == ["BoardingPassLisbon.png"]
        assert names(cat.search("words:passport scan")) == names(cat.search("words:paßport scan"))
        hit = cat.search("passport scan", words="only")[0]
        assert hit.words == ("passport", "scan") and hit.words_from == ("name",)
        assert hit.to_json()["words"] == ["passport", "scan"]
        stats = cat.stats()
        assert stats["ocr"] is False and stats["text_read"] == 0


def test_a_query_naming_no_word_ranks_exactly_as_clip_alone(tmp_path, folder):
    with open_cat(tmp_path) as cat:
        cat.index([folder])
        for query in ("a red fox in the snow", "two dogs", "passport"):
            fused, alone = cat.search(query, k=8), cat.search(query, k=8, words="off")
            if query == "passport":  # a word hit goes first, the rest keep CLIP's order
                assert names(fused)[0] == "passport_scan_2019.png"
                rest = [r for r in alone if not r.path.endswith("passport_scan_2019.png")]
                assert fused[1:] == rest[:7]
            else:
                assert fused == alone


def test_words_most_images_hold_rank_as_clip_alone_unless_words_are_asked_for(tmp_path, folder, monkeypatch):
    from pixgrep.search import words as ranking

    monkeypatch.setattr(ranking, "COMMON_FROM", 6)  # the six "a1b2" names hold it; ranking them is the cost
    with open_cat(tmp_path) as cat:
        cat.index([folder])
        assert cat.search("a1b2", k=8) == cat.search("a1b2", k=8, words="off")
        assert cat.search("a1b2zz", k=8) == cat.search("a1b2zz", k=8, words="off")  # loose: "a1b2"*
        assert len(cat.search("a1b2", words="only")) == 6  # asked for by name: every match, bm25
        assert names(cat.search("passport", k=8))[0] == "passport_scan_2019.png"  # one image holds it
        monkeypatch.setattr(ranking, "COMMON_FROM", 7)
        assert names(cat.search("a1b2", k=6))[0].endswith("_a1b2.png")
        assert cat.search("a1b2", k=8) != cat.search("a1b2", k=8, words="off")
        assert cat.search("a1b2zz", k=8) != cat.search("a1b2zz", k=8, words="off")


def test_word_hits_respect_the_search_scope(tmp_path, folder):
    with open_cat(tmp_path) as cat:
        cat.index([folder])
        assert cat.search("words:paris", roots=[str(folder / "trips")])
        assert cat.search("words:paris", roots=[str(folder)], exclude=["trips"]) == []
        assert names(cat.search("passport", k=3, roots=[str(folder / "trips")])) == ["IMG_0001.png"]


def test_the_scope_applies_before_word_hits_are_counted(tmp_path, folder, monkeypatch):
    from pixgrep.search import words as ranking

    monkeypatch.setattr(ranking, "MAX_HITS", 2)  # the best 1000 of a library, here of 10 images
    for n in range(4):
        picture(folder / "later" / f"zz_a1b2_{n}.png", 40 + n)
    later = [str(folder / "later")]
    with open_cat(tmp_path) as cat:
        cat.index([folder])
        inside = sorted(names(cat.search("words:a1b2", k=10, roots=later)))
        assert inside == [f"zz_a1b2_{n}.png" for n in range(4)]
        assert all(r.words for r in cat.search("a1b2", k=2, roots=later))  # auto: 2 word hits, in scope
        pages = [names(cat.search("words:a1b2", k=3, offset=at, roots=[str(folder)])) for at in (0, 3, 6, 9)]
        listed = [name for page in pages for name in page]
        assert len(listed) == 10 == len(set(listed))  # paged past the cap: every match once


def test_pages_of_a_fused_ranking_neither_repeat_nor_skip(tmp_path, folder, monkeypatch):
    from pixgrep.search import words as ranking

    monkeypatch.setattr(ranking, "CLIP_DEPTH", 2)  # pages reach past CLIP's fused depth
    with open_cat(tmp_path) as cat:
        cat.index([folder])
        for query in ("a1b2", "a1b2 passport", "scan"):
            whole = names(cat.search(query, k=9))
            pages = [names(cat.search(query, k=3, offset=at)) for at in (0, 3, 6)]
            assert [name for page in pages for name in page] == whole


def test_a_word_hit_past_clips_fused_depth_still_leads_its_group_of_copies(tmp_path, folder, monkeypatch):
    from pixgrep.search import words as ranking

    monkeypatch.setattr(ranking, "CLIP_DEPTH", 0)  # every CLIP result past the fused depth
    original = picture(folder / "zebra_original.png", 77)
    for n in range(2):
        shutil.copy(original, folder / f"copy_{n}.png")  # the same content: one group
    with open_cat(tmp_path) as cat:
        cat.index([folder])
        results = cat.search("zebra", k=50)
        listed = [r.path for r in results] + [p for r in results for p in r.duplicate_paths]
        assert sorted(listed) == sorted(str(p) for p in folder.rglob("*.png"))  # each image once
        assert names(results)[0] == "zebra_original.png"
        assert sorted(os.path.basename(p) for p in results[0].duplicate_paths) == ["copy_0.png", "copy_1.png"]


def test_a_threshold_keeps_the_word_hits_whose_clip_score_reaches_it(tmp_path, folder, monkeypatch):
    from pixgrep.search import words as ranking

    with open_cat(tmp_path) as cat:
        cat.index([folder])
        hits = cat.search("words:a1b2", k=10)
        clip = {r.path: r.score for r in cat.search("a1b2", k=20, words="off")}
        cut = sorted(clip[r.path] for r in hits)[3]
        kept = cat.search("words:a1b2", k=10, threshold=cut)
        assert {r.path for r in kept} == {r.path for r in hits if clip[r.path] >= cut}
        assert len(kept) == 3 and len(hits) == 6
        monkeypatch.setattr(ranking, "MAX_HITS", 1)  # the threshold applies before hits are counted
        paged = [r.path for at in range(4) for r in cat.search("words:a1b2", k=1, offset=at, threshold=cut)]
        assert paged == [r.path for r in kept]


@pytest.mark.parametrize(
    "damage",
    [
        "UPDATE words_config SET v = 5 WHERE k = 'version'",  # "invalid fts5 file format"
        "UPDATE words_data SET block = x'ffffffffffffffff' WHERE id = 10",  # its structure record
    ],
)
def test_a_damaged_word_index_is_built_again_from_the_catalog(tmp_path, folder, damage):
    def hurt():
        with open_cat(tmp_path) as cat, cat._db.conn:
            cat._db.conn.execute(damage)

    with open_cat(tmp_path) as cat:
        cat.index([folder])
    hurt()
    with open_cat(tmp_path) as cat:  # a search builds it again (and so does an index run, below)
        assert names(cat.search("words:passport")) == ["passport_scan_2019.png"]
        assert names(cat.search("passport", k=1)) == ["passport_scan_2019.png"]
    hurt()
    (folder / "passport_scan_2019.png").unlink()  # the deleted image's trigger reads the index
    with open_cat(tmp_path) as cat:
        assert cat.index([folder]).removed == 1
        assert names(cat.search("words:boarding")) == ["BoardingPassLisbon.png"]
        assert cat.search("words:passport") == []
        with cat._db.conn:
            assert cat._db.conn.execute("INSERT INTO words(words) VALUES ('integrity-check')")


@pytest.mark.parametrize("record", ["x'00'", "substr(block, 1, 1)", "x''"])
def test_a_word_index_record_damaged_without_an_error_is_found_by_the_next_index_run(
    tmp_path, folder, record
):
    import sqlite3

    with open_cat(tmp_path) as cat:
        cat.index([folder])
    outside = sqlite3.connect(tmp_path / "c.db")  # another program: the catalog's stamp no longer matches
    with outside:
        outside.execute(f"UPDATE words_data SET block = {record} WHERE id = 10")  # the structure record
    outside.close()
    with open_cat(tmp_path) as cat:
        cat.index([folder])  # reads the whole file, and the whole word index with it
        assert names(cat.search("words:passport")) == ["passport_scan_2019.png"]
        with cat._db.conn:
            cat._db.conn.execute("INSERT INTO words(words) VALUES ('integrity-check')")


def test_the_index_follows_renames_deletions_and_keywords(tmp_path, folder):
    with open_cat(tmp_path) as cat:
        cat.index([folder])
        (folder / "passport_scan_2019.png").rename(folder / "visa_application.png")
        (folder / "BoardingPassLisbon.png").unlink()
        (folder / "1000_a1b2.xmp").write_text(
            '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
            '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
            'xmlns:dc="http://purl.org/dc/elements/1.1/"><rdf:Description><dc:subject><rdf:Bag>'
            "<rdf:li>Lighthouse</rdf:li></rdf:Bag></dc:subject></rdf:Description></rdf:RDF></x:xmpmeta>"
        )
        cat.index([folder])
        assert cat.search("words:passport") == []
        assert names(cat.search("words:visa application")) == ["visa_application.png"]
        assert cat.search("words:boarding") == []
        found = cat.search("words:lighthouse")
        assert names(found) == ["1000_a1b2.png"] and found[0].words_from == ("meta",)


def test_a_missing_word_index_is_rebuilt_from_the_catalog(tmp_path, folder):
    with open_cat(tmp_path) as cat:
        cat.index([folder])
        with cat._db.conn:
            cat._db.conn.execute("DROP TABLE words")
        assert names(cat.search("words:passport")) == ["passport_scan_2019.png"]


def test_ocr_text_is_read_once_per_content_and_searched(tmp_path, folder, reader):
    reader.texts = {(80, 60): "WIFI PASSWORD lighthouse42"}
    with open_cat(tmp_path) as cat:
        summary = index_with_reader(cat, folder, reader)
        assert summary.read == 10 and summary.with_text == 1 and summary.text_free == 9
        shutil.copy(folder / "note.png", folder / "copy_of_note.png")
        (folder / "note.png").rename(folder / "moved.png")
        again = index_with_reader(cat, folder, reader)
        assert again.read == 0 and reader.calls == 10  # a copy and a rename are not read again
        found = cat.search("wifi password lighthouse42", k=2, dedup=False)
        assert sorted(names(found)) == ["copy_of_note.png", "moved.png"]
        assert found[0].words_from == ("text",) and found[0].words == ("WIFI", "PASSWORD", "lighthouse42")
        assert cat.stats()["with_text"] == 2 and cat.stats()["ocr"] is True
        stored = words.text_lines(
            cat._db, cat.images_at([str(folder / "moved.png")])[str(folder / "moved.png")].content_hash
        )
        assert (
            stored[0][0] == "WIFI PASSWORD lighthouse42" and stored[0][1] == 0.97 and len(stored[0][2]) == 4
        )


def test_words_run_together_by_ocr_are_still_found(tmp_path, folder, reader):
    reader.texts = {(80, 60): "TAXREFUNDCONFIRMATION"}
    with open_cat(tmp_path) as cat:
        index_with_reader(cat, folder, reader)
        assert names(cat.search("the tax refund confirmation", k=1)) == ["note.png"]
        assert cat.search("words:refund") == []  # one word alone never matches inside another


def test_a_changed_file_is_read_again(tmp_path, folder, reader):
    reader.texts = {(80, 60): "first version"}
    with open_cat(tmp_path) as cat:
        index_with_reader(cat, folder, reader)
        reader.texts = {(80, 60): "second draft"}
        picture(folder / "note.png", 31, size=(80, 60))
        index_with_reader(cat, folder, reader)
        assert names(cat.search("words:second draft")) == ["note.png"]
        assert cat.search("words:first version") == []


def test_a_picture_ocr_cannot_read_is_indexed_without_text_and_one_warning(tmp_path, folder, reader, caplog):
    reader.broken = {(80, 60)}
    with open_cat(tmp_path) as cat, caplog.at_level(logging.WARNING):
        summary = index_with_reader(cat, folder, reader)
        assert summary.failed == 1 and summary.read == 10
        index_with_reader(cat, folder, reader)  # stored as read: not retried, not warned again
    lines = [r.getMessage() for r in caplog.records if "cannot read text" in r.getMessage()]
    assert len(lines) == 1 and "note.png" in lines[0]
    with open_cat(tmp_path) as cat:
        assert names(cat.search("words:note")) == ["note.png"]  # still found by its name


def test_the_catalog_remembers_ocr(tmp_path, folder, monkeypatch):
    calls = []
    monkeypatch.setattr(
        ocr_pass, "read_texts", lambda db, roots, **kw: calls.append(roots) or ocr_pass.TextSummary()
    )
    monkeypatch.setattr(ocr_pass, "require_ocr", lambda: None)
    with open_cat(tmp_path) as cat:
        assert cat.index([folder]).text is None and not calls
        assert cat.index([folder], ocr=True).text is not None and len(calls) == 1
        assert cat.index([folder]).to_json()["text"]["read"] == 0 and len(calls) == 2  # remembered
        assert "text" not in cat.index([folder], ocr=False).to_json() and len(calls) == 2


def test_ocr_without_the_extra_is_one_clear_error(tmp_path, folder, monkeypatch):
    import pixgrep.images.ocr as ocr

    monkeypatch.setattr(ocr, "ocr_available", lambda: False)
    with open_cat(tmp_path) as cat, pytest.raises(PixgrepError, match=r"pixgrep\[ocr\]"):
        cat.index([folder], ocr=True)


def test_a_read_only_catalog_answers_word_queries(tmp_path, folder):
    from reliability_kit import read_only

    home = tmp_path / "home"
    home.mkdir()
    with pixgrep.open_catalog(home / "c.db", encoder=FakeEncoder()) as cat:
        cat.index([folder])
        with cat._db.conn:  # as a catalog of a pixgrep before the word index
            cat._db.conn.execute("DROP TABLE words")
            cat._db.conn.execute("DROP TABLE words_source")
        cat._db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with read_only(home), pixgrep.open_catalog(home / "c.db", encoder=FakeEncoder()) as cat:
        assert cat._db.read_only
        assert names(cat.search("words:passport")) == ["passport_scan_2019.png"]


def test_unknown_words_mode_and_mixed_words_queries_are_refused(tmp_path, folder):
    with open_cat(tmp_path) as cat:
        cat.index([folder])
        with pytest.raises(PixgrepError, match="words mode"):
            cat.search("x", words="maybe")
        with pytest.raises(PixgrepError, match="stands alone"):
            cat.search(["words:x", "+", "y"])
        with pytest.raises(PixgrepError, match="no words"):
            cat.search("words: !!")
        with pytest.raises(PixgrepError, match="no words"):
            cat.search(["x", "+", "y"], words="only")
        with pytest.raises(PixgrepError, match="leaves out"):  # not words alone, silently
            cat.search("words:passport", words="off")


def test_a_file_name_that_is_not_utf8_is_indexed(tmp_path, folder):
    picture(Path(os.fsdecode(os.path.join(os.fsencode(folder), b"r\xe9sum\xe9_scan.png"))), 40)
    with open_cat(tmp_path) as cat:
        cat.index([folder])
        found = cat.search("words:sum scan")
        assert [os.fsencode(r.path) for r in found] == [
            os.path.join(os.fsencode(folder), b"r\xe9sum\xe9_scan.png")
        ]


def test_the_http_api_indexes_with_ocr_and_searches_words(tmp_path, folder, reader):
    from fastapi.testclient import TestClient

    from pixgrep.server.app import create_app

    reader.texts = {(80, 60): "BAKERY OPEN"}
    with TestClient(
        create_app(tmp_path / "c.db", encoder=FakeEncoder()), base_url="http://localhost"
    ) as client:
        assert client.post("/api/index", json={"folder": str(folder), "ocr": True}).status_code == 202
        client.app.state.pixgrep.runner.wait(60)
        status = client.get("/api/index").json()
        assert status["state"] == "done" and status["summary"]["text"]["with_text"] == 1
        body = client.get("/api/search", params={"q": "bakery open", "k": 3}).json()
        first = body["results"][0]
        assert first["name"] == "note.png" and first["words"] == ["BAKERY", "OPEN"]
        assert first["words_from"] == ["text"]
        only = client.get("/api/search", params={"q": "passport", "words": "only"}).json()["results"]
        assert [r["name"] for r in only] == ["passport_scan_2019.png"]
        bad = client.get("/api/search", params={"q": "x", "words": "maybe"})
        assert bad.status_code == 422
