"""Ctrl-C at chosen points of `pixgrep index`: the walk, inside a batch's transaction, while gone
files are dropped, and during the photo-metadata refresh. Each leaves a sound catalog, and the
next run completes it to what an uninterrupted run stores.

A KeyboardInterrupt is raised from inside the named step (in-process, deterministic), which is
what SIGINT does to the main thread; the timed SIGINT of a real subprocess mid-run is in
test_index_cli.py (test_sigint_mid_index_then_resume_gives_the_same_catalog).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from reliability_kit import make_images

from pixgrep.catalog import db as db_module
from pixgrep.catalog import metadata, scan
from pixgrep.cli import main


def _interrupt_on_call(monkeypatch, owner, name: str, call: int, *, after: bool = False) -> None:
    """owner.name raises KeyboardInterrupt on its `call`-th call (after doing its work with after)."""
    original = getattr(owner, name)
    calls = [0]

    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] == call and not after:
            raise KeyboardInterrupt
        result = original(*args, **kwargs)
        if calls[0] == call:
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(owner, name, wrapper)


POINTS = {
    # the walk: nothing is stored yet
    "walk": lambda mp: _interrupt_on_call(mp, scan, "excluded", 3),
    # the second batch's rows and vectors are written, its transaction not yet committed
    "inside a batch": lambda mp: _interrupt_on_call(
        mp, db_module.CatalogDB, "store_in_transaction", 2, after=True
    ),
    # the gone file's row is dropped, the replaced imports not yet
    "dropping gone files": lambda mp: _interrupt_on_call(
        mp, db_module.CatalogDB, "remove_images", 1, after=True
    ),
    # the photo metadata of the second file is being read
    "metadata refresh": lambda mp: _interrupt_on_call(mp, metadata, "read_photo_meta", 2),
}


def _state(path: Path) -> tuple[list, list, int]:
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT path, content_hash, error FROM images ORDER BY path").fetchall()
        hashes = {h for (h,) in conn.execute("SELECT content_hash FROM embeddings")}
        assert {h for _, h, e in rows if e is None} <= hashes  # no row points at a missing vector
        meta = conn.execute("SELECT count(*) FROM photo_meta").fetchone()[0]
        return [(Path(p).name, h, e) for p, h, e in rows], sorted(hashes), meta
    finally:
        conn.close()


@pytest.mark.parametrize("point", list(POINTS))
def test_ctrl_c_at_each_step_of_index_leaves_a_sound_catalog_that_resumes(
    point, tmp_path, tiny_model_dir, monkeypatch, capsys
):
    photos = tmp_path / "photos"
    files = make_images(photos, 6)
    catalog, reference = tmp_path / "c.db", tmp_path / "reference.db"
    index = ["index", str(photos), "--batch-size", "2", "--model", str(tiny_model_dir)]
    if point == "dropping gone files":  # a file indexed before and deleted since
        assert main([*index, "--catalog", str(catalog)]) == 0
        files[0].unlink()
    capsys.readouterr()
    with monkeypatch.context() as patch:
        POINTS[point](patch)
        assert main([*index, "--catalog", str(catalog)]) == 130
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("pixgrep: interrupted; the catalog is consistent, run again to resume")
    )
    assert main([*index, "--catalog", str(reference)]) == 0
    stored, _, meta = _state(catalog)
    whole, _, whole_meta = _state(reference)
    if point == "walk":
        assert stored == []
    if point == "inside a batch":
        assert len(stored) == 2  # the first batch only: the second rolled back
    if point == "dropping gone files":
        assert stored == whole  # the row of the gone file left in the one transaction
    if point == "metadata refresh":
        assert stored == whole and meta < whole_meta  # every vector stored, metadata not all read
    assert main([*index, "--catalog", str(catalog)]) == 0
    assert _state(catalog) == _state(reference)


def _ctrl_c_turned_into(error: BaseException):
    """A stand-in for native code that runs Python when Ctrl-C arrives and answers with its own
    error, the KeyboardInterrupt not chained: onnxruntime's import (ImportError "initialization
    failed"), usearch's build (RuntimeError "Operation has been terminated")."""

    def call(*args, **kwargs):
        import os
        import signal
        import time

        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(10)  # the handler raises KeyboardInterrupt here
        except KeyboardInterrupt:
            pass
        raise error

    return call


@pytest.fixture
def sigint_delivered():
    """Python's own SIGINT handler for the test: a job that a non-interactive shell starts in the
    background (as .ci/run starts the torch-free run) inherits SIGINT ignored."""
    import signal

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.mark.parametrize("where", ["importing usearch", "building the graph", "a command's import"])
def test_ctrl_c_that_native_code_answers_with_its_own_error_is_still_an_interrupt(
    where, tmp_path, tiny_model_dir, monkeypatch, capsys, sigint_delivered
):
    """Found by a fault pass: a traceback instead of exit 130, and a Ctrl-C during usearch's import
    taken for a missing usearch (the index silently off, the command run to its end)."""
    from pixgrep.cli import index as index_command
    from pixgrep.search import ann

    photos = tmp_path / "photos"
    make_images(photos, 4)
    catalog = tmp_path / "c.db"
    command = ["index", str(photos), "--model", str(tiny_model_dir), "--catalog", str(catalog)]
    if where == "importing usearch":  # asked at the end of every index run
        monkeypatch.setattr(
            ann, "_usearch_index_class", _ctrl_c_turned_into(ImportError("initialization failed"))
        )
    elif where == "building the graph":
        monkeypatch.setattr(ann, "ANN_MIN_ROWS", 2)
        real = ann._usearch_index_class()

        class Interrupted(real):  # type: ignore[misc, valid-type]
            add = _ctrl_c_turned_into(RuntimeError("Operation has been terminated"))

        monkeypatch.setattr(ann, "_usearch_index_class", lambda: Interrupted)
    else:
        monkeypatch.setattr(
            index_command, "_default_batch", _ctrl_c_turned_into(ImportError("initialization failed"))
        )
    assert main(command) == 130
    assert capsys.readouterr().err.strip().endswith("run again to resume")
    monkeypatch.undo()
    assert main(command) == 0  # and the next command is not taken for an interrupted one
    assert ann.available()
