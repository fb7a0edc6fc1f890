"""A Hugging Face tokenizer folder -> the textual/ tokenizer files of a model folder (export time).

open_clip runs such a tokenizer through transformers, whose tokenizer classes may rebuild parts of
tokenizer.json's pipeline (NLLB's rebuilds its post-processor and pre-tokenizer). So the export
writes the pipeline transformers actually runs (its backend tokenizer) with the settings
transformers reads (pad / end / separator tokens, padding and truncation sides), and checks that
pixgrep's tokenizer, which has no transformers, gives open_clip's ids for texts in many scripts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from pixgrep.errors import PixgrepError

# Texts both tokenizers must agree on: scripts, emoji, punctuation, HTML, spacing, a long text.
PROBES = [
    "a photo of a dog running on the beach",
    "Ein Hund läuft über die grüne Wiese, Straße ÄÖÜ ß",
    "一只狗在草地上奔跑。",
    "الكلب يركض على العشب الأخضر",
    "Собака бежит по траве; 犬が走る; कुत्ता दौड़ रहा है",
    "family 👨‍👩‍👧 at the beach 🏖️ 🙂",
    "Fish &amp; chips, snake_case (brackets) [x] {y}!? Ｆｕｌｌｗｉｄｔｈ ﬁ ①",
    "  tabs\tand\nlines   ",
    "",
    "many words " * 60,
]


def load_tokenizer(source: str, text_cfg: dict[str, Any]):
    """open_clip's HFTokenizer for `source` (a folder as save_pretrained writes it, or a hub name)
    with the config's context length and tokenizer arguments; PixgrepError if it cannot load."""
    from open_clip.tokenizer import HFTokenizer

    if text_cfg.get("tokenizer_mode"):
        raise PixgrepError(f"the tokenizer mode {text_cfg['tokenizer_mode']!r} cannot be exported")
    kwargs = dict(text_cfg.get("tokenizer_kwargs") or {})
    try:
        return HFTokenizer(source, context_length=int(text_cfg.get("context_length") or 77), **kwargs)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise PixgrepError(
            f"cannot load the tokenizer {source}: {reason} (give a folder as Hugging Face's "
            "save_pretrained writes it, with tokenizer.json, with --tokenizer DIR)"
        ) from None


def write_hf_tokenizer(source: str, textual: Path, text_cfg: dict[str, Any], *, nllb: bool, reference=None):
    """Write tokenizer.json + tokenizer_config.json (+ special_tokens_map.json) into `textual`
    from `source` (see load_tokenizer; `reference`: it, loaded already) and return open_clip's
    HFTokenizer for it. PixgrepError when it cannot be loaded or pixgrep's ids would differ."""
    from tokenizers import Tokenizer

    kwargs = dict(text_cfg.get("tokenizer_kwargs") or {})
    context_length = int(text_cfg.get("context_length") or 77)
    if reference is None:
        reference = load_tokenizer(source, text_cfg)
    hf = reference.tokenizer
    if hf.pad_token is None:
        raise PixgrepError(f"the tokenizer {source} has no pad token (tokenizer_config.json pad_token)")
    backend = Tokenizer.from_str(hf.backend_tokenizer.to_str())
    backend.no_padding()
    backend.no_truncation()
    textual.mkdir(parents=True, exist_ok=True)
    backend.save(str(textual / "tokenizer.json"))

    folder = Path(source)
    settings: dict[str, Any] = {}
    if (folder / "tokenizer_config.json").is_file():
        settings = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        settings.pop("auto_map", None)  # no remote code
    settings.update(
        tokenizer_class=settings.get("tokenizer_class") or type(hf).__name__,
        pad_token=str(hf.pad_token),
        eos_token=None if hf.eos_token is None else str(hf.eos_token),
        sep_token=None if hf.sep_token is None else str(hf.sep_token),
        padding_side=hf.padding_side,
        truncation_side=hf.truncation_side,
        split_special_tokens=bool(getattr(hf, "split_special_tokens", False)),
        model_max_length=context_length,
    )
    if nllb:
        settings["legacy_behaviour"] = bool(getattr(hf, "legacy_behaviour", False))
    (textual / "tokenizer_config.json").write_text(json.dumps(settings, indent=2) + "\n")
    if (folder / "special_tokens_map.json").is_file():
        shutil.copyfile(folder / "special_tokens_map.json", textual / "special_tokens_map.json")
    _check_same_ids(reference, textual, context_length, kwargs, nllb)
    return reference


def language_tokens(tokenizer) -> list[str]:
    """The FLORES-200 language tokens of an NLLB tokenizer (its added tokens like deu_Latn)."""
    from pixgrep.models.languages import _FLORES

    return sorted(t for t in tokenizer.get_vocab() if _FLORES.fullmatch(t))


def _check_same_ids(reference, textual: Path, context_length: int, kwargs: dict, nllb: bool) -> None:
    import numpy as np

    from pixgrep.models.tokenizer import OpenClipHFTokenizer

    runtime = OpenClipHFTokenizer(
        textual / "tokenizer.json",
        textual / "tokenizer_config.json",
        context_length=context_length,
        clean=kwargs.get("clean", "whitespace"),
        strip_sep_token=bool(kwargs.get("strip_sep_token", False)),
        nllb=nllb,
    )
    languages: list[str | None] = [None]
    if nllb:
        codes = language_tokens(reference.tokenizer)
        chosen = [c for c in codes if c in ("eng_Latn", "deu_Latn", "zho_Hans", "arb_Arab")]
        languages = list(chosen or codes[:3])
        if not languages:
            raise PixgrepError("the NLLB tokenizer has no language tokens (such as eng_Latn)")
    for language in languages:
        if language is not None:
            set_language(reference, language)
        expected = reference(PROBES).numpy()
        got = runtime(PROBES, language=language)
        if expected.shape != got.shape or not np.array_equal(expected, got):
            row = next((i for i in range(len(PROBES)) if not np.array_equal(expected[i], got[i])), 0)
            raise PixgrepError(
                "pixgrep's tokenizer gives other ids than open_clip's for this tokenizer "
                f"(first for {PROBES[row][:40]!r}{f', language {language}' if language else ''}); "
                "it cannot be exported"
            )
    if nllb:
        set_language(reference, "eng_Latn" if "eng_Latn" in languages else str(languages[0]))


def set_language(reference, language: str) -> None:
    """NLLB's source language for open_clip's HFTokenizer. Not its set_language: transformers
    puts the tokenizer's src_lang back on every call, so only setting src_lang lasts."""
    reference.tokenizer.src_lang = language
