"""The web page's metadata features and phone polish in real headless Chromium: facets (a click adds
a filter), the large view's camera/lens/place/coordinates, what the search box shows after a refine
or an upload, the 390 px layout, thumbnail placeholders and caching, the favicon."""

from __future__ import annotations

import os
import shutil

import pytest
from browserfixtures import MARKS, PHONE, PLAYWRIGHT, PLAYWRIGHT_MISSING, new_page, serve, shot
from metadata_samples import build_photo_folder
from serverkit import LiveServer

pytestmark = MARKS
pytest.importorskip(PLAYWRIGHT, reason=PLAYWRIGHT_MISSING)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from conftest import shared_data
    from fakes import FakeEncoder

    import pixgrep

    base = tmp_path_factory.mktemp("browser-meta")
    root = build_photo_folder(base / "photos")
    shutil.copy(shared_data("exif-samples") / "heic" / "IMG_5195.HEIC", root / "IMG_5195.HEIC")
    with pixgrep.open_catalog(base / "c.db", encoder=FakeEncoder()) as catalog:
        catalog.index([root])
        records = catalog.images_at(str(p) for p in root.iterdir())
    ids = {os.path.basename(path): record.id for path, record in records.items()}
    return {"catalog": base / "c.db", "ids": ids, "root": root}


@pytest.fixture(scope="module")
def server(world):
    with serve(world["catalog"]) as live:
        yield live


def names(page) -> list[str]:
    return page.eval_on_selector_all("#grid .tile img", "imgs => imgs.map(i => i.alt)")


def test_facets_click_adds_a_filter_and_the_chip_removes_it(browser, server, world):
    context, page, errors = new_page(browser)
    try:
        page.goto(server.url + "/")
        page.click("#facets-toggle")
        page.wait_for_selector("#facets .facet-group[data-facet=places] .facet")
        places = page.locator("#facets .facet-group[data-facet=places] .facet")
        texts = places.all_inner_texts()
        assert any(t.startswith("Arezzo") and t.endswith("2") for t in texts)
        assert page.locator("#facets .facet-group[data-facet=cameras]").inner_text().count("\n") >= 4
        shot(page, "m1-facets")
        page.locator("#facets .facet[data-key=place][data-value=Florence]").click()
        page.wait_for_function("document.querySelectorAll('#grid li').length === 1")
        assert names(page) == ["87_OSError.jpg"]
        assert "place: Florence" in page.inner_text("#active-filters")
        # the facets now count within the filter: one place left
        page.wait_for_function(
            "document.querySelectorAll('#facets .facet-group[data-facet=places] .facet').length === 1"
        )
        # a second facet narrows further, a chip click widens again
        page.locator("#active-filters .chip").click()
        page.wait_for_function("document.querySelectorAll('#grid li').length === 0")
        assert page.locator("#active-filters").is_hidden()

        # with a text query: the filter applies inside the search
        page.fill("#q", "a photo")
        page.press("#q", "Enter")
        page.wait_for_function(f"document.querySelectorAll('#grid li').length === {len(world['ids'])}")
        page.locator("#facets .facet[data-key=camera]", has_text="COOLPIX").click()
        page.wait_for_function("document.querySelectorAll('#grid li').length === 2")
        assert sorted(names(page)) == ["DSCN0010.jpg", "DSCN0012.jpg"]
        assert page.input_value("#q") == "a photo"
        shot(page, "m2-filtered-search")
    finally:
        context.close()
    assert not errors


def test_large_view_shows_camera_lens_place_coordinates_and_keyword_filters(browser, server, world):
    context, page, errors = new_page(browser)
    try:
        page.goto(server.url + "/")
        page.fill("#q", "a photo")
        page.press("#q", "Enter")
        page.wait_for_selector("#grid li")
        page.locator("#grid .tile img[alt='87_OSError.jpg']").click()
        page.wait_for_function("!document.querySelector('#viewer-meta').hidden")
        meta = page.inner_text("#viewer-meta")
        assert "NIKON D70s" in meta and "18.0-70.0 mm f/3.5-4.5" in meta
        assert "Florence, Tuscany, Italy" in meta and "43.78559, 11.23462" in meta
        page.click("#viewer-close")
        page.locator("#grid .tile img[alt='bridge.jpg']").click()
        page.wait_for_function("document.querySelector('#viewer-meta').innerText.includes('Ponte Vecchio')")
        shot(page, "m3-viewer-meta")
        page.locator("#viewer-meta .chip", has_text="bridge").click()  # a keyword becomes a tag filter
        page.wait_for_function("document.querySelector('#active-filters').innerText.includes('tag: bridge')")
        page.wait_for_function("document.querySelectorAll('#grid li').length === 1")
        assert names(page) == ["bridge.jpg"]
    finally:
        context.close()
    assert not errors


