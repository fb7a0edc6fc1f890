"""The fault battery over the command table: every command given bad input answers with one
`pixgrep: error:` line and status 2, no traceback, and leaves the catalog as it was.

Run in-process (pixgrep.cli.main), so a hundred cases cost seconds; the subprocess view of the
same rule is in test_reliability_*.py. The list of commands comes from the parser, so a command
added without a case here fails `test_every_command_has_a_bad_input_case`.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest
from reliability_kit import make_images

from pixgrep.cli import build_parser, main

LONG = "a" * 5000  # over NAME_MAX and PATH_MAX: the kernel refuses it (ENAMETOOLONG)
HUGE = str(10**23)  # past any C integer the options reach (SQLite, numpy, pyarrow)


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir):
    base = tmp_path_factory.mktemp("battery")
    photos = base / "photos"
    make_images(photos, 3)
    good = base / "good.db"
    assert main(["index", str(photos), "--catalog", str(good), "--model", str(tiny_model_dir)]) == 0
    data = good.read_bytes()
    (base / "truncated.db").write_bytes(data[: len(data) // 3])
    (base / "text.db").write_bytes(b"not a catalog\n" * 64)
    (base / "text.jpg").write_text("not an image")
    (base / "folder.jpg").mkdir()
    return {"base": base, "photos": photos, "good": good, "model": str(tiny_model_dir)}


def _cases(w: dict) -> dict[str, list[list[str]]]:
    """Bad invocations per leaf command (its words joined by spaces): missing, over-long and
    non-image paths, a folder where a file goes, numbers out of range, unknown models, damaged
    catalogs, --json variants."""
    base, photos, model = w["base"], str(w["photos"]), w["model"]
    good = ["--catalog", str(w["good"])]
    m = ["--model", model]
    return {
        "search": [
            ["search", "-n", "cat", "--in", LONG, *good, *m],
            ["search", "-n", str(base / "text.jpg"), *good, *m],
            ["search", "-n", str(base / "folder.jpg"), *good, *m],
            ["search", "-n", "cat", "-k", "-5", *good, *m],
            ["search", "-n", "cat", "-k", HUGE, *good, *m],
            ["search", "-n", "cat", "--offset", HUGE, *good, *m],
            ["search", "-n", "cat", "--threshold", "nan", *good, *m],
            ["search", "-n", "cat", "--model", "no-such-model", *good],
            ["search", "-n", "cat", "--model", LONG, *good],
            ["search", "-n", "cat", "--catalog", str(base / "truncated.db"), *m],
            ["search", "-n", "cat", "--catalog", str(base / "text.db"), *m],
            ["search", "-n", "cat", "--tone", ",,", *good, *m],
            ["search", "-n", "", *good, *m],
            ["search", "-n", "cat", "--json", "-k", "0", *good, *m],
            ["search", "-n", "cat", "--json", "--catalog", str(base / "truncated.db"), *m],
        ],
        "index": [
            ["index", LONG, *good, *m],
            ["index", str(base / "missing\nline \u00e9"), *good, *m],
            ["index", photos, "--batch-size", HUGE, *good, *m],
            ["index", photos, "--batch-size", "0", *good, *m],
            ["index", photos, "--model", LONG, *good],
            ["index", LONG, "--json", *good, *m],
        ],
        "stats": [["stats", "--catalog", str(base / "truncated.db")], ["stats", "--json", "--catalog", LONG]],
        "duplicates": [
            ["duplicates", "--threshold", "0", *good, *m],
            ["duplicates", "--threshold", "nan", *good, *m],
            ["duplicates", "--catalog", str(base / "text.db"), *m],
            ["duplicates", "--json", "--catalog", str(base / "truncated.db"), *m],
        ],
        "models list": [["models", "list", "--no-such-flag"]],
        "models info": [["models", "info", LONG], ["models", "info", "no-such-model"]],
        "models download": [["models", "download", "no-such-model"]],
        "models export": [["models", "export", "--pretrained", "none", "--out", str(base / "m")]],
        "models add-combiner": [
            ["models", "add-combiner", model, LONG],
            ["models", "add-combiner", model, photos],
        ],
        "models quantize": [["models", "quantize", LONG]],
        "train mini": [["train", "mini", "--epochs", "-5"], ["train", "mini", "--seed", HUGE]],
        "train combiner": [
            ["train", "combiner", "--triplets", LONG, "--images", photos, "--out", "x.npz", *good, *m]
        ],
        "eval retrieval": [["eval", "retrieval", "--images", LONG, "--captions", LONG, *good, *m]],
        "eval classes": [["eval", "classes", LONG, *good, *m], ["eval", "classes", photos, *good, *m]],
        "eval composed": [["eval", "composed", "--triplets", LONG, "--images", photos, *good, *m]],
        "eval words": [["eval", "words", photos, "--queries", LONG, *good, *m]],
        "eval make-cir": [["eval", "make-cir", "--captions", LONG, "--split", LONG, "--out", str(base)]],
        "study rank": [["study", "rank", LONG, "a cat", *m], ["rank", str(base / "text.jpg"), "a cat", *m]],
        "study probe": [
            ["study", "probe", "a cat", "--in", LONG, *good, *m],
            ["probe", "a cat", "--in", LONG, *m],
        ],
        "classify": [
            ["classify", LONG, "--labels", "cat,dog", *m],
            ["classify", photos, "--labels", "cat", "--top", "-1", *m],
            ["classify", photos, "--labels", "cat", "--min-prob", "nan", *m],
        ],
        "serve": [["serve", "--port", "70000", *good, *m]],
        "export-vectors": [["export-vectors", "--parquet", LONG, *good]],
        "export": [["export", "--parquet", photos, *good]],  # the old name of export-vectors
        "import": [
            ["import", LONG, *good, *m],
            ["import", str(base / "text.jpg"), "--batch-size", HUGE, *good, *m],
            ["import", str(base / "text.jpg"), *good, *m],
            ["import", str(base / "text.jpg"), "--json", *good, *m],
        ],
    }


def _leaf_commands(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return [
                leaf
                for name, sub in action.choices.items()
                for leaf in _leaf_commands(sub, f"{prefix}{name} ")
            ]
    return [prefix.strip()]


def _catalog_state(path: Path) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()
    finally:
        conn.close()


def test_every_command_has_a_bad_input_case(tmp_path):
    fake = {"base": tmp_path, "photos": tmp_path, "good": tmp_path, "model": "m"}
    assert sorted(_leaf_commands(build_parser())) == sorted(_cases(fake))


def test_bad_input_to_every_command_is_one_line_and_leaves_the_catalog(world, capsys, monkeypatch):
    monkeypatch.delenv("PIXGREP_MODEL", raising=False)
    monkeypatch.chdir(world["base"])
    before = _catalog_state(world["good"])
    failures = []
    for command, cases in _cases(world).items():
        for argv in cases:
            try:
                status = main(argv)
            except SystemExit as exc:  # argparse refusals exit through the parser
                status = exc.code
            except BaseException as exc:  # noqa: BLE001 (a traceback is the failure being looked for)
                failures.append((command, argv[:4], f"raised {type(exc).__name__}: {exc}"[:200]))
                continue
            out, err = capsys.readouterr()
            errors = [line for line in err.splitlines() if line.startswith("pixgrep: error: ")]
            # stdout stays empty: a pipe (or a --json reader) never gets half an answer
            if status != 2 or len(errors) != 1 or "Traceback" in err or out:
                failures.append((command, [a[:40] for a in argv[:4]], status, err[-300:], out[:100]))
    assert not failures, "\n".join(map(str, failures))
    assert _catalog_state(world["good"]) == before
    assert sorted(p.name for p in world["base"].iterdir()) == sorted(
        ["photos", "good.db", "truncated.db", "text.db", "text.jpg", "folder.jpg", *_sidecars(world["base"])]
    )


def _sidecars(base: Path) -> list[str]:
    """The search matrix and lock files beside the good catalog (made by a search, not by a failure)."""
    return [p.name for p in base.iterdir() if p.name.startswith("good.db") and p.name != "good.db"]


def test_a_name_the_kernel_refuses_is_named_shortly(world, capsys):
    assert main(["index", LONG, "--catalog", str(world["good"]), "--model", world["model"]]) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("pixgrep: error: File name too long: aaaa") and line.endswith("(5000 characters)")
    assert len(line) < 300


def test_export_writes_over_an_earlier_export_only(tmp_path, tiny_model_dir, capsys):
    """Found by a fault pass: `--parquet` naming the catalog (or a photo, or the catalog's stamp)
    replaced it with the export, exit 0."""
    photos = tmp_path / "photos"
    files = make_images(photos, 2)
    catalog = tmp_path / "c.db"
    m = ["--model", str(tiny_model_dir), "--catalog", str(catalog)]
    assert main(["index", str(photos), *m]) == 0
    photo = files[0].read_bytes()
    for target in (catalog, files[0], Path(f"{catalog}.checked")):
        capsys.readouterr()
        assert main(["export-vectors", "--parquet", str(target), *m]) == 2
        assert "is not a Parquet file" in capsys.readouterr().err
    assert files[0].read_bytes() == photo
    assert (
        catalog.read_bytes()[:16] == b"SQLite format 3\0" and main(["stats", "--catalog", str(catalog)]) == 0
    )
    pytest.importorskip("pyarrow", reason="the export itself needs pixgrep[parquet]")
    out = tmp_path / "vectors.parquet"
    assert main(["export-vectors", "--parquet", str(out), *m]) == 0
    assert main(["export-vectors", "--parquet", str(out), *m]) == 0  # an earlier export: replaced


def test_a_stamp_that_is_not_text_costs_a_full_check_not_a_traceback(tmp_path, tiny_model_dir):
    photos = tmp_path / "photos"
    make_images(photos, 2)
    catalog = tmp_path / "c.db"
    index = ["index", str(photos), "--model", str(tiny_model_dir), "--catalog", str(catalog)]
    assert main(index) == 0
    Path(f"{catalog}.checked").write_bytes(b"\xe8\xe8\xe8")
    make_images(photos / "more", 1)
    assert main(index) == 0


def test_an_export_removes_what_a_killed_export_left(tmp_path, tiny_model_dir):
    """kill -9 leaves `.OUT.partial-PID` (its cleanup never runs): the next export to OUT removes
    it when that process is gone, and leaves a running export's alone."""
    import os
    import subprocess
    import sys

    pytest.importorskip("pyarrow", reason="the export needs pixgrep[parquet]")
    photos = tmp_path / "photos"
    make_images(photos, 2)
    m = ["--model", str(tiny_model_dir), "--catalog", str(tmp_path / "c.db")]
    assert main(["index", str(photos), *m]) == 0
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / f".v.parquet.partial-{int(gone.stdout)}"
    running = tmp_path / f".v.parquet.partial-{os.getpid()}0"  # a pid that is no process...
    mine = tmp_path / f".v.parquet.partial-{os.getppid()}"  # ... and one that is
    for path in (stale, mine):
        path.write_bytes(b"half an export")
    assert main(["export-vectors", "--parquet", str(tmp_path / "v.parquet"), *m]) == 0
    assert not stale.exists() and mine.exists() and not running.exists()


def _page_of(catalog: Path, table: str) -> tuple[int, int]:
    conn = sqlite3.connect(catalog)
    try:
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
        return (root - 1) * size, size
    finally:
        conn.close()


def test_a_damaged_fingerprint_page_is_one_line(tmp_path, tiny_model_dir, capsys):
    photos = tmp_path / "photos"
    make_images(photos, 3)
    catalog = tmp_path / "c.db"
    m = ["--model", str(tiny_model_dir), "--catalog", str(catalog)]
    assert main(["index", str(photos), *m]) == 0
    offset, size = _page_of(catalog, "fingerprints")
    with open(catalog, "r+b") as f:  # garbage where a failing disk wrote
        f.seek(offset)
        f.write(bytes(range(256)) * (size // 256))
    capsys.readouterr()
    assert main(["-n", "a photo", "--in", str(photos), *m]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and "damaged" in err, err


def test_an_sqlite_failure_no_layer_caught_is_one_line_and_a_bug_stays_loud(
    tmp_path, tiny_model_dir, capsys, monkeypatch
):
    from pixgrep.search import engine

    photos = tmp_path / "photos"
    make_images(photos, 2)
    m = ["--model", str(tiny_model_dir), "--catalog", str(tmp_path / "c.db")]
    assert main(["index", str(photos), *m]) == 0

    def malformed(*args, **kwargs):
        raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setattr(engine, "_facts", malformed)
    capsys.readouterr()
    assert main(["-n", "a photo", "--in", str(photos), *m]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pixgrep: error: catalog ") and "damaged" in err and err.count("\n") == 1, err

    def misbound(*args, **kwargs):
        raise sqlite3.ProgrammingError("Incorrect number of bindings supplied")

    monkeypatch.setattr(engine, "_facts", misbound)
    with pytest.raises(sqlite3.ProgrammingError):
        main(["-n", "a photo", "--in", str(photos), *m])


def test_an_emptied_catalog_is_refused_and_an_empty_file_is_no_catalog_to_search(
    tmp_path, tiny_model_dir, capsys
):
    photos, catalog = tmp_path / "photos", tmp_path / "c.db"
    make_images(photos, 2)
    model = ["--model", str(tiny_model_dir)]
    assert main(["index", str(photos), "--catalog", str(catalog), *model]) == 0
    catalog.write_bytes(b"")  # emptied behind pixgrep's back: its stamp says what it held
    for command in (["stats"], ["search", "-n", "cat", *model], ["index", str(photos), *model]):
        capsys.readouterr()
        assert main([*command, "--catalog", str(catalog)]) == 2
        assert "it is empty, where pixgrep left" in capsys.readouterr().err
        assert catalog.stat().st_size == 0  # nothing written into it
    fresh = tmp_path / "new.db"
    fresh.write_bytes(b"")  # an empty file and no stamp: no catalog to search, a new one to index
    assert main(["stats", "--catalog", str(fresh)]) == 2
    assert "(the file is empty)" in capsys.readouterr().err and fresh.stat().st_size == 0
    assert main(["index", str(photos), "--catalog", str(fresh), *model]) == 0


def test_a_catalog_made_read_only_by_its_mode_is_not_written_even_by_root(tmp_path, tiny_model_dir, capsys):
    photos, home = tmp_path / "photos", tmp_path / "home"
    make_images(photos, 2)
    catalog, model = home / "c.db", ["--model", str(tiny_model_dir)]
    assert main(["index", str(photos), "--catalog", str(catalog), *model]) == 0
    make_images(photos / "more", 1)
    shutil.rmtree(f"{catalog}.vectors", ignore_errors=True)  # the search matrix: a cache, made again
    for locked in (home, catalog):  # the folder, then the file (chmod a-w)
        before = hashlib.sha256(catalog.read_bytes()).hexdigest()
        listed = [p.name for p in home.iterdir()]
        mode = locked.stat().st_mode
        locked.chmod(mode & ~0o222)
        try:
            capsys.readouterr()
            assert main(["index", str(photos), "--catalog", str(catalog), *model]) == 2
            assert "read-only" in capsys.readouterr().err
            assert (
                main(["search", "-n", "a photo", "--in", str(photos), "--catalog", str(catalog), *model]) == 0
            )
        finally:
            locked.chmod(mode)
        assert hashlib.sha256(catalog.read_bytes()).hexdigest() == before
        if locked == home:  # nothing written beside it either
            assert sorted(p.name for p in home.iterdir()) == sorted(listed)
