"""Query languages: codes and locales to FLORES-200, and an NLLB text tower fed its language token
per query (an ONNX graph written here that echoes the ids; no torch)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hf_tokenizers import LANGUAGE_CODES, MULTILINGUAL, nllb_folder

from pixgrep.errors import PixgrepError
from pixgrep.models import languages
from pixgrep.models.languages import flores_code

CONTEXT = 16


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


def _echo_graph(path) -> None:
    """A text tower taking `text` int32 [N, CONTEXT] and returning its ids as floats: the output
    shows exactly which ids the encoder fed (before the encoder's normalisation)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["text"], ["embedding"], to=TensorProto.FLOAT)],
        "echo",
        [helper.make_tensor_value_info("text", TensorProto.INT32, ["batch", CONTEXT])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", CONTEXT])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.fixture
def nllb_model(tmp_path):
    pytest.importorskip("onnx")
    folder = tmp_path / "nllb-echo"
    nllb_folder(folder / "textual", ["a dog on the grass", "Ein Hund auf der Wiese", *MULTILINGUAL] * 5)
    (folder / "visual").mkdir()
    _echo_graph(folder / "textual" / "model.onnx")
    _echo_graph(folder / "visual" / "model.onnx")  # never run; the folder needs one
    text_cfg = {"context_length": CONTEXT, "hf_tokenizer_name": "facebook/nllb-200-distilled-600M"}
    (folder / "config.json").write_text(json.dumps({"embed_dim": CONTEXT, "text_cfg": text_cfg}))
    (folder / "visual" / "preprocess_cfg.json").write_text(json.dumps({"size": 8}))
    return folder


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
