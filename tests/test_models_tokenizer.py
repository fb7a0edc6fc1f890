"""Token ids equal open_clip.tokenize exactly: with pixgrep's exported tokenizer.json and with the
Hugging Face CLIPTokenizerFast files that Immich publishes. (HF-style: test_models_hf_tokenizer.)"""

from __future__ import annotations

import json

import numpy as np
import pytest

from pixgrep.models.tokenizer import ClipTokenizer, clean_text

pytestmark = pytest.mark.torch  # compares with open_clip.tokenize

open_clip = pytest.importorskip("open_clip")

TEXTS = [
    "a photo of a cat",
    "",
    "?!",
    "A   DOG\nrunning\ton the BEACH ",
    "emoji 🐕‍🦺 🏳️‍🌈 👩🏿‍🔬",
    "Ünïcödé ŁÓDŹ ΑΘΗΝΑ İzmir ǅ ß ﬁ",
    "&amp;amp; &lt;tag&gt;",
    "it's they'll WE'D",
    "<|endoftext|><|startoftext|>",
    "<start_of_text>",
    "x<end_of_text>y",
    "long " * 200,
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from pixgrep.lab.export import write_clip_tokenizer

    folder = tmp_path_factory.mktemp("tok")
    write_clip_tokenizer(folder, 77)
    return folder / "tokenizer.json"


def save_immich_tokenizer(folder):
    """tokenizer.json (+ tokenizer_config.json) as transformers' CLIPTokenizerFast saves them, which
    is what Immich's exporter does, built offline from the vocabulary open_clip ships.
    Returns (folder with the saved files, the transformers tokenizer)."""
    transformers = pytest.importorskip("transformers")
    from open_clip.tokenizer import SimpleTokenizer

    simple = SimpleTokenizer()
    vocab = {
        k.replace("<start_of_text>", "<|startoftext|>").replace("<end_of_text>", "<|endoftext|>"): v
        for k, v in simple.encoder.items()
    }
    merges = [" ".join(m) for m in sorted(simple.bpe_ranks, key=simple.bpe_ranks.get)]
    if int(transformers.__version__.split(".")[0]) >= 5:
        pairs = [tuple(m.split(" ")) for m in merges]
        fast = transformers.CLIPTokenizerFast(vocab=vocab, merges=pairs, model_max_length=77)
    else:  # older transformers build the fast tokenizer from vocab.json + merges.txt
        (folder / "vocab.json").write_text(json.dumps(vocab))
        (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
        fast = transformers.CLIPTokenizerFast(
            vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt"), model_max_length=77
        )
    out = folder / "saved"
    fast.save_pretrained(out)
    return out, fast


@pytest.fixture(scope="module")
def immich_style(tmp_path_factory):
    saved, fast = save_immich_tokenizer(tmp_path_factory.mktemp("immich"))
    return saved / "tokenizer.json", fast


def _reference(texts):
    return open_clip.tokenize(texts).numpy()


def _fuzz_texts(n: int = 300) -> list[str]:
    rng = np.random.default_rng(11)
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
        " \t\n.,;:!?'\"-()[]{}<>|/\\@#$%^&*_+=~`",
        "éèêëàâäôöûüçñßøåæœÉÀÇÑ",
        "日本語中文한국어русскийελληνικάעבריתالعربيةहिन्दी",
        "😀🐱🚀👍🏽🇯🇵\u200d\u200b\u00a0\u0301\ufe0f",
    ]
    texts = []
    for _ in range(n):
        length = int(rng.integers(0, 60))
        chars = [pools[int(rng.integers(0, len(pools)))] for _ in range(length)]
        texts.append("".join(p[int(rng.integers(0, len(p)))] for p in chars))
    return texts


def test_exported_tokenizer_equals_open_clip(exported):
    tok = ClipTokenizer(exported, 77)
    texts = TEXTS + _fuzz_texts()
    np.testing.assert_array_equal(tok(texts), _reference(texts))


def test_immich_tokenizer_json_gives_the_same_ids(immich_style):
    path, _ = immich_style
    tok = ClipTokenizer(path, 77)
    texts = TEXTS + _fuzz_texts()
    np.testing.assert_array_equal(tok(texts), _reference(texts))


def test_exported_file_is_interchangeable_with_hf(exported, immich_style):
    """Loaded by `tokenizers` as a whole (normaliser, specials), our file behaves as HF's does."""
    from tokenizers import Tokenizer

    ours = Tokenizer.from_file(str(exported))
    _, fast = immich_style
    for text in ["a photo of a cat", "Hello, World!", "it's 2 dogs"]:
        assert ours.encode(text).ids == fast(text)["input_ids"]


def test_truncation_keeps_end_token_and_pads_with_zeros(exported):
    tok = ClipTokenizer(exported, 77)
    ids = tok(["word " * 100, "cat"])
    assert ids.shape == (2, 77) and ids.dtype == np.int64
    assert ids[0, 0] == tok.sot_id and ids[0, -1] == tok.eot_id and (ids[0] != 0).all()
    assert ids[1, 2] == tok.eot_id and (ids[1, 3:] == 0).all()
    assert tok(["cat"], dtype=np.int32).dtype == np.int32
    short = ClipTokenizer(exported, 8)(["one two three four five six seven eight nine"])
    np.testing.assert_array_equal(
        short, open_clip.tokenize(["one two three four five six seven eight nine"], 8)
    )


def test_clean_text_is_open_clip_cleaning():
    from open_clip.tokenizer import _clean_lower

    for text in TEXTS + _fuzz_texts(50):
        assert clean_text(text) == _clean_lower(text)


def test_flickr_captions_equal_open_clip(exported):
    from conftest import shared_data

    rows = (shared_data("flickr8k") / "captions.tsv").read_text().splitlines()[1:3001]
    captions = [row.split("\t")[2] for row in rows]
    np.testing.assert_array_equal(ClipTokenizer(exported, 77)(captions), _reference(captions))
