"""pixgrep's OpenClipHFTokenizer gives open_clip's HFTokenizer ids (transformers) exactly: 1,000
Flickr8k captions plus lines in other scripts, for each cleaning, with truncation, separator
stripping and NLLB's language token. Tokenizers are trained here with the `tokenizers` library."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_data
from hf_tokenizers import (
    LANGUAGE_CODES,
    MULTILINGUAL,
    captions,
    nllb_folder,
    unigram_folder,
    wordpiece_folder,
)

from pixgrep.models.tokenizer import OpenClipHFTokenizer

pytest.importorskip("open_clip")
pytest.importorskip("transformers")
pytestmark = pytest.mark.torch  # the reference is open_clip's HFTokenizer (transformers, torch)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return captions(1000, shared_data("flickr8k")) + MULTILINGUAL


def _reference(folder, **kwargs):
    from open_clip.tokenizer import HFTokenizer

    return HFTokenizer(str(folder), **kwargs)


def _ours(folder, **kwargs) -> OpenClipHFTokenizer:
    return OpenClipHFTokenizer(folder / "tokenizer.json", folder / "tokenizer_config.json", **kwargs)


def _assert_same(expected: np.ndarray, got: np.ndarray, texts: list[str]) -> None:
    assert got.shape == expected.shape
    for text, row_got, row_expected in zip(texts, got, expected, strict=True):
        assert row_got.tolist() == row_expected.tolist(), text


@pytest.mark.parametrize("clean", ["whitespace", "lower", "canonicalize"])
@pytest.mark.parametrize("context_length", [64, 12])  # 12: most captions are cut
def test_unigram_ids_equal_open_clip(tmp_path, texts, clean, context_length):
    folder = unigram_folder(tmp_path, texts * 2)
    expected = _reference(folder, context_length=context_length, clean=clean)(texts).numpy()
    got = _ours(folder, context_length=context_length, clean=clean)(texts)
    assert (expected[:, -1] != 0).any()  # some texts filled the context, so truncation was tested
    _assert_same(expected, got, texts)


@pytest.mark.parametrize("strip_sep_token", [False, True])
def test_separator_stripped_as_open_clip_strips_it(tmp_path, texts, strip_sep_token):
    folder = wordpiece_folder(tmp_path, texts * 2)
    kwargs = dict(context_length=32, clean="lower", strip_sep_token=strip_sep_token)
    expected = _reference(folder, **kwargs)(texts).numpy()
    got = _ours(folder, **kwargs)(texts)
    sep = _ours(folder, context_length=32)._tok.token_to_id("[SEP]")
    assert (got == sep).any() != strip_sep_token
    _assert_same(expected, got, texts)


def test_nllb_language_token_through_the_export_writer(tmp_path, texts):
    """NLLB: transformers rebuilds the pipeline, so the export writes what it runs; per language,
    the language token goes first and the end token last, as set_src_lang_special_tokens does."""
    from pixgrep.lab.hf_export import set_language, write_hf_tokenizer

    source = nllb_folder(tmp_path / "source", texts * 2)
    text_cfg = {"context_length": 24, "hf_tokenizer_name": "facebook/nllb-200-distilled-600M"}
    reference = write_hf_tokenizer(str(source), tmp_path / "textual", text_cfg, nllb=True)
    ours = _ours(tmp_path / "textual", context_length=24, nllb=True)
    for language in LANGUAGE_CODES:
        set_language(reference, language)
        expected = reference(texts).numpy()
        got = ours(texts, language=language)
        assert (got[:, 0] == ours.language_id(language)).all()
        _assert_same(expected, got, texts)
    assert ours(["ein Hund"], language="deu_Latn")[0, 0] != ours(["ein Hund"], language="eng_Latn")[0, 0]


def test_cut_text_names_what_does_not_fit(tmp_path, texts):
    folder = unigram_folder(tmp_path, texts * 2)
    ours = _ours(folder, context_length=8, clean="lower")
    assert ours.cut_text("a dog") is None
    cut = ours.cut_text("a black dog runs through the tall green grass near the river")
    assert cut and "river" in cut and not cut.startswith("a black")
