"""Words from the command line with the tiny test model: --words and words: queries, the matched
words in --json and the table, stats saying OCR is off, --ocr without the extra, eval words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from reliability_kit import cli_env, pixgrep
from test_words import picture


@pytest.fixture
def indexed(tmp_path: Path, tiny_model_dir: Path):
    photos = tmp_path / "photos"
    picture(photos / "passport_scan_2019.png", 1)
    picture(photos / "BoardingPassLisbon.png", 2)
    for n in range(4):
        picture(photos / f"{2000 + n}.png", 10 + n)
    catalog = tmp_path / "c.db"
    done = pixgrep("index", photos, "--catalog", catalog, "--model", tiny_model_dir, "--json")
    assert done.returncode == 0, done.stderr
    assert "text" not in json.loads(done.stdout)  # no OCR: no text summary
    return photos, catalog, tiny_model_dir


def search(indexed, *args: str):
    photos, catalog, model = indexed
    return pixgrep("-n", "--local", "--catalog", catalog, "--model", model, "--in", photos, *args)


def test_words_only_and_the_matched_words_in_json(indexed):
    done = search(indexed, "--words", "passport", "--json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [Path(r["path"]).name for r in rows] == ["passport_scan_2019.png"]
    assert rows[0]["words"] == ["passport"] and rows[0]["words_from"] == ["name"]
    table = search(indexed, "words:boarding pass")
    assert "BoardingPassLisbon.png" in table.stdout and "words: Boarding Pass (name)" in table.stdout


def test_no_words_is_clip_alone_and_no_word_hit_exits_1(indexed):
    fused = search(indexed, "passport", "--json", "-k", "6")
    alone = search(indexed, "passport", "--json", "-k", "6", "--no-words")
    assert Path(json.loads(fused.stdout.splitlines()[0])["path"]).name == "passport_scan_2019.png"
    assert all("words" not in json.loads(line) for line in alone.stdout.splitlines())
    missing = search(indexed, "--words", "lighthouse")
    assert missing.returncode == 1 and "no matching images" in missing.stderr
    same = search(indexed, "passport", "--json", "-k", "6", "--words-mode", "off", "--no-words")
    assert same.returncode == 0 and same.stdout == alone.stdout
    for flags in (["--words-mode", "only", "--no-words"], ["--words-mode", "off", "--words"]):
        clash = search(indexed, "passport", *flags)  # not one of them winning without a word
        assert clash.returncode == 2 and "say different things" in clash.stderr


def test_stats_say_ocr_is_off(indexed):
    _, catalog, _ = indexed
    done = pixgrep("stats", "--catalog", catalog)
    assert done.returncode == 0 and "OCR off" in done.stdout
    assert json.loads(pixgrep("stats", "--catalog", catalog, "--json").stdout)["ocr"] is False


def test_ocr_without_the_extra_is_one_line_and_exit_2(indexed, tmp_path):
    photos, catalog, model = indexed
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "rapidocr_onnxruntime.py").write_text("raise ImportError('not installed')\n")
    env = cli_env()
    env["PYTHONPATH"] = f"{blocker}:{env.get('PYTHONPATH', '')}"
    done = pixgrep("index", photos, "--catalog", catalog, "--model", model, "--ocr", env=env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "pixgrep: error: reading text in images needs the ocr extra: pip install 'pixgrep[ocr]'"
    ]


def test_eval_words_reports_per_kind(indexed, tmp_path):
    photos, catalog, model = indexed
    queries = tmp_path / "q.tsv"
    queries.write_text("kind\tquery\texpected\nnamed\tpassport scan\tpassport_scan_2019.png\n")
    done = pixgrep(
        "eval", "words", photos, "--queries", queries, "--catalog", catalog, "--model", model, "--json"
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["kinds"]["named"]["first"] == 100.0 and result["text"]["ocr"] is False
    queries.write_text("just one column\n")
    bad = pixgrep("eval", "words", photos, "--queries", queries, "--catalog", catalog, "--model", model)
    assert bad.returncode == 2 and "no query<TAB>expected rows" in bad.stderr
