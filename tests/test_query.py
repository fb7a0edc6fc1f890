"""The query language: weights, negation, paths, URLs, quoting and one-line syntax errors."""

from __future__ import annotations

import os
import re

import pytest

from pixgrep.errors import PixgrepError
from pixgrep.search.query import MAX_TERMS, Term, parse_query


def kinds(terms):
    return [(t.weight, t.kind, t.value) for t in terms]


def test_argv_tokens_and_one_string_give_the_same_terms():
    expected = [(1.0, "text", "horse"), (0.5, "text", "stars"), (-1.0, "text", "day")]
    assert kinds(parse_query(["horse", "+", "0.5:stars", "-", "day"])) == expected
    assert kinds(parse_query("horse + 0.5:stars - day")) == expected


@pytest.mark.parametrize(
    "query, expected",
    [
        ("2:golden retriever", [(2.0, "text", "golden retriever")]),
        ("-0.5:night", [(-0.5, "text", "night")]),
        (".5:night", [(0.5, "text", "night")]),
        ("1e-1:night", [(0.1, "text", "night")]),
        ("cat - 2:dog", [(1.0, "text", "cat"), (-2.0, "text", "dog")]),
        ("- day", [(-1.0, "text", "day")]),
        ("t-shirt + x-ray", [(1.0, "text", "t-shirt"), (1.0, "text", "x-ray")]),
        ("note: red car", [(1.0, "text", "note: red car")]),  # not a number before the colon
        ("2024-05-01: party", [(1.0, "text", "2024-05-01: party")]),
        ("1:3:10 to yuma", [(1.0, "text", "3:10 to yuma")]),  # only the first NUMBER: is a weight
        ('"3:10 to yuma"', [(1.0, "text", "3:10 to yuma")]),  # quoted text is literal
        ('"rock + roll" - crowd', [(1.0, "text", "rock + roll"), (-1.0, "text", "crowd")]),
        ('0.5:"rock + roll"', [(0.5, "text", "rock + roll")]),
        ('"say \\"cheese\\""', [(1.0, "text", 'say "cheese"')]),
        ("  cat  ", [(1.0, "text", "cat")]),
    ],
)
def test_string_grammar(query, expected):
    assert kinds(parse_query(query)) == expected


def test_argv_token_keeps_operators_inside_it_as_text():
    # The shell already grouped it: `pixgrep "rock + roll"` searches that text.
    assert kinds(parse_query(["rock + roll"])) == [(1.0, "text", "rock + roll")]
    expected = [(1.0, "text", "a"), (-1.0, "text", "rock - roll")]
    assert kinds(parse_query(["a", "-", "rock - roll"])) == expected


def test_shell_words_without_operators_are_one_text():
    # `pixgrep a red fox` (no quotes) searches "a red fox"; a weight on the first word covers them all.
    assert kinds(parse_query(["a", "red", "fox"])) == [(1.0, "text", "a red fox")]
    assert kinds(parse_query(["2:red", "car", "-", "rainy", "night"])) == [
        (2.0, "text", "red car"),
        (-1.0, "text", "rainy night"),
    ]


@pytest.mark.parametrize(
    "tokens, message",
    [
        (
            ["cat", "https://example.org/a.jpg"],
            "missing '+' or '-' between 'cat' and 'https://example.org/a.jpg'",
        ),
        (["./a.jpg", "cat"], "missing '+' or '-' between './a.jpg' and 'cat'"),
        (["cat", "0.5:dog"], "missing '+' or '-' before '0.5:dog'"),
    ],
)
def test_words_next_to_an_image_or_a_weight_need_an_operator(tokens, message):
    with pytest.raises(PixgrepError, match=re.escape(message)):
        parse_query(tokens)


def test_urls_are_url_terms():
    terms = parse_query(["https://example.org/cat.jpg", "-", "0.5:http://example.org/dog.png"])
    assert kinds(terms) == [
        (1.0, "url", "https://example.org/cat.jpg"),
        (-0.5, "url", "http://example.org/dog.png"),
    ]


def test_existing_files_are_image_terms_with_absolute_paths(tmp_path, monkeypatch):
    image = tmp_path / "ref image.jpg"
    image.write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    assert kinds(parse_query(["ref image.jpg"])) == [(1.0, "path", str(image))]
    assert kinds(parse_query(["./ref image.jpg", "+", "in red"])) == [
        (1.0, "path", str(image)),
        (1.0, "text", "in red"),
    ]
    assert kinds(parse_query(f'2:"{image}" - dog')) == [(2.0, "path", str(image)), (-1.0, "text", "dog")]
    assert kinds(parse_query([f"file://{image}"])) == [(1.0, "path", str(image))]


