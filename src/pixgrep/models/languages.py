"""Query languages: the language token of text towers that take one (NLLB-CLIP), and which models
read queries in more languages than English.

A language is given as a FLORES-200 code (`deu_Latn`), an ISO 639-1 code (`de`) or a locale
(`de_DE.UTF-8`, `zh-TW`). Without one: the process default (`--lang`, set_default_language), else
$PIXGREP_LANG, else the process locale (LC_ALL, LC_MESSAGES, LANG), as Immich takes the language of
its user's interface; English where none of them names a language.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from pixgrep.errors import PixgrepError

DEFAULT = "eng_Latn"
_FLORES = re.compile(r"[a-z]{3}_[A-Z][a-z]{3}")

# ISO 639-1 (and a few locale spellings) -> FLORES-200, for the languages NLLB knows.
_CODES = {
    "af": "afr_Latn", "am": "amh_Ethi", "ar": "arb_Arab", "as": "asm_Beng", "az": "azj_Latn",
    "be": "bel_Cyrl", "bg": "bul_Cyrl", "bn": "ben_Beng", "bo": "bod_Tibt", "bs": "bos_Latn",
    "ca": "cat_Latn", "cs": "ces_Latn", "cy": "cym_Latn", "da": "dan_Latn", "de": "deu_Latn",
    "el": "ell_Grek", "en": "eng_Latn", "eo": "epo_Latn", "es": "spa_Latn", "et": "est_Latn",
    "eu": "eus_Latn", "fa": "pes_Arab", "fi": "fin_Latn", "fo": "fao_Latn", "fr": "fra_Latn",
    "ga": "gle_Latn", "gd": "gla_Latn", "gl": "glg_Latn", "gu": "guj_Gujr", "ha": "hau_Latn",
    "he": "heb_Hebr", "hi": "hin_Deva", "hr": "hrv_Latn", "hu": "hun_Latn", "hy": "hye_Armn",
    "id": "ind_Latn", "ig": "ibo_Latn", "is": "isl_Latn", "it": "ita_Latn", "ja": "jpn_Jpan",
    "jv": "jav_Latn", "ka": "kat_Geor", "kk": "kaz_Cyrl", "km": "khm_Khmr", "kn": "kan_Knda",
    "ko": "kor_Hang", "ky": "kir_Cyrl", "lb": "ltz_Latn", "lo": "lao_Laoo", "lt": "lit_Latn",
    "lv": "lvs_Latn", "mk": "mkd_Cyrl", "ml": "mal_Mlym", "mn": "khk_Cyrl", "mr": "mar_Deva",
    "ms": "zsm_Latn", "mt": "mlt_Latn", "my": "mya_Mymr", "nb": "nob_Latn", "ne": "npi_Deva",
    "nl": "nld_Latn", "nn": "nno_Latn", "no": "nob_Latn", "pa": "pan_Guru", "pl": "pol_Latn",
    "ps": "pbt_Arab", "pt": "por_Latn", "ro": "ron_Latn", "ru": "rus_Cyrl", "si": "sin_Sinh",
    "sk": "slk_Latn", "sl": "slv_Latn", "so": "som_Latn", "sq": "als_Latn", "sr": "srp_Cyrl",
    "sv": "swe_Latn", "sw": "swh_Latn", "ta": "tam_Taml", "te": "tel_Telu", "tg": "tgk_Cyrl",
    "th": "tha_Thai", "tl": "tgl_Latn", "tr": "tur_Latn", "uk": "ukr_Cyrl", "ur": "urd_Arab",
    "uz": "uzn_Latn", "vi": "vie_Latn", "yo": "yor_Latn", "zh": "zho_Hans", "zu": "zul_Latn",
    "zh_hant": "zho_Hant", "zh_tw": "zho_Hant", "zh_hk": "zho_Hant", "zh_mo": "zho_Hant",
    "fil": "tgl_Latn", "yue": "yue_Hant",
}  # fmt: skip


_default: str | None = None


def set_default_language(language: str | None) -> None:
    """The query language of every encoder of this process that is given none (None: the locale's)."""
    global _default
    _default = flores_code(language) if language is not None else None


def flores_code(language: str | None) -> str:
    """The FLORES-200 code for `language` (see the module doc); None: the process default or the
    locale. PixgrepError for a language given that this table does not know."""
    if language is None:
        language = _default or os.environ.get("PIXGREP_LANG") or None
    if language is None:
        return _from_code(locale_language()) or DEFAULT
    code = _from_code(language)
    if code is None:
        raise PixgrepError(
            f"unknown language {language!r}: give an ISO 639-1 code such as de or zh, a locale "
            "such as pt_BR, or a FLORES-200 code such as deu_Latn"
        )
    return code


def locale_language() -> str:
    """The language of the process locale, as the C library's variables give it ("" if none)."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(name, "")
        if value:
            return value
    return ""


def _from_code(value: str) -> str | None:
    value = value.strip()
    if _FLORES.fullmatch(value):
        return value
    value = value.split(".")[0].split("@")[0].replace("-", "_").lower()  # de_DE.UTF-8@euro -> de_de
    if value in ("", "c", "posix"):
        return None
    return _CODES.get(value) or _CODES.get(value.split("_")[0])


def choices(has_token: Callable[[str], bool] = lambda code: True) -> list[dict[str, object]]:
    """The languages of this table a query may be asked in, for a language picker: each FLORES-200
    code that `has_token` accepts, with the BCP 47 tags that name it (the first is the one to show)."""
    tags: dict[str, list[str]] = {}
    for key, code in _CODES.items():
        tags.setdefault(code, []).append(_bcp47(key))
    return [{"code": code, "tags": names} for code, names in tags.items() if has_token(code)]


def _bcp47(key: str) -> str:
    """A key of the table as a BCP 47 tag, as browsers write them: zh_hant -> zh-Hant, pt_br -> pt-BR."""
    first, *rest = key.split("_")
    return "-".join([first, *(part.title() if len(part) == 4 else part.upper() for part in rest)])


# Open_clip's Hugging Face tokenizers of multilingual text towers, by a part of the name it gives.
_MULTILINGUAL_TOKENIZERS = ("nllb", "xlm-roberta", "siglip2")


def model_languages(config: dict, model_id: str) -> str:
    """What text queries to a model may be written in, as the registry's `languages` says it ("en",
    or "multilingual ..."): config.json's `languages` when the folder says, else the registry entry
    of the model id (its int8 variant too), else "multilingual" for a text tower whose tokenizer is
    NLLB's, XLM-R's or SigLIP 2's, else "en"."""
    from pixgrep.models.registry import MODELS

    declared = config.get("languages")
    if isinstance(declared, str) and declared.strip():
        return declared.strip()
    spec = MODELS.get(model_id.split("@", 1)[0])
    if spec is not None:
        return spec.languages
    tokenizer = str((config.get("text_cfg") or {}).get("hf_tokenizer_name") or "").lower()
    return "multilingual" if any(name in tokenizer for name in _MULTILINGUAL_TOKENIZERS) else "en"


def is_multilingual(languages: str) -> bool:
    """True for a `languages` value (registry, model_languages) that names more than English."""
    return languages.startswith("multilingual")
