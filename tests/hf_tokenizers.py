"""Hugging Face tokenizer folders trained here with the `tokenizers` library (no download), as
`save_pretrained` writes them: tokenizer.json, tokenizer_config.json, special_tokens_map.json.

Their vocabularies are small (a few hundred to a thousand tokens), so they fit the tiny text towers
of the tests; trained on Flickr8k captions plus lines in other languages and scripts.
"""

from __future__ import annotations

import json
from pathlib import Path

# Lines in other languages and scripts: German, Chinese, Arabic (right to left), Japanese, Russian,
# Hindi, emoji, mixed directions, odd spacing and punctuation, HTML entities.
MULTILINGUAL = [
    "Ein Hund läuft über die grüne Wiese.",
    "Zwei Kinder spielen am Strand mit einem roten Ball",
    "Straße, Fußgänger und Ärger: ÄÖÜ äöü ß",
    "一只狗在草地上奔跑。",
    "两个孩子在海滩上玩红色的球",
    "الكلب يركض على العشب الأخضر",
    "طفلان يلعبان على الشاطئ 123",
    "犬が公園で走っている",
    "Собака бежит по траве",
    "कुत्ता घास पर दौड़ रहा है",
    "a dog 🐕 running on the beach 🏖️ with 👨‍👩‍👧 family",
    "🙂🙃🎉",
    "mixed العربية and English and 中文 text",
    "  lots   of\tspaces\nand lines  ",
    "Fish &amp; chips, snake_case words; (brackets) [and] {braces}!?",
    "ÉCOLE Ｆｕｌｌｗｉｄｔｈ ﬁ ligature ①",
    "",
    "a " * 80,
]

LANGUAGE_CODES = ["eng_Latn", "deu_Latn", "zho_Hans", "arb_Arab"]


def captions(n: int, data_dir: Path) -> list[str]:
    """The first n Flickr8k captions."""
    lines = (data_dir / "captions.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [line.split("\t", 2)[2] for line in lines[:n]]


def unigram_folder(dest: Path, texts: list[str], *, vocab_size: int = 600, max_length: int = 64) -> Path:
    """A SentencePiece-like tokenizer (Unigram, NFKC, Metaspace) that ends each text with </s>,
    as T5 / SigLIP tokenizers do, in a folder transformers' AutoTokenizer reads offline."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    specials = ["<pad>", "</s>", "<unk>"]
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>")
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "pad_token": "<pad>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "model_max_length": max_length,
    }
    return _save(dest, tok, config)


def wordpiece_folder(dest: Path, texts: list[str], *, vocab_size: int = 800) -> Path:
    """A BERT-like tokenizer ([CLS] text [SEP], lower-cased WordPiece): the strip_sep_token case."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials)
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "pad_token": "[PAD]",
        "sep_token": "[SEP]",
        "cls_token": "[CLS]",
        "unk_token": "[UNK]",
    }
    return _save(dest, tok, config)


def nllb_folder(dest: Path, texts: list[str], *, vocab_size: int = 700) -> Path:
    """An NLLB-like tokenizer: BPE over Metaspace pieces, <s> <pad> </s> <unk> first, language codes
    as special tokens, tokenizer_class NllbTokenizer (transformers rebuilds its pipeline from it)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials)
    tok.train_from_iterator(texts, trainer)
    tok.add_special_tokens([*LANGUAGE_CODES, "<mask>"])
    config = {
        "tokenizer_class": "NllbTokenizer",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "sep_token": "</s>",
        "cls_token": "<s>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "mask_token": "<mask>",
        "src_lang": "eng_Latn",
        "additional_special_tokens": LANGUAGE_CODES,
        "legacy_behaviour": False,
    }
    return _save(dest, tok, config)


def _save(dest: Path, tok, config: dict) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    tok.save(str(dest / "tokenizer.json"))
    (dest / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    specials = {k: v for k, v in config.items() if k.endswith("_token")}
    (dest / "special_tokens_map.json").write_text(json.dumps(specials, indent=2))
    return dest
