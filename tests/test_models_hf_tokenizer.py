"""The Hugging Face style (input_ids) tokenizer, on a small WordPiece file built here (no torch)."""

from __future__ import annotations

import json

from pixgrep.models.tokenizer import HFTokenizer


def wordpiece_file(tmp_path):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "cat", "dog", "on", "the", "mat", "##s", "red"]
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 6, "pad_token": "[PAD]"}))
    return tmp_path / "tokenizer.json", tmp_path / "tokenizer_config.json"


def test_hf_tokenizer_pads_to_longest_and_truncates(tmp_path):
    tok = HFTokenizer(*wordpiece_file(tmp_path))
    out = tok(["A cat", "the red cats on the mat", "dog"])
    assert out["input_ids"].tolist() == [
        [2, 4, 5, 3, 0, 0],
        [2, 8, 11, 5, 10, 3],  # cut to model_max_length=6, [SEP] kept by the tokenizer
        [2, 6, 3, 0, 0, 0],
    ]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0], [1] * 6, [1, 1, 1, 0, 0, 0]]
    assert (out["token_type_ids"] == 0).all()
    assert tok(["cat"])["input_ids"].shape == (1, 3)  # padding is to the longest of the batch


def test_lone_surrogates_are_read_as_replacement_characters(tmp_path):
    """A JSON "\\ud800" or a non-UTF-8 byte of argv reaches the tokenizer as a lone surrogate, which
    `tokenizers` refuses with a TypeError: it is read as U+FFFD, the rest as usual."""
    tok = HFTokenizer(*wordpiece_file(tmp_path))
    # This tokenizer's BERT normaliser drops U+FFFD, so the words around it are all that is left.
    assert tok(["cat \ud800", "dog\udce9 \udfff"])["input_ids"].tolist() == [[2, 5, 3], [2, 6, 3]]
    assert tok.cut_text("the red cats \ud800 mat") == "\ufffd mat"
