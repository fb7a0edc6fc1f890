"""Query languages over HTTP: `lang` in the search routes and /knn-service, what /api/models says of
the served model, clip-retrieval's use_mclip, and queries in any script (non-Latin, right to left,
emoji, broken Unicode) never crashing the server.

The NLLB-style model is tests/tiny_nllb.py, its text tower giving each language token a vector of
its own; three images are planted with the vectors of one query in three languages, so which image
ranks first shows which language token a request reached the tower with. The tiny test model (a
reduced open_clip ViT, English-only CLIP tokenizer) answers the odd queries too.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from mini_support import mini_cache  # noqa: F401  (session fixture)
from serverkit import add_to_catalog, make_images
from tiny_nllb import planted_catalog

from pixgrep.models import languages
from pixgrep.server.app import create_app

QUERY = "ein Hund auf der Wiese"
PLANTED = ("eng_Latn", "deu_Latn", "zho_Hans")  # one image per language token


@pytest.fixture(scope="module")
def no_language_settings():
    """No locale, no $PIXGREP_LANG, no --lang: the server's default is English."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("LC_ALL", "LC_MESSAGES", "LANG", "PIXGREP_LANG"):
            patch.delenv(name, raising=False)
        patch.setattr(languages, "_default", None)
        yield patch


@pytest.fixture(scope="module")
def nllb(tmp_path_factory, no_language_settings):
    """(client of a server of the NLLB-style model, image id by the language of its vector)."""
    pytest.importorskip("onnx")
    folder, catalog, by_language = planted_catalog(tmp_path_factory.mktemp("nllb"), QUERY, PLANTED)
    with TestClient(create_app(catalog, model=str(folder)), base_url="http://localhost") as client:
        yield client, by_language


@pytest.fixture(scope="module")
def english(tmp_path_factory):
    """A client of a server of an English-only model (the FakeEncoder) over a few images."""
    from fakes import FakeEncoder

    base = tmp_path_factory.mktemp("english")
    add_to_catalog(base / "catalog.db", make_images(base / "photos", per_colour=1), FakeEncoder())
    with TestClient(create_app(base / "catalog.db", encoder=FakeEncoder()), base_url="http://localhost") as c:
        yield c


def first_id(response) -> int:
    assert response.status_code == 200, response.text
    return response.json()["results"][0]["id"]


def error(response, status: int) -> str:
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"}
    return response.json()["error"]


def knn(client, **fields):
    return client.post("/knn-service", json={"num_images": 3, "indice_name": "pixgrep", **fields})


@pytest.mark.parametrize(
    ("lang", "code"),
    [("de", "deu_Latn"), ("de-AT", "deu_Latn"), ("zh_CN.UTF-8", "zho_Hans"), ("eng_Latn", "eng_Latn")],
)
def test_each_search_is_encoded_in_its_lang(nllb, lang, code):
    client, by_language = nllb
    expected = by_language[code]
    assert first_id(client.get("/api/search", params={"q": QUERY, "lang": lang})) == expected
    assert first_id(client.post("/api/search", json={"q": QUERY, "lang": lang})) == expected
    terms = [{"kind": "text", "value": QUERY, "weight": 1}]
    assert first_id(client.post("/api/search", json={"terms": terms, "lang": lang})) == expected
    rows = knn(client, text=QUERY, use_mclip=True, lang=lang).json()
    assert rows[0]["id"] == expected and rows[0]["similarity"] > 0.999
    # the shared encoder is untouched: a search without lang is in the server's default, English
    assert first_id(client.get("/api/search", params={"q": QUERY})) == by_language["eng_Latn"]


def test_the_servers_default_language_is_that_of_serve_lang(nllb):
    client, by_language = nllb
    try:
        languages.set_default_language("zh")  # what `pixgrep serve --lang zh` does
        assert first_id(client.get("/api/search", params={"q": QUERY})) == by_language["zho_Hans"]
        assert client.get("/api/models").json()["served"]["query_language"]["default"] == "zho_Hans"
        # an empty lang (a form left blank) is no language: the default
        assert first_id(client.get("/api/search", params={"q": QUERY, "lang": ""})) == by_language["zho_Hans"]
    finally:
        languages.set_default_language(None)


def test_the_models_endpoint_says_which_languages_the_served_model_reads(nllb, english):
    client, _ = nllb
    served = client.get("/api/models").json()["served"]
    assert served["multilingual"] is True and served["languages"] == "multilingual"
    assert served["query_language"] == {
        "default": "eng_Latn",
        "choices": [
            {"code": "arb_Arab", "tags": ["ar"]},
            {"code": "deu_Latn", "tags": ["de"]},
            {"code": "eng_Latn", "tags": ["en"]},
            {"code": "zho_Hans", "tags": ["zh"]},
        ],
    }
    assert client.get(f"/api/models/{served['model_id']}").json() == served
    plain = english.get("/api/models").json()["served"]
    assert plain["multilingual"] is False and plain["languages"] == "en" and plain["query_language"] is None


