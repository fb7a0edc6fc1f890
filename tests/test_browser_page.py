"""The web page's first-hour behaviour in real headless Chromium: failed queries, paging in the large
view, a picture plus text, index progress, quotation marks, a phone's screen, Tab order, the min
score per step, and a token-protected server opened without its token. Every wait is for a
condition on the page, never a fixed sleep."""

from __future__ import annotations

import json

import pytest
from browserfixtures import MARKS, PHONE, PLAYWRIGHT, PLAYWRIGHT_MISSING, new_page, serve, shot
from test_browser import ANSWERED, search, tile_ids, world  # noqa: F401  (module fixture)

pytestmark = MARKS
pytest.importorskip(PLAYWRIGHT, reason=PLAYWRIGHT_MISSING)


@pytest.fixture(scope="module")
def server(world):  # noqa: F811
    with serve(world["catalog"]) as live:
        yield live


def trail_length(page) -> int:
    return page.locator("#trail-steps li").count()


def test_a_failed_query_is_no_step_and_leaves_no_old_grid(page, server):
    page.goto(server.url + "/")
    search(page, server, "a bicycle")
    history = page.evaluate("history.length")
    page.fill("#q", "cat + + dog")
    page.press("#q", "Enter")
    page.wait_for_function("document.querySelector('#status').classList.contains('error')")
    assert "two operators" in page.inner_text("#status")
    assert page.locator("#grid li").count() == 0  # the old results are not left under the error
    assert trail_length(page) == 1 and page.evaluate("history.length") == history
    assert page.input_value("#q") == "cat + + dog"  # kept, to be corrected
    # the step the trail still marks as current comes back with a click
    page.locator("#trail-steps button[aria-current=step]").click()
    page.wait_for_function("document.querySelectorAll('#grid li').length === 40")


def test_sentences_with_quotation_marks_are_searched_as_text(page, server):
    page.goto(server.url + "/")
    search(page, server, 'a sign saying "open" on a door')
    assert not page.evaluate("document.querySelector('#status').classList.contains('error')")


def test_previous_and_next_in_the_large_view(page, server):
    page.goto(server.url + "/")
    search(page, server, "a red kite")
    names = page.eval_on_selector_all("#grid .tile img", "imgs => imgs.map(i => i.alt)")
    page.locator("#grid .tile").first.click()
    assert page.inner_text("#viewer-name") == names[0]
    assert page.is_disabled("#viewer-prev") and page.is_enabled("#viewer-next")
    page.keyboard.press("ArrowRight")  # the change box is focused but empty: arrows page
    page.wait_for_function("n => document.querySelector('#viewer-name').textContent === n", arg=names[1])
    page.click("#viewer-next")
    page.wait_for_function("n => document.querySelector('#viewer-name').textContent === n", arg=names[2])
    page.click("#viewer-prev")
    page.wait_for_function("n => document.querySelector('#viewer-name').textContent === n", arg=names[1])
    page.fill("#refine-text", "at night")
    page.keyboard.press("ArrowLeft")  # editing text: the caret moves, the picture stays
    assert page.inner_text("#viewer-name") == names[1]


def test_tab_stops_one_per_tile_and_kept_inside_the_large_view(page, server):
    page.goto(server.url + "/")
    search(page, server, "a boat")
    ids = tile_ids(page)
    page.locator("#grid .tile").first.focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "tile"
    assert page.evaluate("document.activeElement.parentElement.dataset.id") == str(ids[1])
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelector('#viewer').open")
    for key in ["Tab"] * 14 + ["Shift+Tab"] * 14:
        page.keyboard.press(key)
        assert page.evaluate("document.querySelector('#viewer').contains(document.activeElement)"), key


