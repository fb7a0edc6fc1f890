"""Text -> token ids, through the Hugging Face `tokenizers` library (no torch at run time).

Two flavours, chosen by the text tower's input names (docs/model-format.md):

- `ClipTokenizer` for open_clip towers (input `text`): ids equal to `open_clip.tokenize`. open_clip
  cleans text in Python (ftfy, html unescape twice, whitespace collapse, lower-case) before its BPE,
  so we do the same cleaning here and run only the BPE model of tokenizer.json (works for pixgrep's
  own exports and for Immich's CLIPTokenizerFast files alike), then add start/end tokens, truncate
  keeping the end token last and zero-pad to the context length.
- `OpenClipHFTokenizer` for open_clip towers whose config names a Hugging Face tokenizer
  (`text_cfg.hf_tokenizer_name`: SigLIP, SigLIP 2, NLLB-CLIP, XLM-R CLIP): ids equal to open_clip's
  HFTokenizer, fixed length, with NLLB's language token.
- `HFTokenizer` for Hugging Face towers (inputs `input_ids`, `attention_mask`, ...): tokenizer.json
  as it is, truncated to `model_max_length`, padded to the longest text of the batch.
"""

from __future__ import annotations

import html
import json
import re
import string
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

# open_clip's pre-tokenizer pattern; its own special tokens are matched first (see _special_split).
_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
_OPEN_CLIP_SPECIALS = ("<start_of_text>", "<end_of_text>")
_SOT_NAMES = ("<|startoftext|>", "<start_of_text>")
_EOT_NAMES = ("<|endoftext|>", "<end_of_text>")


_preloaded: dict[str, object] = {}  # tokenizer.json path -> a parsed Tokenizer not handed out yet
_preload_lock = threading.Lock()


def preload(tokenizer_file: Path) -> None:
    """Parse tokenizer.json ahead of need, e.g. in a thread while the text tower's session is
    created; the next tokenizer made from that file takes it."""
    from tokenizers import Tokenizer

    parsed = Tokenizer.from_file(str(tokenizer_file))
    with _preload_lock:
        _preloaded[str(tokenizer_file)] = parsed


def _load(tokenizer_file: Path):
    """A Tokenizer of its own for this file: the preloaded one if there is one, else parsed now."""
    from tokenizers import Tokenizer

    with _preload_lock:
        parsed = _preloaded.pop(str(tokenizer_file), None)
    return parsed if parsed is not None else Tokenizer.from_file(str(tokenizer_file))


# Printable ASCII without "&": text that ftfy.fix_text returns unchanged (what it mends in ASCII is
# HTML entities, line breaks and control characters; tests/test_models_clean_text.py checks it),
# so a plain query skips importing ftfy (50-100 ms of CPU here, on the path of a cold query).
_PLAIN_ASCII = re.compile(r"[ -%'-~]*")


def basic_clean(text: str) -> str:
    """open_clip's basic cleaning: ftfy, html-unescape twice, strip."""
    if not _PLAIN_ASCII.fullmatch(text):
        import ftfy

        text = ftfy.fix_text(text)
    return html.unescape(html.unescape(text)).strip()


def clean_text(text: str) -> str:
    """open_clip's 'lower' cleaning: basic cleaning, collapse whitespace, lower-case."""
    return " ".join(basic_clean(text).split()).strip().lower()


_NO_PUNCTUATION = str.maketrans("", "", string.punctuation)


def _canonicalize(text: str) -> str:
    """open_clip's 'canonicalize' (big_vision's): basic cleaning, "_" to space, ASCII punctuation
    removed, lower-case, whitespace collapsed."""
    text = basic_clean(text).replace("_", " ").translate(_NO_PUNCTUATION).lower()
    return " ".join(text.split()).strip()


CLEANERS: dict[str, Callable[[str], str]] = {
    "lower": clean_text,
    "whitespace": lambda text: " ".join(basic_clean(text).split()).strip(),
    "canonicalize": _canonicalize,
}


