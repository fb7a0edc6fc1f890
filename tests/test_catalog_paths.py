"""--catalog: a file that is not a catalog is called that, and commands that only read a catalog
never create one (nor its folder) at a mistyped path."""

from __future__ import annotations

import pytest

from pixgrep.cli import main


@pytest.mark.parametrize("content", [b"just some notes\n", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(500)])
def test_a_file_that_is_not_sqlite_is_not_a_pixgrep_catalog(tmp_path, capsys, content):
    path = tmp_path / "notes.db"
    path.write_bytes(content)
    assert main(["stats", "--catalog", str(path)]) == 2
    err = capsys.readouterr().err
    assert "is not a pixgrep catalog" in err and "damaged" not in err
    assert path.read_bytes() == content  # untouched


@pytest.mark.parametrize(
    "command",
    [
        ["stats"],
        ["-n", "a dog", "--in", "."],
        ["duplicates"],
        ["export-vectors", "--parquet", "out.parquet"],
    ],
)
def test_read_only_commands_never_create_a_catalog(tmp_path, capsys, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "new" / "dir" / "x.db"
    assert main([*command, "--catalog", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no catalog at" in err[0], err
    assert not (tmp_path / "new").exists()
    assert not (tmp_path / "out.parquet").exists()


def test_a_missing_catalog_in_an_existing_folder_is_not_created_either(tmp_path, capsys):
    missing = tmp_path / "x.db"
    assert main(["stats", "--catalog", str(missing)]) == 2
    assert not missing.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_second_connection_keeps_the_first_ones_wal_for_other_processes(tmp_path):
    """A server holds a connection while its index runs open more. Reading the catalog's header
    again through a descriptor of its own would drop this process's POSIX locks on the file
    (SQLite's too), and another process closing the catalog would then delete the -wal and -shm
    files the open connection still uses (found by a security pass: the server then reported its
    sound catalog as damaged)."""
    import subprocess
    import sys
    from pathlib import Path

    from pixgrep.catalog.db import CatalogDB

    path = tmp_path / "c.db"
    held = CatalogDB(path)
    held.conn.execute("CREATE TABLE IF NOT EXISTS note (x)")
    held.conn.execute("INSERT INTO note VALUES (1)")
    held.conn.commit()
    CatalogDB(path).close()  # another connection in this process, as an index run makes
    other = (  # opens, reads the file (a bare SELECT 1 would not) and closes: the last one out
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        "c.execute('SELECT count(*) FROM sqlite_master').fetchall(); c.close()"
    )
    subprocess.run([sys.executable, "-c", other, str(path)], check=True)
    assert Path(f"{path}-wal").exists() and Path(f"{path}-shm").exists()
    held.conn.execute("INSERT INTO note VALUES (2)")
    held.conn.commit()
    held.close()
    assert CatalogDB(path).conn.execute("SELECT count(*) FROM note").fetchone()[0] == 2