def test_bad_languages_are_one_400_never_a_500(nllb, english):
    client, _ = nllb
    for answer in (
        client.get("/api/search", params={"q": QUERY, "lang": "klingon"}),
        client.post("/api/search", json={"q": QUERY, "lang": "klingon"}),
        knn(client, text=QUERY, lang="klingon"),
        english.get("/api/search", params={"q": "a dog", "lang": "klingon"}),
    ):
        assert error(answer, 400).startswith("unknown language 'klingon': give an ISO 639-1 code")
    # a language the table knows but this tokenizer has no token for
    message = error(client.get("/api/search", params={"q": QUERY, "lang": "fr"}), 400)
    assert message.endswith("has no token for the language fra_Latn")
    assert "no token" in error(knn(client, text=QUERY, lang="fr"), 400)
    assert error(client.post("/api/search", json={"q": QUERY, "lang": 7}), 422)  # not text at all


def test_an_english_only_model_reads_lang_as_nothing(english):
    plain = english.get("/api/search", params={"q": "a dog"}).json()["results"]
    german = english.get("/api/search", params={"q": "a dog", "lang": "de"}).json()["results"]
    assert [r["id"] for r in german] == [r["id"] for r in plain] and german


def test_use_mclip_needs_a_multilingual_model_for_a_text_query(english):
    message = error(knn(english, text="ein Hund", use_mclip=True), 400)
    assert message.startswith("use_mclip: the catalog's model fake is not multilingual (languages: en)")
    # clip-retrieval's front end sends use_mclip false by default: always answered
    assert len(knn(english, text="a dog", use_mclip=False).json()) == 3
    # use_mclip concerns the text encoder only: image and vector queries are answered
    vector = np.random.default_rng(1).standard_normal(192).tolist()
    assert len(knn(english, embedding_input=vector, use_mclip=True).json()) == 3
    picture = base64.b64encode(make_png()).decode()
    assert knn(english, image=picture, use_mclip=True).status_code == 200


def make_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (30, 120, 200)).save(buffer, "PNG")
    return buffer.getvalue()


# Queries no server may crash on: other scripts, right to left, emoji sequences, bidi controls,
# combining marks, NUL and other control characters, lone surrogates, very long texts.
ODD_QUERIES = [
    "一只狗在草地上奔跑",
    "الكلب يركض على العشب الأخضر",
    "כלב רץ על הדשא",
    "mixed العربية and English and 中文",
    "\u202eevil\u202c reversed \u200f rtl mark \u200e",
    "👨‍👩‍👧‍👦🏳️‍🌈🇩🇪 🐕",
    "🙂" * 300,
    "e\u0301\u0301\u0301 zalgo ḁ̵̛̬",
    "a\x00b\x01c\x7f",
    "\ud800 lone surrogate \udfff",
    "ﷺ ﷽",
    "ا" * 5000,
    "   ",
]


def post(client, path: str, body: dict):
    """A JSON post as a client may send it: escaped as ASCII, so lone surrogates (\\ud800) travel."""
    return client.post(path, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})


def _assert_answered(response, text: str) -> None:
    assert response.status_code in (200, 400), (text, response.status_code, response.text)
    if response.status_code == 400:  # only a query with nothing in it
        assert not text.strip(), (text, response.text)


@pytest.mark.parametrize("text", ODD_QUERIES, ids=range(len(ODD_QUERIES)))
def test_odd_queries_never_crash_a_multilingual_server(nllb, text):
    client, _ = nllb
    for lang in (None, "ar", "zh"):
        extra = {"lang": lang} if lang else {}
        _assert_answered(post(client, "/api/search", {"q": text, **extra}), text)
        terms = [{"kind": "text", "value": text, "weight": 1}]
        _assert_answered(post(client, "/api/search", {"terms": terms, **extra}), text)
        knn_body = {"text": text, "use_mclip": True, "num_images": 3, **extra}
        _assert_answered(post(client, "/knn-service", knn_body), text)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tiny_model_dir):
    """A client of a server of the tiny test model over a few images it indexed."""
    from pixgrep.api import open_catalog

    base = tmp_path_factory.mktemp("tiny")
    make_images(base / "photos", per_colour=1)
    with open_catalog(base / "catalog.db", str(tiny_model_dir)) as catalog:
        catalog.index([base / "photos"])
    app = create_app(base / "catalog.db", model=str(tiny_model_dir))
    with TestClient(app, base_url="http://localhost") as client:
        yield client


