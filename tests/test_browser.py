"""The web page in real headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

A live uvicorn serves a catalog of 50 generated pictures (FakeEncoder vectors: a picture's vector
comes from its pixels, so uploading a catalog file finds that file first). Screenshots go to
test-output/browser/.
"""

from __future__ import annotations

import base64
import json
import os

import pytest
from browserfixtures import MARKS, PHONE, PLAYWRIGHT, PLAYWRIGHT_MISSING, new_page, serve, shot
from serverkit import COLOURS, add_to_catalog, make_images

PER_COLOUR = 5
TOTAL = PER_COLOUR * len(COLOURS)

pytestmark = MARKS
pytest.importorskip(PLAYWRIGHT, reason=PLAYWRIGHT_MISSING)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from fakes import FakeEncoder

    base = tmp_path_factory.mktemp("browser")
    files = make_images(base / "photos", per_colour=PER_COLOUR)
    dated, undated = files[: TOTAL // 2], files[TOTAL // 2 :]
    ids = add_to_catalog(base / "c.db", dated, FakeEncoder(), taken_at="2021-06-05T14:30:00")
    ids.update(add_to_catalog(base / "c.db", undated, FakeEncoder()))
    return {"base": base, "files": files, "ids": ids, "catalog": base / "c.db"}


@pytest.fixture(scope="module")
def server(world):
    with serve(world["catalog"]) as live:
        yield live


def tile_ids(page) -> list[int]:
    return [int(x) for x in page.eval_on_selector_all("#grid li", "items => items.map(i => i.dataset.id)")]


def wait_for_images(page, count: int = 8) -> None:
    """The first `count` result thumbnails have really loaded (decoded, non-zero size)."""
    page.wait_for_function(
        """n => { const imgs = [...document.querySelectorAll('#grid img')].slice(0, n);
                  return imgs.length === n && imgs.every(i => i.complete && i.naturalWidth > 0); }""",
        arg=count,
    )


# The search a key press started has answered: the old grid stays on the page until then.
ANSWERED = "!document.querySelector('#status').textContent.startsWith('Searching')"


def search(page, server, text: str, expect: int = 40) -> None:
    page.fill("#q", text)
    page.press("#q", "Enter")
    page.wait_for_function(ANSWERED)
    page.wait_for_function("n => document.querySelectorAll('#grid li').length === n", arg=expect)


def test_typing_a_query_shows_result_images(page, server, world):
    page.goto(server.url + "/")
    page.wait_for_function("document.querySelector('#q').placeholder.includes('50 images')")
    search(page, server, "a red car")
    wait_for_images(page, 12)
    first = page.locator("#grid li .tile").first
    assert float(first.locator(".score").inner_text()) > -1
    title = first.get_attribute("title")
    assert title.splitlines()[0].endswith((".jpg", ".png"))
    assert "captured 2021-06-05 14:30:00" in title or "no capture date" in title
    assert "result" in page.inner_text("#status")
    assert page.locator("#trail-steps li").count() == 1
    # More than a page: the rest arrives when scrolling to the end (or with "Load more").
    page.mouse.wheel(0, 20000)
    page.wait_for_function(f"document.querySelectorAll('#grid li').length === {TOTAL}")
    assert len(set(tile_ids(page))) == TOTAL
    assert page.locator("#more").is_hidden()
    page.mouse.wheel(0, -40000)
    first.hover()
    shot(page, "01-text-query")


def test_uploading_an_image_finds_it_first(page, server, world):
    page.goto(server.url + "/")
    target = world["files"][12]
    page.set_input_files("#file", str(target))
    page.wait_for_function("document.querySelectorAll('#grid li').length > 0")
    wait_for_images(page, 4)
    assert tile_ids(page)[0] == world["ids"][str(target)]
    assert float(page.locator("#grid .tile .score").first.inner_text()) > 0.99
    assert target.name in page.inner_text("#trail-steps")
    page.wait_for_function("document.querySelector('#trail-steps img')?.naturalWidth > 0")  # its preview
    shot(page, "02-upload")


def test_dropping_and_pasting_an_image(page, server, world):
    page.goto(server.url + "/")
    for how, target in (("drop", world["files"][20]), ("paste", world["files"][33])):
        data = base64.b64encode(target.read_bytes()).decode()
        kind = "image/png" if target.suffix == ".png" else "image/jpeg"
        page.evaluate(
            """([how, data, name, kind]) => {
                const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
                const dt = new DataTransfer();
                dt.items.add(new File([bytes], name, { type: kind }));
                if (how === "drop") {
                  window.dispatchEvent(new DragEvent("dragenter", { dataTransfer: dt }));
                  window.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, cancelable: true }));
                } else {
                  const paste = new ClipboardEvent("paste", { clipboardData: dt, cancelable: true });
                  document.dispatchEvent(paste);
                }
            }""",
            [how, data, target.name, kind],
        )
        page.wait_for_function(
            f"document.querySelector('#grid li')?.dataset.id === '{world['ids'][str(target)]}'"
        )
        assert page.locator("#drop-overlay").is_hidden()
    assert page.locator("#trail-steps li").count() == 2


def test_click_a_result_refine_it_with_text_and_step_back(page, server, world):
    page.goto(server.url + "/")
    search(page, server, "a bicycle")
    wait_for_images(page, 6)
    first_step = tile_ids(page)
    chosen, rejected = first_step[0], first_step[2]

    page.locator("#grid li").nth(2).hover()
    page.locator("#grid li").nth(2).locator(".reject").click()  # "not this"
    assert page.locator("#grid li").nth(2).get_attribute("class") == "rejected"

    page.locator("#grid .tile").first.click()
    dialog = page.locator("#viewer")
    assert dialog.is_visible()
    assert "What do you want to change?" in page.inner_text("#refine-form label")
    page.wait_for_function("document.querySelector('#viewer-img').naturalWidth > 0")
    assert "not this" in page.inner_text("#refine-hint")
    page.fill("#refine-text", "in red")
    shot(page, "03-viewer-refine")
    with page.expect_request(lambda r: r.url.endswith("/api/search") and r.method == "POST") as sent:
        page.press("#refine-text", "Enter")
    terms = json.loads(sent.value.post_data)["terms"]
    assert terms[0] == {"kind": "image_id", "value": chosen, "weight": 1}
    assert terms[1] == {"kind": "text", "value": "in red", "weight": 1}
    assert terms[2]["kind"] == "image_id" and terms[2]["value"] == rejected and terms[2]["weight"] < 0
    assert dialog.is_hidden()
    page.wait_for_function("document.querySelectorAll('#trail-steps li').length === 2")
    page.wait_for_function(ANSWERED)
    page.wait_for_function("document.querySelectorAll('#grid li').length > 0")
    refined = tile_ids(page)
    assert chosen not in refined and rejected not in refined
    assert "in red" in page.inner_text("#trail-steps li:nth-child(2)")
    wait_for_images(page, 6)
    shot(page, "04-refined")

    # Step back through the trail: the first step's results come back, in the same order.
    page.locator("#trail-steps li").first.locator("button").click()
    page.wait_for_function(f"document.querySelector('#grid li')?.dataset.id === '{first_step[0]}'")
    page.wait_for_function("document.querySelectorAll('#grid li').length === 40")
    assert tile_ids(page) == first_step
    assert page.locator("#trail-steps li").nth(1).get_attribute("class") == "later"
    assert page.locator("#trail-steps button[aria-current=step]").inner_text() == "“a bicycle”"
    # ...and forward again with the keyboard, then back with "[".
    page.locator("body").press("]")
    page.wait_for_function(f"document.querySelector('#grid li')?.dataset.id === '{refined[0]}'")
    page.locator("body").press("[")
    page.wait_for_function(f"document.querySelector('#grid li')?.dataset.id === '{first_step[0]}'")
    # The browser's own back and forward buttons walk the same trail.
    page.go_forward()
    page.wait_for_function(f"document.querySelector('#grid li')?.dataset.id === '{refined[0]}'")
    assert "in red" in page.locator("#trail-steps button[aria-current=step]").inner_text()
    page.go_back()
    page.wait_for_function(f"document.querySelector('#grid li')?.dataset.id === '{first_step[0]}'")
    assert page.url.endswith("?q=a+bicycle") or page.url.endswith("?q=a%20bicycle")

    # A new step after going back replaces the later ones: "more like this" from step 1.
    page.locator("#grid .tile").nth(1).click()
    page.click("#more-like")
    # the trail changes when the answer has come (a failed step would leave it as it was)
    page.wait_for_function(
        "document.querySelector('#trail-steps li:nth-child(2)')?.innerText.startsWith('like ')"
    )
    assert page.locator("#trail-steps li").count() == 2
    page.wait_for_function(f"!document.querySelector('#grid li[data-id=\"{first_step[1]}\"]')")
    shot(page, "05-trail")
    page.go_back()  # back to step 1, then before it: the empty start page
    page.wait_for_function(f"document.querySelector('#grid li')?.dataset.id === '{first_step[0]}'")
    page.go_back()
    page.wait_for_function("document.querySelectorAll('#grid li').length === 0")
    assert page.locator("#help").is_visible()
    page.go_forward()
    page.wait_for_function(f"document.querySelector('#grid li')?.dataset.id === '{first_step[0]}'")


def test_keyboard_only_use(page, server):
    page.goto(server.url + "/")
    page.wait_for_function("document.activeElement.id === 'q'")  # the page starts in the search box
    page.keyboard.press("Escape")
    assert page.evaluate("document.activeElement.id") != "q"
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "q"
    page.keyboard.type("green field")
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelectorAll('#grid li').length === 40")
    page.keyboard.press("Escape")  # leave the search box
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.className") == "tile"
    page.keyboard.press("ArrowRight")
    focused = page.evaluate("document.activeElement.parentElement.dataset.id")
    assert focused == str(tile_ids(page)[1])
    page.keyboard.press("x")  # mark it "not this" from the keyboard
    assert page.locator(f"#grid li[data-id='{focused}']").get_attribute("class") == "rejected"
    page.keyboard.press("Enter")
    assert page.locator("#viewer").is_visible()
    assert page.evaluate("document.activeElement.id") == "refine-text"
    page.keyboard.press("Escape")
    assert page.locator("#viewer").is_hidden()
    assert page.evaluate("document.activeElement.parentElement.dataset.id") == focused


def test_threshold_slider_and_folder_scope(page, server, world):
    page.goto(server.url + "/")
    search(page, server, "a boat")
    scores = [float(s) for s in page.locator("#grid .score").all_inner_texts()]
    cut = round(scores[5], 2)
    page.evaluate(
        """v => { const s = document.querySelector('#threshold'); s.value = v;
                  s.dispatchEvent(new Event('input')); s.dispatchEvent(new Event('change')); }""",
        str(cut),
    )
    assert page.inner_text("#threshold-value") == f"{cut:.2f}"
    page.wait_for_function("(n => n < 40 && n >= 5)(document.querySelectorAll('#grid li').length)")
    kept = [float(s) for s in page.locator("#grid .score").all_inner_texts()]
    assert all(s >= cut - 0.0005 for s in kept)

    page.evaluate(
        "() => { const s = document.querySelector('#threshold'); s.value = 0;"
        " s.dispatchEvent(new Event('change')); }"
    )
    folder = str(world["base"] / "photos" / "blue")
    assert page.eval_on_selector_all("#folders option", "o => o.map(x => x.value)").count(folder) == 1
    page.fill("#folder", folder)
    page.press("#folder", "Enter")
    page.wait_for_function(f"document.querySelectorAll('#grid li').length === {PER_COLOUR}")
    blue = {world["ids"][str(f)] for f in world["files"] if f.parent.name == "blue"}
    assert set(tile_ids(page)) == blue


def test_phone_sized_screen(browser, server):
    context, page, _ = new_page(browser, **PHONE)
    try:
        page.goto(server.url + "/")
        search(page, server, "a dog on a beach")
        wait_for_images(page, 6)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        tops = page.eval_on_selector_all(
            "#grid li", "items => items.slice(0, 6).map(i => i.getBoundingClientRect().top)"
        )
        assert tops.count(tops[0]) >= 3  # several thumbnails per row, not one huge column
        shot(page, "06-phone")
        page.locator("#grid .tile").first.tap()
        assert page.locator("#viewer").is_visible()
        box = page.locator("#refine-text").bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390
        shot(page, "07-phone-viewer")
    finally:
        context.close()


def test_error_messages_show_on_the_page(page, server):
    page.goto(server.url + "/")
    page.fill("#q", "cat + + dog")
    page.press("#q", "Enter")
    page.wait_for_function("document.querySelector('#status').classList.contains('error')")
    assert "two operators" in page.inner_text("#status")


def test_page_with_a_token(browser, world):
    with serve(world["catalog"], token="tok-123") as live:
        context = browser.new_context(bypass_csp=True)  # search() waits with evaluated predicates
        page = context.new_page()
        try:
            response = page.goto(live.url + "/")
            assert response.status == 401
            response = page.goto(live.url + "/?token=tok-123")
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
            assert "token" not in page.url  # taken out of the address bar, kept for the session
            search(page, live, "a kite")
            wait_for_images(page, 6)
            # The token is in the HttpOnly cookie only: in no image address, not readable by scripts.
            page.locator("#grid .tile").first.click()
            addresses = page.eval_on_selector_all("img[src]", "imgs => imgs.map(i => i.src)")
            addresses.append(page.get_attribute("#open-full", "href"))
            assert len(addresses) > 6 and not [a for a in addresses if "tok-123" in a or "token=" in a]
            cookie = next(c for c in context.cookies() if c["name"] == "pixgrep_token")
            assert cookie["httpOnly"] and "tok-123" not in page.evaluate("document.cookie")
            page.keyboard.press("Escape")
            page.reload()  # the address is now ?q=a+kite: the cookie still carries the token
            page.wait_for_function("document.querySelectorAll('#grid li').length === 40")
        finally:
            context.close()


def test_the_page_works_under_its_csp(browser, server, world):
    """With the Content-Security-Policy on (no bypass; waits by locators only, which evaluate
    nothing in the page): a search, its thumbnails, the large view and an upload's blob: preview
    load, and the policy blocks nothing."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15000)
    blocked: list[str] = []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda exc: blocked.append(str(exc)))
    try:
        response = page.goto(server.url + "/")
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        page.fill("#q", "a kite")
        page.press("#q", "Enter")
        page.locator("#grid li img.loaded").nth(5).wait_for()
        page.locator("#grid .tile").first.click()
        page.locator("#viewer-img").wait_for()
        page.keyboard.press("Escape")
        page.set_input_files("#file", str(world["files"][0]))
        page.locator("#trail-steps li img").first.wait_for()
        page.locator("#trail-steps li").nth(1).wait_for()
        assert page.locator("#trail-steps li img").first.get_attribute("src").startswith("blob:")
    finally:
        context.close()
    assert blocked == []


def test_real_photos_load_in_the_grid_and_the_viewer(browser, tmp_path):
    """Camera photos (JPEG with EXIF orientations, HEIC, TIFF) from ../shared/data: every thumbnail
    in the grid and the large view decode in the browser."""
    from conftest import shared_data
    from fakes import FakeEncoder

    import pixgrep

    root = shared_data("exif-samples")
    with pixgrep.open_catalog(tmp_path / "c.db", encoder=FakeEncoder()) as catalog:
        catalog.index([root])
        good = catalog.stats()["images"]
    with serve(tmp_path / "c.db") as live:
        context = browser.new_context(
            viewport={"width": 1280, "height": 900}, bypass_csp=True
        )  # waits evaluate strings
        page = context.new_page()
        try:
            page.goto(live.url + "/")
            page.fill("#q", "a photo")
            page.press("#q", "Enter")
            page.wait_for_function(f"document.querySelectorAll('#grid li').length === {min(40, good)}")
            page.evaluate("window.scrollTo(0, 0)")
            wait_for_images(page, 12)
            shot(page, "08-real-photos")
            page.locator("#grid .tile").first.click()
            page.wait_for_function("document.querySelector('#viewer-img').naturalWidth > 0")
            shot(page, "09-real-photo-viewer")
        finally:
            context.close()


@pytest.fixture(scope="module")
def combiner_server(world, tmp_path_factory):
    """The same catalog served by an encoder whose model folder holds a Combiner (random weights)."""
    from types import SimpleNamespace

    import numpy as np
    from fakes import FakeEncoder

    from pixgrep.models.combiner import FILE_NAME, save_combiner

    folder = tmp_path_factory.mktemp("model-with-combiner")
    rng = np.random.default_rng(0)
    d, p, h = FakeEncoder.dim, 16, 16
    shapes = {
        "text_proj": (p, d),
        "image_proj": (p, d),
        "hidden": (h, 2 * p),
        "out": (d, h),
        "lambda1": (8, 2 * p),
        "lambda2": (1, 8),
    }
    weights = {}
    for name, shape in shapes.items():
        w, b = (
            (f"lambda_w{name[-1]}", f"lambda_b{name[-1]}")
            if name.startswith("lambda")
            else (f"{name}_w", f"{name}_b")
        )
        weights[w] = rng.normal(size=shape).astype(np.float32)
        weights[b] = rng.normal(size=shape[0]).astype(np.float32)
    save_combiner(folder / FILE_NAME, weights, {"model_id": "fake"})
    encoder = FakeEncoder()
    encoder.folder = SimpleNamespace(path=folder)  # type: ignore[attr-defined]
    with serve(world["catalog"], encoder=encoder) as live:
        yield live


def test_a_late_start_up_answer_adds_no_step_and_keeps_the_placeholder(page, server):
    """The page's first request (/api/stats) may answer after the user has already searched, even
    refined (a loaded machine): the address then reads ?q=..., which must not become a step again,
    and a refine step's "Showing ..." placeholder stays. Held back here, so both orders are tested."""
    held: list = []
    page.route("**/api/stats", lambda route: held.append(route))
    folders_loaded = "document.querySelectorAll('#folders option').length > 0"
    page.goto(server.url + "/")
    search(page, server, "a bicycle")
    held.pop().continue_()  # stats answer after the first search: the address is ?q=a+bicycle
    page.wait_for_function(folders_loaded)
    assert page.locator("#trail-steps li").count() == 1
    page.goto(server.url + "/")
    search(page, server, "a bicycle")
    page.locator("#grid .tile").first.click()
    page.fill("#refine-text", "in red")
    page.press("#refine-text", "Enter")
    page.wait_for_function("document.querySelectorAll('#trail-steps li').length === 2")
    held.pop().continue_()  # and now after a refine step
    page.wait_for_function(folders_loaded)
    assert page.locator("#trail-steps li").count() == 2
    assert "in red" in page.get_attribute("#q", "placeholder")


def test_refine_loop_uses_the_models_combiner_and_says_so(page, combiner_server):
    import urllib.request

    server = combiner_server
    page.goto(server.url + "/")
    search(page, server, "a bicycle")
    chosen = tile_ids(page)[0]
    page.locator("#grid .tile").first.click()
    page.fill("#refine-text", "in red")
    with page.expect_response(lambda r: r.url.endswith("/api/search") and r.request.method == "POST") as got:
        page.press("#refine-text", "Enter")
    assert got.value.json()["fusion"] == "combiner"
    page.wait_for_function("document.querySelectorAll('#trail-steps li').length === 2")
    page.wait_for_function("!document.querySelector('#fusion').hidden")
    assert "Combiner" in page.inner_text("#fusion")
    refined = tile_ids(page)
    shot(page, "11-refined-with-combiner")

    def api(fusion: str) -> list[int]:
        terms = [{"kind": "image_id", "value": chosen, "weight": 1}, {"kind": "text", "value": "in red"}]
        body = json.dumps({"terms": terms, "k": 40, "fusion": fusion}).encode()
        request = urllib.request.Request(
            server.url + "/api/search", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request) as answer:
            return [r["id"] for r in json.loads(answer.read())["results"]]

    assert refined[:20] == api("combiner")[:20]  # the page's refine step is the Combiner's query
    assert api("combiner") != api("sum")  # and the Combiner changes what comes back
    # A plain text step hides the line again.
    search(page, server, "a bicycle")
    # The grid already holds 40 tiles, so wait for the text step itself to have answered.
    page.wait_for_function("document.querySelector('#fusion').hidden")


def test_docs_render_with_no_outside_request(browser, server):
    """/docs (Swagger UI) loads its script and style from this server: nothing leaves the machine."""
    from urllib.parse import urlparse

    context = browser.new_context()
    page = context.new_page()
    outside = []
    local = urlparse(server.url).netloc

    def guard(route):
        if urlparse(route.request.url).netloc == local:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    try:
        page.goto(server.url + "/docs")
        page.wait_for_selector(".swagger-ui .info .title")
        assert "pixgrep" in page.inner_text(".swagger-ui .info .title")
        page.wait_for_selector(".swagger-ui .opblock-tag")  # the operations rendered from /openapi.json
        shot(page, "10-docs")
    finally:
        context.close()
    assert outside == []


# -- all-of, ignore tone, collapsed duplicates -------------------------------------------------


@pytest.fixture(scope="module")
def copies_server(tmp_path_factory):
    """A catalog of 10 pictures plus two byte-identical copies of the red one (newer files)."""
    import shutil

    from fakes import FakeEncoder

    base = tmp_path_factory.mktemp("browser-copies")
    files = make_images(base / "photos", per_colour=1)
    red = next(f for f in files if f.parent.name == "red")
    copies = []
    for n in (1, 2):
        copy = red.with_name(f"zz-copy-{n}{red.suffix}")
        shutil.copyfile(red, copy)
        os.utime(copy, (2_000_000_000 + n, 2_000_000_000 + n))
        copies.append(copy)
    ids = add_to_catalog(base / "c.db", files + copies, FakeEncoder())
    old_cache = os.environ.get("PIXGREP_CACHE")
    os.environ["PIXGREP_CACHE"] = str(base / "cache")  # the tone subspace of the fake model goes here
    try:
        with serve(base / "c.db") as live:
            yield {"live": live, "red": red, "ids": ids, "count": len(files) + len(copies)}
    finally:
        if old_cache is None:
            os.environ.pop("PIXGREP_CACHE", None)
        else:
            os.environ["PIXGREP_CACHE"] = old_cache


def test_collapsed_duplicates_all_of_and_ignore_tone_toggles(page, copies_server):
    live, red = copies_server["live"], copies_server["red"]
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/api/search" in r.url else None)
    page.goto(live.url + "/")
    distinct = copies_server["count"] - 2
    search(page, live, "a red car, a wooden table and a lamp", expect=distinct)
    # The group shows its newest copy (all three are as large); the others open from the large view.
    newest = red.with_name(f"zz-copy-2{red.suffix}")
    red_tile = page.locator(f'#grid li[data-id="{copies_server["ids"][str(newest)]}"]')
    assert red_tile.locator(".copies").inner_text() == "+2 near-identical"
    assert "+2 near-identical" in red_tile.locator(".tile").get_attribute("title")
    red_tile.hover()  # the ✕ that hover shows leaves the badge readable
    badge, cross = red_tile.locator(".copies").bounding_box(), red_tile.locator(".reject").bounding_box()
    assert badge and cross
    apart_x = badge["x"] + badge["width"] <= cross["x"] or cross["x"] + cross["width"] <= badge["x"]
    apart_y = badge["y"] + badge["height"] <= cross["y"] or cross["y"] + cross["height"] <= badge["y"]
    assert apart_x or apart_y, (badge, cross)
    red_tile.locator(".tile").click()
    links = page.locator("#viewer-duplicates a")
    assert links.count() == 2
    ids = copies_server["ids"]
    folded = {ids[str(red)], ids[str(red.with_name(f"zz-copy-1{red.suffix}"))]}
    assert {links.nth(i).get_attribute("href") for i in range(2)} == {f"/api/images/{i}/file" for i in folded}
    page.keyboard.press("Escape")
    assert "all_parts" not in requests[-1] and "ignore_tone" not in requests[-1]
    shot(page, "13-collapsed-copies")

    page.check("#all-parts")  # re-runs the search as all-of: each tile lists its parts' scores
    page.wait_for_function("() => document.querySelector('#grid .tile')?.title.includes('a wooden table')")
    assert "all_parts=true" in requests[-1]
    title = page.locator("#grid li .tile").first.get_attribute("title")
    assert "a red car" in title and "a lamp" in title
    page.locator("#grid li .tile").first.click()
    assert "matches: a red car" in page.inner_text("#viewer-parts")
    page.keyboard.press("Escape")

    with page.expect_response(lambda r: "ignore_tone=true" in r.url, timeout=90000) as answer:
        page.check("#ignore-tone")
    assert answer.value.ok, answer.value.text()
    page.wait_for_function("n => document.querySelectorAll('#grid li').length === n", arg=distinct)
    assert "ignore_tone=true" in requests[-1] and "all_parts=true" in requests[-1]

    page.uncheck("#dedup")  # every copy shown on its own
    page.wait_for_function("n => document.querySelectorAll('#grid li').length === n", arg=distinct + 2)
    assert "dedup=false" in requests[-1]
    assert page.locator("#grid .copies").count() == 0
    shot(page, "13-all-of-ignore-tone")