class ClipTokenizer:
    """open_clip.tokenize, exactly, from a tokenizer.json holding the CLIP BPE vocabulary."""

    def __init__(self, tokenizer_file: Path, context_length: int = 77):
        from tokenizers import Regex, Tokenizer, pre_tokenizers

        source = _load(tokenizer_file)
        vocab = source.get_vocab(with_added_tokens=True)
        self.sot_id = _first_id(vocab, _SOT_NAMES, tokenizer_file)
        self.eot_id = _first_id(vocab, _EOT_NAMES, tokenizer_file)
        self.context_length = int(context_length)
        # The BPE model alone: no normaliser (we clean as open_clip does), no added-token matching
        # (open_clip reads "<|endoftext|>" typed by a user as punctuation and words), no post-processor.
        self._bpe = Tokenizer(source.model)
        self._bpe.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(_PATTERN), behavior="removed", invert=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        specials = "|".join(_OPEN_CLIP_SPECIALS)
        self._special_split = pre_tokenizers.Split(
            Regex(f"{specials}|{_PATTERN}"), behavior="removed", invert=True
        )

    def __call__(self, texts: Sequence[str], dtype=np.int64) -> np.ndarray:
        cleaned = [clean_text(t) for t in texts]
        plain = [i for i, t in enumerate(cleaned) if not any(s in t for s in _OPEN_CLIP_SPECIALS)]
        ids: list[list[int]] = [[] for _ in cleaned]
        encodings = self._bpe.encode_batch([cleaned[i] for i in plain], add_special_tokens=False)
        for i, enc in zip(plain, encodings, strict=True):
            ids[i] = enc.ids
        for i in set(range(len(cleaned))) - set(plain):
            ids[i] = self._with_literal_specials(cleaned[i])
        out = np.zeros((len(texts), self.context_length), dtype=dtype)
        for row, body in enumerate(ids):
            tokens = [self.sot_id, *body, self.eot_id]
            if len(tokens) > self.context_length:
                tokens = tokens[: self.context_length]
                tokens[-1] = self.eot_id
            out[row, : len(tokens)] = tokens
        return out

    def cut_text(self, text: str) -> str | None:
        """The end of `text` (cleaned, lower-case) that does not fit in the context length, or None."""
        cleaned = clean_text(text)
        room = self.context_length - 2  # start and end tokens
        encoding = self._bpe.encode(cleaned, add_special_tokens=False)
        if len(encoding.ids) <= room:
            return None
        start = encoding.offsets[room][0]
        if start > 0 and not cleaned[start - 1].isspace():  # a word cut in two counts as cut
            start = cleaned.rfind(" ", 0, start) + 1
        return cleaned[start:].strip() or None

    def _with_literal_specials(self, text: str) -> list[int]:
        """open_clip matches its own special-token strings inside the text; so do we."""
        ids: list[int] = []
        for piece, _ in self._special_split.pre_tokenize_str(text):
            if piece == _OPEN_CLIP_SPECIALS[0]:
                ids.append(self.sot_id)
            elif piece == _OPEN_CLIP_SPECIALS[1]:
                ids.append(self.eot_id)
            else:
                ids.extend(self._bpe.encode(piece, add_special_tokens=False).ids)
        return ids


class HFTokenizer:
    """A Hugging Face tokenizer.json used as is: its normaliser, special tokens and truncation."""

    def __init__(self, tokenizer_file: Path, config_file: Path | None = None):
        self._tok = _load(tokenizer_file)
        config = json.loads(config_file.read_text()) if config_file and config_file.is_file() else {}
        max_length = config.get("model_max_length")
        if isinstance(max_length, int) and 0 < max_length < 1_000_000:  # HF writes 1e30 for "no limit"
            self._tok.enable_truncation(max_length=max_length)
        pad_token = config.get("pad_token")
        if isinstance(pad_token, dict):
            pad_token = pad_token.get("content")
        padding = self._tok.padding or {}
        pad_token = pad_token or padding.get("pad_token") or "[PAD]"
        pad_id = self._tok.token_to_id(pad_token)
        if pad_id is None:
            pad_id = padding.get("pad_id", 0)
        self._tok.enable_padding(pad_id=pad_id, pad_token=pad_token)  # to the longest text of a batch

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        encodings = self._tok.encode_batch([well_formed(t) for t in texts])
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}

    def cut_text(self, text: str) -> str | None:
        """The end of `text` past the model's maximum length, or None when it fits."""
        return _hf_cut_text(self._tok, well_formed(text))


def well_formed(text: str) -> str:
    """`text` with each lone surrogate (a JSON "\\ud800", a non-UTF-8 byte of argv) as U+FFFD, as
    a UTF-8 decoder reads a broken byte: `tokenizers` refuses such a str with a TypeError. The
    other tokenizers clean through ftfy, which does the same."""
    return _SURROGATE.sub("\ufffd", text)


_SURROGATE = re.compile("[\ud800-\udfff]")


