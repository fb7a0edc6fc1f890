"""Query languages: codes and locales to FLORES-200, which models read many languages, and an NLLB
text tower fed its language token per query and per search (tests/tiny_nllb.py: ONNX graphs that
echo the ids; no torch)."""

from __future__ import annotations

import numpy as np
import pytest
from hf_tokenizers import LANGUAGE_CODES
from tiny_nllb import CONTEXT, echo_nllb_folder

from pixgrep.errors import PixgrepError
from pixgrep.models import languages
from pixgrep.models.languages import flores_code


@pytest.fixture(autouse=True)
def no_language_settings(monkeypatch):
    for name in ("LC_ALL", "LC_MESSAGES", "LANG", "PIXGREP_LANG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(languages, "_default", None)


@pytest.mark.parametrize(
    ("given", "code"),
    [
        ("de", "deu_Latn"),
        ("DE", "deu_Latn"),
        ("de_DE.UTF-8", "deu_Latn"),
        ("de-AT", "deu_Latn"),
        ("zh", "zho_Hans"),
        ("zh_CN.UTF-8", "zho_Hans"),
        ("zh-TW", "zho_Hant"),
        ("ar", "arb_Arab"),
        ("pt_BR", "por_Latn"),
        ("sr_RS@latin", "srp_Cyrl"),
        ("deu_Latn", "deu_Latn"),
        ("kas_Deva", "kas_Deva"),
    ],
)
def test_codes_and_locales_name_flores_codes(given, code):
    assert flores_code(given) == code


@pytest.mark.parametrize("given", ["xx", "klingon", "", "C", "123"])
def test_unknown_language_is_one_clear_error(given):
    with pytest.raises(PixgrepError, match="unknown language"):
        flores_code(given)


def test_default_comes_from_setting_then_environment_then_locale(monkeypatch):
    assert flores_code(None) == "eng_Latn"  # no locale
    monkeypatch.setenv("LANG", "C.UTF-8")
    assert flores_code(None) == "eng_Latn"
    monkeypatch.setenv("LANG", "fr_FR.UTF-8")
    assert flores_code(None) == "fra_Latn"
    monkeypatch.setenv("LC_ALL", "ja_JP.UTF-8")  # LC_ALL wins over LANG, as in the C library
    assert flores_code(None) == "jpn_Jpan"
    monkeypatch.setenv("PIXGREP_LANG", "de")
    assert flores_code(None) == "deu_Latn"
    languages.set_default_language("zh")
    assert flores_code(None) == "zho_Hans"


@pytest.fixture
def nllb_model(tmp_path):
    pytest.importorskip("onnx")
    return echo_nllb_folder(tmp_path / "nllb-echo")


def _first_ids(encoder, texts) -> list[int]:
    return encoder.tokenize(texts)["text"][:, 0].tolist()


def test_nllb_tower_gets_the_query_language_first(nllb_model, monkeypatch):
    from pixgrep.models import load_encoder
    from pixgrep.models.tokenizer import OpenClipHFTokenizer

    textual = nllb_model / "textual"
    tok = OpenClipHFTokenizer(
        textual / "tokenizer.json", textual / "tokenizer_config.json", context_length=CONTEXT, nllb=True
    )
    ids = {code: tok.language_id(code) for code in LANGUAGE_CODES}
    encoder = load_encoder(str(nllb_model))
    assert encoder.multilingual_tokens
    assert _first_ids(encoder, ["a dog"]) == [ids["eng_Latn"]]  # no setting, no locale: English
    monkeypatch.setenv("LANG", "de_DE.UTF-8")
    assert _first_ids(encoder, ["ein Hund", "🐕"]) == [ids["deu_Latn"]] * 2
    assert _first_ids(load_encoder(str(nllb_model), language="zh"), ["一只狗"]) == [ids["zho_Hans"]]
    encoder.language = "arb_Arab"
    row = encoder.tokenize(["الكلب يركض"])["text"][0]
    end = int(np.flatnonzero(row == tok._eos_id)[0])
    assert row[0] == ids["arb_Arab"] and (row[end + 1 :] == tok.pad_id).all()
    encoder.language = "fra_Latn"  # a language this tokenizer has no token for
    with pytest.raises(PixgrepError, match="no token for the language fra_Latn"):
        encoder.tokenize(["un chien"])


def test_unknown_lang_on_the_command_line_is_one_line(tmp_path, capsys):
    from pixgrep.cli import main

    assert main(["search", "a dog", "--lang", "klingon", "--catalog", str(tmp_path / "catalog.db")]) == 2
    err = capsys.readouterr().err
    assert "unknown language 'klingon'" in err and "Traceback" not in err
    assert not (tmp_path / "catalog.db").exists()


def test_a_search_language_is_a_view_that_leaves_the_shared_encoder_alone(nllb_model):
    from pixgrep.models import load_encoder

    encoder = load_encoder(str(nllb_model))
    ids = {code: encoder.tokenize(["x"], language=code)["text"][0, 0] for code in LANGUAGE_CODES}
    german = encoder.in_language("de-AT")
    assert (german.model_id, german.dim, german.folder) == (encoder.model_id, encoder.dim, encoder.folder)
    assert german.query_language == "deu_Latn" and encoder.query_language == "eng_Latn"
    assert _first_ids(german, ["ein Hund"]) == [ids["deu_Latn"]]
    assert _first_ids(encoder, ["a dog"]) == [ids["eng_Latn"]]  # the shared one is unchanged
    np.testing.assert_array_equal(
        german.encode_texts(["ein Hund"]), encoder.encode_texts(["ein Hund"], language="deu_Latn")
    )
    assert _first_ids(german.in_language("zh"), ["狗"]) == [ids["zho_Hans"]]
    assert german.in_language(None) is german and encoder.in_language(None) is encoder
    assert encoder.languages.startswith("multilingual")
    choices = encoder.language_choices()  # only the languages this tokenizer has a token for
    assert choices == [
        {"code": "arb_Arab", "tags": ["ar"]},
        {"code": "deu_Latn", "tags": ["de"]},
        {"code": "eng_Latn", "tags": ["en"]},
        {"code": "zho_Hans", "tags": ["zh"]},
    ]


def test_encoders_without_a_language_token_ignore_the_search_language(fake_encoder):
    assert fake_encoder.in_language("de") is fake_encoder
    assert fake_encoder.languages == "en" and fake_encoder.query_language is None
    assert fake_encoder.language_choices() == []


def test_the_table_as_choices_with_browser_tags():
    table = languages.choices()
    codes = [choice["code"] for choice in table]
    assert len(codes) == len(set(codes)) and "deu_Latn" in codes
    tags = {choice["code"]: choice["tags"] for choice in table}
    assert tags["zho_Hant"][0] == "zh-Hant" and "zh-TW" in tags["zho_Hant"]
    assert tags["nob_Latn"] == ["nb", "no"] and tags["por_Latn"] == ["pt"]
    assert all(flores_code(tag) == code for code, names in tags.items() for tag in names)


@pytest.mark.parametrize(
    ("config", "model_id", "expected"),
    [
        ({"languages": "multilingual (test)"}, "abc123", "multilingual (test)"),
        ({}, "ViT-B-16-SigLIP2__webli", "multilingual"),
        ({}, "ViT-B-32__laion2b_s34b_b79k@int8", "en"),
        ({"text_cfg": {"hf_tokenizer_name": "xlm-roberta-base"}}, "abc123", "multilingual"),
        ({"text_cfg": {"hf_tokenizer_name": "facebook/nllb-200-distilled-600M"}}, "abc123", "multilingual"),
        ({"text_cfg": {"hf_tokenizer_name": "timm/ViT-B-16-SigLIP"}}, "abc123", "en"),
        ({}, "abc123", "en"),
    ],
)
def test_which_models_read_many_languages(config, model_id, expected):
    assert languages.model_languages(config, model_id) == expected
    assert languages.is_multilingual(expected) == (expected != "en")


def test_search_options_keep_the_flores_code():
    from pixgrep.search.options import SearchOptions

    assert SearchOptions(lang="pt_BR").lang == "por_Latn"
    assert SearchOptions(lang=" ").lang is None and SearchOptions().lang is None
    with pytest.raises(PixgrepError, match="unknown language 'xx'"):
        SearchOptions(lang="xx")
    with pytest.raises(PixgrepError, match="lang must be a language code"):
        SearchOptions(lang=5)  # type: ignore[arg-type]
