"""Every SearchOptions field reaches the engine from every search route (server/search_params.py).

The field list comes from the dataclass and the routes from the OpenAPI schema (every operation
answering a SearchResponse), so a field added to SearchOptions, or a search route added to the
server, fails here until it is wired. The search itself is replaced by a recorder of the options.
"""

from __future__ import annotations

import dataclasses
import io
import typing

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pixgrep.search.options import SearchOptions
from pixgrep.server import search_routes
from pixgrep.server.app import create_app

# A value the engine accepts and that differs from the HTTP default, where the type alone cannot
# give one; other fields get one from their type (bool: the opposite, int: a small number, ...).
SAMPLES: dict[str, object] = {
    "roots": "/photos/2024",
    "after": "2020",
    "before": "2021-06",
    "exclude": "*.png",
    "fusion": "sum",
    "words": "only",
    "near": "43.77,11.25,5",
    "tone": "cozy",
    "lang": "de",
    "threshold": 0.25,
    "k": 7,
    "offset": 3,
}


def _upload() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def _call(client: TestClient, route: str, params: dict[str, object]):
    """One request to `route` with `params` in the form that route reads them."""
    query = {("root" if name == "roots" else name): value for name, value in params.items()}
    if route == "GET /api/search":
        return client.get("/api/search", params={"q": "cat", **query})
    if route == "GET /api/images/{image_id}/similar":
        return client.get("/api/images/1/similar", params=query)
    if route == "POST /api/search/image":
        return client.post("/api/search/image", files={"file": ("q.png", _upload())}, data=query)
    if route == "POST /api/search":
        body = {name: [v] if name in ("roots", "exclude") else v for name, v in params.items()}
        return client.post("/api/search", json={"q": "cat", **body})
    raise AssertionError(f"a search route this test does not know how to call: {route}")


def _sample(name: str, annotation: object, default: object) -> object:
    if name in SAMPLES:
        return SAMPLES[name]
    if annotation is bool:
        return not default
    if annotation is int:
        return int(default or 0) + 2  # type: ignore[call-overload]
    if str in typing.get_args(annotation) or annotation is str:
        return "canon"
    raise AssertionError(f"no sample value for the SearchOptions field {name!r}: add one to SAMPLES")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    from fakes import FakeEncoder

    app = create_app(tmp_path_factory.mktemp("params") / "catalog.db", encoder=FakeEncoder())
    ok = "#/components/schemas/SearchResponse"
    routes = sorted(
        f"{method.upper()} {path}"
        for path, operations in app.openapi()["paths"].items()
        for method, operation in operations.items()
        if ok in str(operation["responses"].get("200", {}))
    )
    seen: list[SearchOptions] = []

    def record(state, terms, options, notes=None):
        seen.append(options)
        return [], 0.0

    with pytest.MonkeyPatch.context() as patch, TestClient(app, base_url="http://localhost") as client:
        patch.setattr(search_routes, "run_search", record)
        yield client, routes, seen


def test_the_server_has_the_four_search_routes(recorded):
    _, routes, _ = recorded
    assert routes == [
        "GET /api/images/{image_id}/similar",
        "GET /api/search",
        "POST /api/search",
        "POST /api/search/image",
    ]


@pytest.mark.parametrize(
    "route",
    ["GET /api/search", "POST /api/search", "POST /api/search/image", "GET /api/images/{image_id}/similar"],
)
def test_every_search_option_reaches_the_engine_from_every_route(recorded, route):
    client, _, seen = recorded
    hints = typing.get_type_hints(SearchOptions)
    response = _call(client, route, {})
    assert response.status_code == 200, response.text
    baseline = seen[-1]
    for field in dataclasses.fields(SearchOptions):
        value = _sample(field.name, hints[field.name], getattr(baseline, field.name))
        response = _call(client, route, {field.name: value})
        assert response.status_code == 200, (field.name, response.text)
        got = seen[-1]
        assert getattr(got, field.name) != getattr(baseline, field.name), (route, field.name)
        # only that field moved: no parameter lands in another field
        assert dataclasses.replace(got, **{field.name: getattr(baseline, field.name)}) == baseline


def test_a_value_the_engine_refuses_is_a_400_from_every_route(recorded):
    client, routes, _ = recorded
    for route in routes:
        response = _call(client, route, {"tone": ",,"})
        assert response.status_code == 400, (route, response.text)
        assert "--tone needs one or more words" in response.json()["error"]


def test_an_unknown_language_is_one_400_from_every_route(recorded):
    client, routes, _ = recorded
    for route in routes:
        response = _call(client, route, {"lang": "klingon"})
        assert response.status_code == 400, (route, response.text)
        assert response.json()["error"].startswith("unknown language 'klingon': give an ISO 639-1 code")
