"""The page's language picker in real headless Chromium: shown only for a model whose text tower is
told the query's language (the NLLB-style model of tests/tiny_nllb.py), set to the browser's
language when the model knows it, else to the server's default; every query carries the choice.
Queries in other scripts, right to left and emoji are answered without a page error."""

from __future__ import annotations

import pytest
from browserfixtures import MARKS, PLAYWRIGHT, PLAYWRIGHT_MISSING, new_page, serve
from serverkit import LiveServer
from test_browser import ANSWERED, tile_ids, world  # noqa: F401  (module fixture)
from tiny_nllb import planted_catalog

from pixgrep.models import languages

pytestmark = MARKS
pytest.importorskip(PLAYWRIGHT, reason=PLAYWRIGHT_MISSING)

QUERY = "ein Hund auf der Wiese"
PLANTED = ("eng_Latn", "deu_Latn", "zho_Hans")


@pytest.fixture(scope="module")
def nllb_server(tmp_path_factory):
    """(live server of the NLLB-style model, image id by language), its default English."""
    pytest.importorskip("onnx")
    from pixgrep.server.app import create_app

    with pytest.MonkeyPatch.context() as patch:
        for name in ("LC_ALL", "LC_MESSAGES", "LANG", "PIXGREP_LANG"):
            patch.delenv(name, raising=False)
        patch.setattr(languages, "_default", None)
        folder, catalog, by_language = planted_catalog(tmp_path_factory.mktemp("nllb"), QUERY, PLANTED)
        with LiveServer(create_app(catalog, model=str(folder))) as live:
            yield live, by_language


@pytest.fixture
def open_page(browser):
    """open_page(locale) -> (page, errors, the URLs of its search requests), closed after the test."""
    contexts = []

    def opener(locale: str):
        context, page, errors = new_page(browser, locale=locale)
        contexts.append(context)
        searches: list[str] = []

        def record(request) -> None:
            if "/api/search" in request.url:
                searches.append(request.url)

        page.on("request", record)
        return page, errors, searches

    yield opener
    for context in contexts:
        context.close()


def run_query(page, text: str, count: int) -> None:
    page.fill("#q", text)
    page.press("#q", "Enter")
    page.wait_for_function(ANSWERED)
    page.wait_for_function("n => document.querySelectorAll('#grid li').length === n", arg=count)


def test_the_picker_takes_the_browsers_language_and_every_query_carries_it(open_page, nllb_server):
    server, by_language = nllb_server
    page, errors, searches = open_page("de-DE")
    page.goto(server.url + "/")
    page.locator("#lang-option").wait_for(state="visible")
    assert page.input_value("#lang") == "deu_Latn"
    names = page.eval_on_selector_all("#lang option", "options => options.map(o => o.textContent)")
    assert "Deutsch" in names and len(names) == 4  # the model's languages, named in the browser's
    run_query(page, QUERY, len(PLANTED))
    assert tile_ids(page)[0] == by_language["deu_Latn"]
    assert "lang=deu_Latn" in searches[-1]
    chinese = page.locator("#lang option[value=zho_Hans]").inner_text()
    page.select_option("#lang", label=chinese)  # a new choice runs the query again
    page.wait_for_function(
        "id => document.querySelector('#grid li') && document.querySelector('#grid li').dataset.id === id",
        arg=str(by_language["zho_Hans"]),
    )
    assert "lang=zho_Hans" in searches[-1]
    assert errors == []


def test_a_browser_language_the_model_lacks_falls_back_to_the_servers(open_page, nllb_server):
    server, by_language = nllb_server
    page, errors, _ = open_page("fr-FR")  # the tiny tokenizer has no fra_Latn token
    page.goto(server.url + "/")
    page.locator("#lang-option").wait_for(state="visible")
    assert page.input_value("#lang") == "eng_Latn"
    run_query(page, QUERY, len(PLANTED))
    assert tile_ids(page)[0] == by_language["eng_Latn"]
    assert errors == []


@pytest.mark.parametrize(
    "text",
    ["一只狗在草地上奔跑", "الكلب يركض على العشب", "כלב רץ", "👨‍👩‍👧 🐕🏖️", "\u202eevil\u202c"],
)
def test_queries_in_any_script_are_answered_on_the_page(open_page, nllb_server, text):
    server, _ = nllb_server
    page, errors, _ = open_page("ar")
    page.goto(server.url + "/")
    page.locator("#lang-option").wait_for(state="visible")
    assert page.input_value("#lang") == "arb_Arab"
    run_query(page, text, len(PLANTED))
    assert not page.evaluate("document.querySelector('#status').classList.contains('error')")
    assert errors == []


@pytest.fixture(scope="module")
def english_server(world):  # noqa: F811
    with serve(world["catalog"]) as live:
        yield live


def test_no_picker_and_no_lang_for_a_model_that_needs_none(open_page, english_server):
    page, errors, searches = open_page("de-DE")
    page.goto(english_server.url + "/")
    page.wait_for_function("document.querySelector('#q').placeholder.includes('images')")
    run_query(page, "ein Hund 🐕", 40)
    assert page.locator("#lang-option").is_hidden()
    assert searches and not any("lang=" in url for url in searches)
    assert errors == []