def test_home_relative_path(tmp_path, monkeypatch):
    (tmp_path / "a.png").write_bytes(b"x")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert kinds(parse_query("~/a.png")) == [(1.0, "path", os.path.join(str(tmp_path), "a.png"))]


def test_a_word_that_is_not_a_file_is_text(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()  # a folder named like the word does not make it a path
    assert kinds(parse_query(["photos"])) == [(1.0, "text", "photos")]


@pytest.mark.parametrize(
    "query, message",
    [
        ("horse +", "dangling '+'"),
        (["horse", "-"], "dangling '-'"),
        ("+", "dangling"),
        ("a + + b", "two operators in a row"),
        (["a", "-", "+", "b"], "two operators in a row"),
        ("0.5.3:cat", "cannot read the weight '0.5.3'"),
        ("1e:cat", "cannot read the weight '1e'"),
        ("1e400:cat", "too large"),
        ("1e308:cat + 1e308:dog", "term 1: the weight 1e308 is too large"),
        ("cat - 2000000:dog", "term 2: the weight 2000000 is too large"),
        ("0.5:", "has a weight but nothing to search for"),
        ("", "empty query"),
        ([], "empty query"),
        (["cat", "+", ""], "term 2 is empty"),
        ('""', "term 1 is empty"),
        ('dog + "abc', "unclosed quote"),
        ('"a" "b" + c', "missing '+' or '-'"),
        ('ab"c" - d', "quote in the middle of a term"),
        ("./no-such-image.jpg", "no such image file: ./no-such-image.jpg"),
        ("/no/such/dir/x.png - dog", "term 1: no such image file"),
    ],
)
def test_errors_are_one_line_saying_what_and_where(query, message):
    with pytest.raises(PixgrepError) as info:
        parse_query(query)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_folder_is_not_an_image(tmp_path):
    with pytest.raises(PixgrepError, match="is a folder, not an image"):
        parse_query([str(tmp_path)])


def test_term_is_frozen():
    term = Term(1.0, "text", "cat")
    with pytest.raises(AttributeError):
        term.weight = 2.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "sentence",
    ['a sign saying "open" on a door', '"hello" written on a wall', 'a 12" pizza', '"a" "b"', 'ab"c"'],
)
def test_a_sentence_with_quotation_marks_is_its_text(sentence):
    # no operator: not query syntax but an ordinary sentence, searched as written
    assert parse_query(sentence) == [Term(1.0, "text", sentence)]


def test_weights_that_would_overflow_the_sum_are_refused_as_such():
    from pixgrep.search.query import make_term

    with pytest.raises(PixgrepError, match="weight must be between -1,000,000 and 1,000,000"):
        make_term("text", "cat", 1e308)
    assert make_term("text", "cat", -1e6).weight == -1e6


def test_a_query_combines_at_most_max_terms():
    words = [f"w{i}" for i in range(MAX_TERMS + 1)]
    assert len(parse_query(" + ".join(words[:MAX_TERMS]))) == MAX_TERMS
    for query in (" + ".join(words), [t for w in words for t in ("+", w)][1:]):
        with pytest.raises(PixgrepError, match=f"more than {MAX_TERMS} terms"):
            parse_query(query)


def test_a_remote_query_never_looks_at_the_disk(tmp_path, monkeypatch):
    """Over HTTP the spelling alone decides: a path-like term is refused with one message whether
    or not it exists, and a word naming a file in the working directory is text."""
    (tmp_path / "index.log").write_text("x")
    (tmp_path / "cat.jpg").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)

    def no_disk(*args, **kwargs):
        raise AssertionError("the file system was asked")

    for name in ("isfile", "isdir", "exists", "expanduser", "abspath"):
        monkeypatch.setattr(os.path, name, no_disk)
    monkeypatch.setattr(os, "stat", no_disk)
    assert kinds(parse_query("index.log + cat.jpg + ~root", remote=True)) == [
        (1.0, "text", "index.log"),
        (1.0, "text", "cat.jpg"),
        (1.0, "text", "~root"),
    ]
    paths = [str(tmp_path / "cat.jpg"), str(tmp_path / "none.jpg"), str(tmp_path), "~/.bashrc", "./cat.jpg"]
    paths += ["../x", "file:///etc/passwd", "C:\\photos\\a.jpg"]
    for path in paths:
        with pytest.raises(PixgrepError) as refused:
            parse_query(f"dog + 0.5:{path}", remote=True)
        assert str(refused.value) == (
            f"term 2: image paths are not accepted over HTTP ({path}): upload the image or use its catalog id"
        )
