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