def test_search_box_after_refine_and_upload(browser, server, world):
    context, page, errors = new_page(browser)
    try:
        page.goto(server.url + "/")
        page.fill("#q", "a photo")
        page.press("#q", "Enter")
        page.wait_for_selector("#grid li")
        page.locator("#grid .tile").first.click()
        page.fill("#refine-text", "in red")
        page.press("#refine-text", "Enter")
        page.wait_for_function("document.querySelectorAll('#trail-steps li').length === 2")
        assert page.input_value("#q") == ""  # not the old "a photo"
        assert "in red" in page.get_attribute("#q", "placeholder")
        page.set_input_files("#file", str(world["root"] / "Canon_40D.jpg"))
        page.wait_for_function("document.querySelectorAll('#trail-steps li').length === 3")
        assert page.input_value("#q") == ""
        assert "Canon_40D.jpg" in page.get_attribute("#q", "placeholder")
        page.locator("#trail-steps li").first.locator("button").click()
        page.wait_for_function("document.querySelector('#q').value === 'a photo'")
    finally:
        context.close()
    assert not errors


def test_phone_layout_at_390_px(browser, server, world):
    context, page, errors = new_page(browser, **PHONE)
    try:
        page.goto(server.url + "/")
        page.wait_for_function("document.querySelector('#q').placeholder.includes('images')")
        assert "press /" not in page.get_attribute("#q", "placeholder")
        page.fill("#q", "a photo of a bridge at night")
        page.press("#q", "Enter")
        page.wait_for_selector("#grid li")
        brand = page.locator(".brand").bounding_box()
        assert brand and brand["width"] > 0 and brand["x"] >= 0 and brand["x"] + brand["width"] <= 390
        assert page.locator(".reject:visible").count() == 0  # no ✕ on every tile
        page.locator("#grid .tile").first.tap()
        page.fill("#refine-text", "with a long change that makes a long trail label")
        page.press("#refine-text", "Enter")
        page.wait_for_function("document.querySelectorAll('#trail-steps li').length === 2")
        boxes = page.eval_on_selector_all(
            "#trail-steps li button",
            "bs => bs.map(b => b.getBoundingClientRect().right)",
        )
        assert all(right <= 390 for right in boxes), boxes
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        shot(page, "m4-phone-trail")
    finally:
        context.close()
    assert not errors


def test_thumbnails_have_a_neutral_placeholder_while_loading(browser, server, world):
    context, page, errors = new_page(browser)
    try:
        heic = world["ids"]["IMG_5195.HEIC"]
        # Hold the HEIC preview back, to see the tile while it is still loading.
        held = []
        page.route(f"**/api/images/{heic}/thumb*", lambda route: held.append(route))
        page.goto(server.url + "/")
        page.fill("#q", "a photo")
        page.press("#q", "Enter")
        page.wait_for_function("document.querySelectorAll('#grid li').length > 5")
        for _ in range(200):  # the held request arrives (bounded wait)
            if held:
                break
            page.wait_for_timeout(50)
        assert held
        tile = page.locator(f"#grid li[data-id='{heic}'] .tile")
        colour = tile.evaluate("t => getComputedStyle(t).backgroundColor")
        assert colour not in ("rgb(0, 0, 0)", "rgba(0, 0, 0, 0)")
        assert "url(" in tile.evaluate("t => getComputedStyle(t).backgroundImage")
        assert tile.locator("img").evaluate("i => getComputedStyle(i).opacity") == "0"
        for route in held:
            route.continue_()
        page.unroute(f"**/api/images/{heic}/thumb*")
        page.wait_for_function(
            f"document.querySelector(\"#grid li[data-id='{heic}'] img\").classList.contains('loaded')"
        )
    finally:
        context.close()
    assert not errors


def test_thumbnails_are_cached_after_the_first_render(browser, world):
    """A reload and a step back through the trail send no preview request the server has to answer
    with a new image (the browser's cache, or a 304 for its ETag)."""
    from fakes import FakeEncoder

    from pixgrep.server.app import create_app

    app = create_app(world["catalog"], encoder=FakeEncoder())
    served = []

    @app.middleware("http")
    async def count(request, call_next):
        response = await call_next(request)
        if request.url.path.endswith("/thumb") and response.status_code == 200:
            served.append(request.url.path)
        return response

    with LiveServer(app) as live:
        context, page, errors = new_page(browser)  # no page.route here: routing turns the cache off
        try:
            every = f"document.querySelectorAll('#grid img.loaded').length === {len(world['ids'])}"
            page.goto(live.url + "/?q=a+photo")
            page.wait_for_function(every)
            first = len(served)
            assert first == len(world["ids"])
            page.reload()
            page.wait_for_function(every)
            page.fill("#q", "a bridge")
            page.press("#q", "Enter")
            page.wait_for_function("document.querySelectorAll('#trail-steps li').length === 2")
            page.go_back()
            page.wait_for_function(every)
            assert len(served) == first, served[first:]
        finally:
            context.close()
    assert not errors


def test_favicon_is_served(browser, server):
    context, page, errors = new_page(browser)
    try:
        response = page.goto(server.url + "/favicon.ico")
        assert response.status == 200 and response.headers["content-type"] == "image/x-icon"
    finally:
        context.close()