@pytest.mark.parametrize("text", ODD_QUERIES, ids=range(len(ODD_QUERIES)))
def test_odd_queries_never_crash_an_english_server(tiny, text):
    for options in ({}, {"all_parts": True}, {"ignore_tone": True}, {"lang": "ar"}):
        _assert_answered(post(tiny, "/api/search", {"q": text, **options}), text)
    _assert_answered(post(tiny, "/knn-service", {"text": text}), text)
    assert post(tiny, "/api/search", {"q": text}).json().get("results") or not text.strip()


@pytest.fixture(scope="module")
def mini(tmp_path_factory, mini_cache):  # noqa: F811
    """A client of a server of pixgrep-mini (its text tokenizer is a Hugging Face tokenizer.json,
    read by `tokenizers`, unlike the tiny model's CLIP BPE) over a few images it indexed."""
    from mini_support import pixgrep_cache

    from pixgrep.api import open_catalog

    base = tmp_path_factory.mktemp("mini")
    make_images(base / "photos", per_colour=1)
    with pixgrep_cache(mini_cache):
        with open_catalog(base / "catalog.db", "pixgrep-mini") as catalog:
            catalog.index([base / "photos"])
        app = create_app(base / "catalog.db", model="pixgrep-mini")
        with TestClient(app, base_url="http://localhost") as client:
            yield client


def test_lone_surrogates_reach_no_route_as_a_500(mini):
    """Text with lone surrogates is searched (each read as U+FFFD) on every text route; a metadata
    filter or a folder scope holding one is a 400: no photo's metadata (UTF-8) or path holds it."""
    texts = [
        ("/api/search", {"q": "\ud800"}),
        ("/api/search", {"q": "dog \udc80", "all_parts": True, "words": "only"}),
        ("/api/search", {"terms": [{"kind": "text", "value": "dog \udc80"}]}),
        ("/api/search", {"q": "dog", "tone": "x\udfff"}),
        ("/api/search", {"q": "dog \ud800", "ignore_tone": True}),
        ("/knn-service", {"text": "\ud800", "num_images": 3}),
    ]
    for path, body in texts:
        response = post(mini, path, body)
        assert response.status_code == 200, (body, response.text)
        assert response.json(), body
    for name in ("place", "camera", "tag"):
        for body in ({name: "\ud800"}, {"q": "dog", name: "x\udce9"}):
            assert "holds a lone surrogate" in error(post(mini, "/api/search", body), 400)
    scoped = post(mini, "/api/search", {"q": "dog", "roots": ["/\ud800"]})
    assert "holds a lone surrogate" in error(scoped, 400)
    # A file name that is not UTF-8 (surrogateescape, as /api/folders spells it) is still a scope.
    assert post(mini, "/api/search", {"q": "dog", "roots": ["/caf\udce9"]}).json()["results"] == []


def test_odd_bytes_in_a_query_string_are_answered(nllb, tiny):
    for client in (nllb[0], tiny):
        for raw in ("%FF%FE", "%ED%A0%80", "%E4%B8", "%00", "%F0%9F%90%95%E2%80%8D"):
            response = client.get(f"/api/search?q={raw}dog")
            assert response.status_code == 200, (raw, response.text)


@pytest.mark.torch
def test_a_real_nllb_clip_tower_over_http(tmp_path, no_language_settings):
    """The reduced NLLB-CLIP of tests/tiny_hf_towers.py (a real M2M100 text tower, exported):
    each language's scores over HTTP are the in-process ones for that language, and differ
    between languages; odd queries are answered."""
    for name in ("torch", "open_clip", "timm", "transformers"):
        pytest.importorskip(name)
    import tiny_hf_towers
    from hf_tokenizers import MULTILINGUAL

    from pixgrep.api import open_catalog

    built = tiny_hf_towers.build(tmp_path, tiny_hf_towers.nllb, MULTILINGUAL * 5 + [QUERY] * 5)
    make_images(tmp_path / "photos", per_colour=1)
    catalog = tmp_path / "catalog.db"
    with open_catalog(catalog, str(built.folder)) as local:
        local.index([tmp_path / "photos"])
        expected = {lang: local.search(QUERY, k=10, lang=lang) for lang in ("de", "zh", "ar")}
    with TestClient(create_app(catalog, model=str(built.folder)), base_url="http://localhost") as client:
        for lang, results in expected.items():
            got = client.get("/api/search", params={"q": QUERY, "lang": lang, "k": 10}).json()["results"]
            assert [r["id"] for r in got] == [r.image_id for r in results]
            np.testing.assert_allclose([r["score"] for r in got], [r.score for r in results], atol=1e-5)
        assert [r.score for r in expected["de"]] != [r.score for r in expected["zh"]]
        for text in ODD_QUERIES:
            _assert_answered(post(client, "/api/search", {"q": text, "lang": "ar"}), text)
