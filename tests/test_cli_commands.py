"""The command table and the command line's routing: `pixgrep QUERY` is a search, options may come
before a command (as with `git -C`), a command name is never searched by accident, old names work."""

from __future__ import annotations

import argparse

import pytest

from pixgrep.cli import ALIASES, build_parser, main, route


@pytest.fixture
def parser() -> argparse.ArgumentParser:
    return build_parser()


@pytest.fixture
def quiet_home(tmp_path, monkeypatch):
    """An empty working folder and data folder, no catalog setting: where a stray search would
    index and create its default catalog."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("PIXGREP_CATALOG", raising=False)
    return tmp_path


def _files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("argv", "routed"),
    [
        (["a", "red", "fox"], ["search", "a", "red", "fox"]),
        (["-n", "-k", "5", "dog"], ["search", "-n", "-k", "5", "dog"]),
        (["--tone", "index", "cat"], ["search", "--tone", "index", "cat"]),  # a value, not a command
        (["--catalog", "X", "index", "DIR"], ["index", "--catalog", "X", "DIR"]),
        (["--catalog=X", "stats", "--json"], ["stats", "--catalog=X", "--json"]),
        (["--model", "M", "rank", "a.jpg", "cat"], ["study", "rank", "--model", "M", "a.jpg", "cat"]),
        (["probe", "a kitchen"], ["study", "probe", "a kitchen"]),
        (["export", "--parquet", "o.parquet"], ["export", "--parquet", "o.parquet"]),
        (["search", "index"], ["search", "index"]),
    ],
)
def test_routing(parser, argv, routed):
    assert route(parser, argv) == routed


def test_an_option_before_a_command_that_does_not_take_it_is_one_line(quiet_home, capsys):
    assert main(["--model", "pixgrep-mini", "models", "list"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "pixgrep: error: --model is not an option of `pixgrep models list` "
        "(to search for the word 'models', write `pixgrep search models`)\n"
    )
    assert _files(quiet_home) == []  # nothing indexed, no catalog created
    assert main(["-n", "index", "photos"]) == 2
    assert "`pixgrep search index`" in capsys.readouterr().err


def test_an_option_before_a_command_that_takes_it_is_that_commands(quiet_home, capsys):
    import pixgrep

    catalog = quiet_home / "elsewhere.db"
    pixgrep.open_catalog(catalog).close()  # stats reads a catalog, never creates one
    assert main(["--catalog", str(catalog), "stats", "--json"]) == 0
    assert f'"catalog": "{catalog}"' in capsys.readouterr().out
    assert catalog.exists() and not (quiet_home / "data").exists()


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return capsys.readouterr().out


def test_old_names_and_the_study_group_are_in_the_help(capsys):
    assert "export-vectors (export)" in _help([], capsys)
    assert "`pixgrep rank` and `pixgrep probe`" in _help(["study"], capsys)
    assert _help(["export"], capsys).startswith("usage: pixgrep export-vectors")
    assert _help(["rank"], capsys).startswith("usage: pixgrep study rank")
    assert "options may come before the command" in _help([], capsys)
    assert set(ALIASES) == {"rank", "probe"}


def test_one_table_registers_every_group_once(parser):
    def commands(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                return dict(action.choices)
        return {}

    top = commands(parser)
    assert {"combiner", "mini"} <= set(commands(top["train"]))
    assert {"composed", "make-cir", "retrieval", "classes"} <= set(commands(top["eval"]))
    assert {"add-combiner", "export", "list"} <= set(commands(top["models"]))
    assert set(commands(top["study"])) == {"rank", "probe"}
    assert "rank" not in top and "probe" not in top  # reached through ALIASES only
