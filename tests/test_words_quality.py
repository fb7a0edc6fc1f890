"""Words people remember, end to end with real OCR (RapidOCR) and pixgrep-mini: screenshots,
signs on real photos and telling file names among 100 ordinary Flickr8k photos (tests/wordset.py
builds the set). Targets: the expected picture first for >= 90% of the screenshots' key phrases,
>= 80% of their first two words, >= 80% of the signs, >= 90% of the file names said as words; a
caption naming no written word gets CLIP's own first result in >= 90% of queries."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
from conftest import shared_data
from mini_support import mini_cache, pixgrep_cache  # noqa: F401  (session fixture)

pytestmark = pytest.mark.torch  # pixgrep-mini

TARGETS = {"screenshot": 90.0, "screenshot-start": 80.0, "sign": 80.0, "named": 90.0}


@pytest.fixture(scope="module")
def scored(mini_cache, tmp_path_factory):  # noqa: F811
    pytest.importorskip("rapidocr_onnxruntime", reason="reading text needs pip install 'pixgrep[ocr]'")
    import wordset

    import pixgrep
    from pixgrep.lab.eval.words import run_words

    try:
        from PIL import ImageFont

        ImageFont.truetype(wordset.FONTS[0], 12)
    except OSError:
        pytest.skip("needs the DejaVu fonts (Debian fonts-dejavu-core)")
    base = tmp_path_factory.mktemp("wordset")
    queries = wordset.build(shared_data("flickr8k"), base)
    with pixgrep_cache(mini_cache), pixgrep.open_catalog(base / "c.db", "pixgrep-mini") as catalog:
        result = run_words(catalog, base / "pictures", queries, ocr=True)
        first = {}
        with open(queries, newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                if row["kind"] in ("sign", "screenshot"):
                    found = catalog.search(row["query"], k=1, roots=[str(base / "pictures")])
                    first[row["query"]] = found[0]
    return result, first


@pytest.mark.parametrize("kind", sorted(TARGETS))
def test_the_expected_picture_comes_first(scored, kind):
    stats = scored[0]["kinds"][kind]
    assert stats["first"] >= TARGETS[kind], stats
    assert stats["first"] > stats["first_clip_alone"]  # the words did it, not CLIP reading text


def test_captions_naming_no_word_rank_as_clip_alone(scored):
    stats = scored[0]["kinds"]["caption"]
    assert stats["queries"] == 100 and stats["same_first"] >= 90.0, stats


def test_results_say_which_words_matched_in_the_text(scored):
    hit = scored[1]["bakery open"]
    assert os.path.basename(hit.path) == "IMG_4100.jpg"
    assert [w.lower() for w in hit.words] == ["bakery", "open"] and hit.words_from == ("text",)
    assert scored[0]["text"]["ocr"] and scored[0]["text"]["with_text"] >= 30


def test_photos_without_text_are_mostly_skipped_by_the_detector(scored):
    text = scored[0]["text"]
    assert text["text_free"] >= 0.6 * 100, text  # of the 100 ordinary photos and 12 named ones
    assert Path(scored[0]["folder"]).is_dir()
