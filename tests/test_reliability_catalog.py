"""Catalog faults through the real CLI: a full disk, a read-only file or folder, damaged pages, six
processes creating one catalog at once, a --catalog under a file. Each ends in one line and exit 2
(or works, where the docs promise it), and what was stored before survives."""

from __future__ import annotations

import json
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from reliability_kit import cli_env, make_images, one_line_error, pixgrep, read_only, small_disk

from pixgrep.catalog.db import MIGRATIONS, CatalogDB

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def indexed(tmp_path: Path, model: Path, count: int = 24) -> tuple[Path, Path]:
    photos, catalog = tmp_path / "photos", tmp_path / "catalog.db"
    make_images(photos, count, size=32)
    done = pixgrep("index", photos, "--catalog", catalog, "--model", model, "--json")
    assert done.returncode == 0, done.stderr
    return photos, catalog


def image_rows(catalog: Path) -> int:
    conn = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    finally:
        conn.close()


def test_disk_full_while_indexing_is_one_line_and_keeps_what_was_stored(tmp_path, tiny_model_dir):
    photos, disk = tmp_path / "photos", tmp_path / "disk"
    make_images(photos, 300, size=32)
    with small_disk(disk, 1600) as limit:
        catalog = disk / "catalog.db"
        common = ("--catalog", catalog, "--model", tiny_model_dir)
        line = one_line_error(pixgrep("index", photos, *common, "--batch-size", "4", **limit))
        assert "disk is full" in line or "disk I/O error" in line, line
        stored = image_rows(catalog)
        assert 0 < stored < 300
        for suffix in ("", "-wal"):  # to a disk with room: it resumes where it stopped
            if Path(f"{catalog}{suffix}").exists():
                shutil.copy(f"{catalog}{suffix}", tmp_path / f"roomy.db{suffix}")
    rerun = pixgrep("index", photos, "--catalog", tmp_path / "roomy.db", "--model", tiny_model_dir, "--json")
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["encoded"] + summary["reused"] == 300 - stored and image_rows(tmp_path / "roomy.db") == 300


def one_line_or_answer(done: subprocess.CompletedProcess) -> None:
    """An answer (exit 0 or 1: nothing found) or one `pixgrep: error:` line with exit 2."""
    assert "Traceback" not in done.stderr, done.stderr
    if done.returncode not in (0, 1):
        one_line_error(done)


