"""clean_text's fast path (printable ASCII without "&" skips ftfy) gives what ftfy gives (no torch)."""

from __future__ import annotations

import html

import numpy as np

from pixgrep.models import tokenizer
from pixgrep.models.tokenizer import clean_text

ASCII = "".join(chr(c) for c in range(32, 127)) + "\t\n\r\x00\x1b\x7f"


def _with_ftfy(text: str) -> str:
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return " ".join(text.split()).strip().lower()


def test_plain_ascii_cleans_as_ftfy_cleans():
    rng = np.random.default_rng(3)
    texts = ["a photo of a cat", "", "  A  DOG'S toy (red) #1 ~50% off; 'quoted' \"too\" <b>  "]
    texts += ["".join(rng.choice(list(ASCII), int(rng.integers(0, 80)))) for _ in range(3000)]
    plain = [t for t in texts if tokenizer._PLAIN_ASCII.fullmatch(t)]
    assert len(plain) >= 200  # the fast path is exercised, not only the ftfy one
    for text in texts:
        assert clean_text(text) == _with_ftfy(text), repr(text)


def test_what_ftfy_changes_in_ascii_goes_through_ftfy():
    for text in ["fish &amp; chips", "a\r\nb", "bell\x07 ring", "esc\x1b[31mred", "tab\there"]:
        assert not tokenizer._PLAIN_ASCII.fullmatch(text)
        assert clean_text(text) == _with_ftfy(text)
    assert clean_text("fish &amp;amp; chips") == "fish & chips"
