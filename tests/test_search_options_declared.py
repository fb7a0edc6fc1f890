"""The search options are declared once (SearchOptions' OptionDoc metadata): the CLI's flags and
the HTTP parameters follow the declaration, and the web page sends only names the server reads."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from pixgrep.cli import build_parser
from pixgrep.search.options import CLI, HTTP, OptionDoc, SearchOptions, front_end_default, option_docs
from pixgrep.server.search_params import SearchParams

APP_JS = Path(__file__).resolve().parents[1] / "src" / "pixgrep" / "server" / "static" / "app.js"


def _search_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices["search"]
    raise AssertionError("no sub-commands")


def test_every_field_is_declared_with_help_and_flags():
    for field, doc in option_docs():
        assert isinstance(doc, OptionDoc), field.name
        assert doc.help and doc.flags, field.name
        for front_end in (CLI, HTTP):
            if front_end_default(field, front_end) != field.default:  # a difference needs its reason
                assert doc.why, f"{field.name}: the {front_end} default differs without a reason"


def test_the_cli_flags_are_the_declared_ones_with_the_declared_defaults():
    parser = _search_parser()
    for field, doc in option_docs():
        # the declared flag (a field may also have shorthands, as --words-mode has --words)
        [action] = [
            a for a in parser._actions if a.dest == field.name and tuple(a.option_strings) == doc.flags
        ]
        default = front_end_default(field, CLI)
        assert action.default == ([] if field.name == "exclude" else default), field.name
    args = parser.parse_args(["cat"])
    from pixgrep.cli.search import options_from_args

    options = options_from_args(args, ["/photos"])
    assert options.k == 10 and options.include_hidden is False and options.dedup is True
    assert options_from_args(parser.parse_args(["cat", "-t", "3", "--no-dedup", "--all"]), ["/p"]) == (
        SearchOptions(k=3, dedup=False, all_parts=True, include_hidden=False, roots=("/p",))
    )
    for flags, mode in ((["--words"], "only"), (["--no-words"], "off"), (["--words-mode", "off"], "off")):
        assert options_from_args(parser.parse_args(["cat", *flags]), ["/p"]).words == mode


def test_the_http_parameters_take_the_declared_names_and_defaults():
    fields = SearchParams.model_fields
    for field, doc in option_docs():
        param = fields[field.name]
        if doc.repeatable:
            assert param.default_factory is list
        else:
            default = front_end_default(field, HTTP)
            assert param.default == (None if default == () else default), field.name
        assert param.description == doc.help
        assert param.alias == doc.http_name
    assert set(fields) == {field.name for field, _ in option_docs()} | {"model"}
    assert fields["k"].default == 20  # the declared difference, with its reason in OptionDoc


def _function(source: str, name: str) -> str:
    start = source.index(f"function {name}(")
    end = source.index("\n}\n", start)
    return source[start:end]


def _names_sent(source: str) -> set[str]:
    """Every parameter name the page's search code puts into a query string, a form or a JSON body."""
    code = "\n".join(_function(source, name) for name in ("filterParams", "switches", "fetchPage"))
    names = set(re.findall(r'(?:set|append)\("([a-z_]+)"', code))
    names |= set(re.findall(r"\bout\.([a-z_]+) =", code))
    for listed in re.findall(r"for \(const key of \[([^\]]*)\]\)", code):
        names |= set(re.findall(r'"([a-z_]+)"', listed))
    for literal in re.findall(r"(?:URLSearchParams|JSON\.stringify)\(\{([^}]*)\}", code):
        for item in literal.split(","):
            item = item.strip()
            if item and not item.startswith("..."):
                names.add(item.split(":")[0].strip())
    return names


@pytest.fixture(scope="module")
def server_names(tmp_path_factory) -> set[str]:
    """The names the search routes read: query parameters, form fields and JSON body properties."""
    from fakes import FakeEncoder

    from pixgrep.server.app import create_app

    app = create_app(tmp_path_factory.mktemp("declared") / "catalog.db", encoder=FakeEncoder())
    schema = app.openapi()
    components = schema["components"]["schemas"]
    names: set[str] = set()
    for path in ("/api/search", "/api/search/image"):
        for operation in schema["paths"][path].values():
            names |= {p["name"] for p in operation.get("parameters", [])}
            for content in operation.get("requestBody", {}).get("content", {}).values():
                ref = content["schema"].get("$ref", "")
                names |= set(components[ref.split("/")[-1]]["properties"]) if ref else set()
    return names


def test_the_page_sends_only_names_the_server_reads(server_names):
    sent = _names_sent(APP_JS.read_text())
    assert {"k", "offset", "root", "roots", "dedup", "place", "after", "terms"} <= sent  # the reader works
    assert sent <= server_names, f"app.js sends names no search route reads: {sorted(sent - server_names)}"


def test_a_name_unknown_to_the_server_is_caught(server_names):
    source = APP_JS.read_text().replace('set("dedup", "false")', 'set("dedupe", "false")')
    assert "dedupe" in _names_sent(source) - server_names