@pytest.mark.parametrize("where", ["first", "middle"])
def test_damaged_catalog_every_command_is_one_line_and_nothing_is_written(tmp_path, tiny_model_dir, where):
    pytest.importorskip("pyarrow")
    photos, catalog = indexed(tmp_path, tiny_model_dir, count=300)
    common = ("--catalog", catalog, "--model", tiny_model_dir)
    exported = tmp_path / "good.parquet"
    assert pixgrep("export", "--parquet", exported, *common).returncode == 0
    pages = catalog.stat().st_size // 4096
    assert pages >= 12
    rng = np.random.default_rng(7)
    chosen = (2, pages - 1) if where == "first" else range(pages // 3, pages // 3 + 4)
    with open(catalog, "r+b") as f:  # garbage where another program or a failing disk wrote
        for number in chosen:
            f.seek(number * 4096)
            f.write(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    before = catalog.read_bytes()
    assert "damaged" in one_line_error(pixgrep("index", photos, *common))
    assert "damaged" in one_line_error(pixgrep("import", exported, *common))
    assert catalog.read_bytes() == before  # refused before writing a byte
    for args in (
        ("-n", "--in", photos, "a photo", *common),
        ("duplicates", *common),
        ("export", "--parquet", tmp_path / "again.parquet", *common),
        ("stats", "--catalog", catalog),
    ):
        one_line_or_answer(pixgrep(*args))
        assert catalog.read_bytes() == before, args


def test_import_into_a_read_only_catalog_is_one_line(tmp_path, tiny_model_dir):
    pytest.importorskip("pyarrow")
    photos, catalog = indexed(tmp_path, tiny_model_dir)
    common = ("--catalog", catalog, "--model", tiny_model_dir)
    exported = tmp_path / "rows.parquet"
    assert pixgrep("export", "--parquet", exported, *common).returncode == 0
    other = tmp_path / "other"
    other.mkdir()
    (photos / "0000.png").rename(other / "0000.png")  # the import brings a row the catalog lacks
    assert pixgrep("index", photos, *common).returncode == 0
    before = catalog.read_bytes()
    with read_only(catalog):
        assert "read-only" in one_line_error(pixgrep("import", exported, *common))
    assert catalog.read_bytes() == before


def full_check_ran(catalog: Path) -> bool:
    """Whether the check before a write read the whole file (PRAGMA quick_check) this time."""
    db = CatalogDB(catalog)
    statements: list[str] = []
    db.conn.set_trace_callback(statements.append)
    try:
        db.check_integrity()
    finally:
        db.conn.set_trace_callback(None)
        db.close()
    return any("quick_check" in statement for statement in statements)


def test_the_full_check_runs_only_after_an_unclean_end_or_a_change_from_outside(tmp_path, tiny_model_dir):
    photos, catalog = indexed(tmp_path, tiny_model_dir)
    assert not full_check_ran(catalog)  # the clean end of the index run left its stamp
    make_images(photos / "more", 2, size=40)
    assert pixgrep("index", photos, "--catalog", catalog, "--model", tiny_model_dir).returncode == 0
    assert not full_check_ran(catalog)  # one more photo: not read whole again

    outside = sqlite3.connect(catalog)  # another program writes
    with outside:
        outside.execute("INSERT INTO meta VALUES ('written by', 'another program')")
    outside.close()
    assert full_check_ran(catalog)
    assert not full_check_ran(catalog)  # the pass is remembered until the file changes

    killed = subprocess.run(  # a writer that ends without closing (kill -9, a crash, power loss)
        [
            sys.executable,
            "-c",
            "import os, sys; from pixgrep.catalog.db import CatalogDB; db = CatalogDB(sys.argv[1]); "
            "db.check_integrity(); db.write_batch([], {}, 'm'); os._exit(0)",
            str(catalog),
        ],
        capture_output=True,
        text=True,
    )
    assert killed.returncode == 0, killed.stderr
    assert full_check_ran(catalog)


def test_a_writer_still_open_is_not_read_again_but_others_check(tmp_path):
    catalog = tmp_path / "catalog.db"
    writer = CatalogDB(catalog)  # e.g. a server that indexes now and then
    statements: list[str] = []
    writer.conn.set_trace_callback(statements.append)
    writer.check_integrity()
    writer.write_batch([], {}, "m")
    statements.clear()
    writer.check_integrity()  # its own commits since: nothing to read
    assert not any("quick_check" in statement for statement in statements)
    assert full_check_ran(catalog)  # another process meets a writer that has not closed
    writer.close()
    assert not full_check_ran(catalog)  # closed cleanly


def test_read_only_catalog_file_refuses_index_in_one_line(tmp_path, tiny_model_dir):
    photos, catalog = indexed(tmp_path, tiny_model_dir)
    before = catalog.read_bytes()
    make_images(photos / "more", 2, size=40)
    with read_only(catalog):  # the folder stays writable, the file is not
        done = pixgrep("index", photos, "--catalog", catalog, "--model", tiny_model_dir)
        assert "read-only" in one_line_error(done)
    assert catalog.read_bytes() == before


def test_catalog_in_a_read_only_folder_can_be_searched(tmp_path, tiny_model_dir):
    home = tmp_path / "media"
    photos, catalog = indexed(home, tiny_model_dir)
    common = ("--catalog", catalog, "--model", tiny_model_dir)
    with read_only(home):
        found = pixgrep("-n", "--in", photos, "-f", "-k", "5", "a photo", *common)
        assert found.returncode == 0, found.stderr
        assert len(found.stdout.splitlines()) == 5
        stats = pixgrep("stats", "--json", "--catalog", catalog)
        assert stats.returncode == 0 and json.loads(stats.stdout)["images"] == 24, stats.stderr
        assert "read-only" in one_line_error(pixgrep("index", photos, *common))


def _as_schema_2(catalog: Path) -> None:
    """Make a catalog look as a pixgrep before the indexed_at index left it."""
    conn = sqlite3.connect(catalog)
    conn.executescript("DROP INDEX images_indexed_at; PRAGMA user_version = 2;")
    conn.close()


def test_an_older_catalog_gains_the_indexed_at_index(tmp_path, tiny_model_dir):
    photos, catalog = indexed(tmp_path, tiny_model_dir)
    _as_schema_2(Path(catalog))
    assert pixgrep("stats", "--catalog", catalog).returncode == 0
    conn = sqlite3.connect(catalog)
    plan = " ".join(
        str(row) for row in conn.execute("EXPLAIN QUERY PLAN SELECT id FROM images WHERE indexed_at >= 0")
    )
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert "images_indexed_at" in plan
    conn.close()


def test_a_read_only_older_catalog_is_still_searched(tmp_path, tiny_model_dir):
    home = tmp_path / "media"
    photos, catalog = indexed(home, tiny_model_dir)
    _as_schema_2(Path(catalog))
    with read_only(home):
        found = pixgrep(
            "-n", "--in", photos, "-f", "-k", "3", "a photo", "--catalog", catalog, "--model", tiny_model_dir
        )
        assert found.returncode == 0, found.stderr
        assert len(found.stdout.splitlines()) == 3


def test_six_processes_creating_one_catalog_all_succeed(tmp_path):
    """Each process opens the same new catalog through the API (what `index` does first; `stats`
    never creates one), released at once."""
    script = (
        "import sys, time\n"
        "import pixgrep\n"
        "go = float(sys.argv[2])\n"
        "time.sleep(max(0.0, go - time.time()))\n"
        "with pixgrep.open_catalog(sys.argv[1]) as catalog:\n"
        "    catalog.stats()\n"
    )
    import time

    failures = []
    for attempt in range(4):
        catalog = tmp_path / f"new-{attempt}.db"
        go = time.time() + 3.0  # after every interpreter has started
        runs = [
            subprocess.Popen(
                [sys.executable, "-c", script, str(catalog), str(go)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=cli_env(),
            )
            for _ in range(6)
        ]
        for run in runs:
            out, err = run.communicate(timeout=120)
            if run.returncode != 0:
                failures.append(err.strip())
        conn = sqlite3.connect(catalog)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)  # fully migrated
        conn.close()
    assert failures == []


def test_catalog_under_a_file_and_catalog_that_is_a_folder(tmp_path):
    (tmp_path / "plain-file").write_text("x")
    under_file = tmp_path / "plain-file" / "sub" / "catalog.db"
    line = one_line_error(pixgrep("index", tmp_path, "--catalog", under_file))  # index creates one
    assert "plain-file is a file, not a folder" in line and "File exists" not in line
    assert "no catalog at" in one_line_error(pixgrep("stats", "--catalog", under_file))
    (tmp_path / "folder.db").mkdir()
    assert "is a folder" in one_line_error(pixgrep("stats", "--catalog", tmp_path / "folder.db"))


def test_search_matrix_follows_the_catalog_files_mode(tmp_path, tiny_model_dir):
    photos, catalog = indexed(tmp_path, tiny_model_dir)
    catalog.chmod(0o644)
    done = pixgrep("-n", "--in", photos, "a photo", "--catalog", catalog, "--model", tiny_model_dir)
    assert done.returncode == 0, done.stderr
    matrices = list(Path(f"{catalog}.vectors").glob("*.matrix"))
    assert matrices and all(stat.S_IMODE(m.stat().st_mode) == 0o644 for m in matrices)