def test_an_uploaded_picture_takes_a_change_typed_in_the_search_box(page, server, world):  # noqa: F811
    page.goto(server.url + "/")
    target = world["files"][7]
    page.set_input_files("#file", str(target))
    page.wait_for_function("document.querySelectorAll('#grid li').length > 0")
    assert page.locator("#attached").is_visible()
    assert float(page.locator("#grid .tile .score").first.inner_text()) > 0.99  # the picture alone
    page.fill("#q", "in red")
    page.press("#q", "Enter")
    page.wait_for_function("document.querySelectorAll('#trail-steps li').length === 2")
    assert "in red" in page.inner_text("#trail-steps button[aria-current=step]")
    assert target.name in page.inner_text("#trail-steps button[aria-current=step]")
    # the server got the text too: the picture itself no longer matches its own query exactly
    assert float(page.locator("#grid .tile .score").first.inner_text()) < 0.9
    assert "Picture and change" in page.inner_text("#fusion")
    # the ✕ takes the picture off: the next search is text alone
    page.click("#attached-remove")
    assert page.locator("#attached").is_hidden()
    with page.expect_request(lambda r: "/api/search?" in r.url) as plain:
        page.fill("#q", "a boat")
        page.press("#q", "Enter")
    assert "q=a+boat" in plain.value.url


def test_an_index_run_in_progress_is_shown(page, server):
    runs = {"state": "running"}

    def index_status(route):
        summary = {"found": 120, "encoded": 30, "reused": 5}
        body = {"state": runs["state"], "run": 1, "folder": "/photos/2024", "summary": summary}
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    def stats(route):
        searchable = 85 if runs["state"] == "done" else 50
        route.fulfill(
            status=200, content_type="application/json", body=json.dumps({"searchable": searchable})
        )

    page.route("**/api/index", index_status)
    page.route("**/api/stats", stats)
    page.goto(server.url + "/")
    page.wait_for_function("!document.querySelector('#indexing').hidden")
    assert page.inner_text("#indexing") == "Indexing /photos/2024: 35 of 120 pictures so far…"
    page.wait_for_function("document.querySelector('#q').placeholder.includes('50 images')")
    runs["state"] = "done"
    page.wait_for_function("document.querySelector('#indexing').hidden")
    # the count follows the run without a reload
    page.wait_for_function("document.querySelector('#q').placeholder.includes('85 images')")


def test_min_score_belongs_to_its_step(page, server):
    page.goto(server.url + "/")
    search(page, server, "a boat")
    cut = round(float(page.locator("#grid .score").nth(5).inner_text()), 2)
    page.evaluate(
        """v => { const s = document.querySelector('#threshold'); s.value = v;
                  s.dispatchEvent(new Event('input')); s.dispatchEvent(new Event('change')); }""",
        str(cut),
    )
    page.wait_for_function("document.querySelectorAll('#grid li').length < 40")
    page.locator("#grid .tile").first.click()
    page.fill("#refine-text", "at night")
    with page.expect_request(lambda r: r.url.endswith("/api/search") and r.method == "POST") as sent:
        page.press("#refine-text", "Enter")
    assert json.loads(sent.value.post_data)["threshold"] is None  # a refine step starts without it
    page.wait_for_function("document.querySelectorAll('#trail-steps li').length === 2")
    assert page.inner_text("#threshold-value") == "off"
    page.go_back()
    shown = "v => document.querySelector('#threshold-value').textContent === v"
    page.wait_for_function(shown, arg=f"{cut:.2f}")
    page.wait_for_function(ANSWERED)
    assert page.locator("#grid li").count() < 40  # and it applies to that step again


def test_phone_controls_leave_room_for_results(browser, server):
    context, page, _ = new_page(browser, **PHONE)
    try:
        page.goto(server.url + "/")
        search(page, server, "a dog on a beach")
        shot(page, "08-phone-controls")
        top = page.eval_on_selector("#grid li", "li => li.getBoundingClientRect().top")
        assert top < 200, top  # was 430 of 844 px
        assert page.locator("#threshold").is_hidden()
        page.click("#options-toggle")
        assert page.locator("#threshold").is_visible()
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        context.close()


def test_a_browser_without_the_token_gets_a_page_that_explains(browser, world):  # noqa: F811
    with serve(world["catalog"], token="tok-456") as live:
        context = browser.new_context()
        page = context.new_page()
        try:
            response = page.goto(live.url + "/")
            assert response.status == 401
            assert "text/html" in response.headers["content-type"]
            assert "needs its access token" in page.inner_text("h1")
            assert "?token=" in page.inner_text("main")
            api = page.request.get(live.url + "/api/stats")  # scripts still get JSON
            assert api.status == 401 and "token" in api.json()["error"]
        finally:
            context.close()