class OpenClipHFTokenizer:
    """open_clip's HFTokenizer, exactly, without transformers: the tokenizer of SigLIP, SigLIP 2,
    NLLB-CLIP, XLM-R CLIP and other open_clip models with a Hugging Face text tokenizer (towers
    fed `text` ids of fixed length; docs/model-format.md).

    open_clip cleans each text (`clean`: whitespace, lower or canonicalize), then calls the
    transformers tokenizer with `max_length=context_length, padding="max_length", truncation=True`,
    which runs tokenizer.json's pipeline with the post-processor's special tokens, truncation
    (longest first) and padding on the sides and with the pad token of tokenizer_config.json. With
    `strip_sep_token` the separator's id becomes 0. NLLB's tokenizer puts a source-language token
    first and the end token last (`language`; transformers' set_src_lang_special_tokens).
    """

    def __init__(
        self,
        tokenizer_file: Path,
        config_file: Path | None,
        *,
        context_length: int,
        clean: str = "whitespace",
        strip_sep_token: bool = False,
        nllb: bool = False,
    ):
        if clean not in CLEANERS:
            raise ValueError(f"unknown text cleaning {clean!r} (known: {', '.join(CLEANERS)})")
        self._clean = CLEANERS[clean]
        self._tok = _load(tokenizer_file)
        config = _tokenizer_settings(config_file)
        self.context_length = int(context_length)
        pad_token = _token_name(config.get("pad_token"))
        pad_id = self._tok.token_to_id(pad_token) if pad_token else None
        if pad_id is None:
            raise ValueError("tokenizer_config.json names no pad_token of the vocabulary")
        self.pad_id = pad_id
        self._pad_left = config.get("padding_side", "right") == "left"
        self._cut_left = config.get("truncation_side", "right") == "left"
        self._tok.encode_special_tokens = bool(config.get("split_special_tokens", False))
        sep_token = _token_name(config.get("sep_token")) if strip_sep_token else None
        self._sep_id = self._tok.token_to_id(sep_token) if sep_token else None
        self.nllb = nllb
        if nllb:  # the language token is added per call, padding and truncation around it
            eos = _token_name(config.get("eos_token")) or "</s>"
            self._eos_id = self._tok.token_to_id(eos)
            if self._eos_id is None:
                raise ValueError(f"the NLLB tokenizer has no end token {eos!r}")
            self._legacy = bool(config.get("legacy_behaviour", False))
            self._tok.no_padding()
            self._tok.no_truncation()
        else:
            self._tok.enable_truncation(
                max_length=self.context_length, direction="left" if self._cut_left else "right"
            )
            self._tok.enable_padding(
                length=self.context_length,
                direction="left" if self._pad_left else "right",
                pad_id=pad_id,
                pad_token=pad_token,
            )

    def __call__(self, texts: Sequence[str], dtype=np.int64, language: str | None = None) -> np.ndarray:
        cleaned = [self._clean(t) for t in texts]
        if self.nllb:
            rows = self._with_language(cleaned, language or "eng_Latn")
        else:
            rows = [e.ids for e in self._tok.encode_batch(cleaned)]
        ids = np.asarray(rows, dtype=np.int64).reshape(len(texts), self.context_length)
        if self._sep_id is not None:
            ids[ids == self._sep_id] = 0
        return ids.astype(dtype, copy=False)

    def language_id(self, code: str) -> int | None:
        """The id of a language token (NLLB's eng_Latn, deu_Latn, ...), None if there is none."""
        return self._tok.token_to_id(code)

    def _with_language(self, cleaned: list[str], language: str) -> list[list[int]]:
        lang_id = self._tok.token_to_id(language)
        if lang_id is None:
            raise ValueError(f"the tokenizer has no language token {language!r}")
        room = self.context_length - 2
        rows = []
        for encoding in self._tok.encode_batch(cleaned, add_special_tokens=False):
            body = encoding.ids
            if len(body) > room:
                body = body[len(body) - room :] if self._cut_left else body[:room]
            row = [*body, self._eos_id, lang_id] if self._legacy else [lang_id, *body, self._eos_id]
            padding = [self.pad_id] * (self.context_length - len(row))
            rows.append(padding + row if self._pad_left else row + padding)
        return rows

    def cut_text(self, text: str) -> str | None:
        """The end of `text` (cleaned) that does not fit in the context length, or None."""
        cleaned = self._clean(text)
        if not self.nllb:
            return _hf_cut_text(self._tok, cleaned)
        encoding = self._tok.encode(cleaned, add_special_tokens=False)
        room = self.context_length - 2
        if len(encoding.ids) <= room:
            return None
        return _cut_from(cleaned, encoding.offsets[room][0])


def _tokenizer_settings(config_file: Path | None) -> dict:
    """tokenizer_config.json over special_tokens_map.json beside it (where transformers reads the
    special tokens, padding and truncation sides); {} when neither is there."""
    settings: dict = {}
    if config_file is None:
        return settings
    for path in (config_file.with_name("special_tokens_map.json"), config_file):
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                settings.update({k: v for k, v in data.items() if v is not None})
    return settings


def _token_name(value) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _hf_cut_text(tokenizer, text: str) -> str | None:
    encoding = tokenizer.encode(text)
    if not encoding.overflowing:
        return None
    ends = [
        end
        for (start, end), special in zip(encoding.offsets, encoding.special_tokens_mask, strict=True)
        if not special and end > start
    ]
    return _cut_from(text, max(ends, default=0))


def _cut_from(text: str, cut: int) -> str | None:
    """text[cut:], from the start of the word that `cut` falls in (a word cut in two counts as cut)."""
    if 0 < cut < len(text) and not text[cut].isspace() and not text[cut - 1].isspace():
        cut = text.rfind(" ", 0, cut) + 1
    return text[cut:].strip() or None


def _first_id(vocab: dict[str, int], names: Sequence[str], path: Path) -> int:
    for name in names:
        if name in vocab:
            return vocab[name]
    raise ValueError(f"{path} has none of the tokens {', '.join(names)}")
