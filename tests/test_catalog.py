"""The SQLite catalog: refusing bad files untouched, atomic batches, range scans, removal."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from pixgrep.catalog.db import CatalogDB
from pixgrep.catalog.paths import default_catalog_path
from pixgrep.errors import PixgrepError


def row(path: str, digest: str, error: str | None = None) -> tuple:
    return (path, 10, 20, digest, 4, 3, "JPEG", None, error)


def unit(seed: int, dim: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def test_corrupt_file_is_refused_and_left_untouched(tmp_path: Path):
    path = tmp_path / "catalog.db"
    garbage = b"SQLite format 3\x00" + bytes(range(256)) * 20
    path.write_bytes(garbage)
    with pytest.raises(PixgrepError, match="cannot open catalog"):
        CatalogDB(path)
    assert path.read_bytes() == garbage
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog.db"]


def test_another_programs_database_is_refused_and_left_untouched(tmp_path: Path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(PixgrepError, match="not a pixgrep catalog"):
        CatalogDB(path)
    assert path.read_bytes() == before


def test_newer_schema_is_refused(tmp_path: Path):
    path = tmp_path / "catalog.db"
    CatalogDB(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    with pytest.raises(PixgrepError, match="newer pixgrep"):
        CatalogDB(path)


def _page_size(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA page_size").fetchone()[0])
    finally:
        conn.close()


def test_a_new_catalog_has_large_pages_and_an_older_one_keeps_its_own(tmp_path: Path, monkeypatch):
    from pixgrep.catalog import db as db_module

    CatalogDB(tmp_path / "new.db").close()
    assert _page_size(tmp_path / "new.db") == db_module.PAGE_SIZE == 16384
    monkeypatch.setattr(db_module, "PAGE_SIZE", 4096)  # what an older pixgrep made
    old = CatalogDB(tmp_path / "old.db")
    old.write_batch([row("/p/a.jpg", "h1")], {"h1": unit(1)}, "m")
    old.close()
    monkeypatch.undo()
    reopened = CatalogDB(tmp_path / "old.db")
    reopened.write_batch([row("/p/b.jpg", "h2")], {"h2": unit(2)}, "m")
    assert np.allclose(reopened.vector_for_hash("h1", "m"), unit(1), atol=1e-3)
    assert np.allclose(reopened.vector_for_hash("h2", "m"), unit(2), atol=1e-3)
    reopened.close()
    assert _page_size(tmp_path / "old.db") == 4096


def test_default_path_is_in_the_user_data_folder(monkeypatch):
    monkeypatch.delenv("PIXGREP_CATALOG", raising=False)
    path = default_catalog_path()
    assert path.name == "catalog.db" and "pixgrep" in path.parts


def test_open_catalog_honours_pixgrep_catalog_as_the_command_does(tmp_path, monkeypatch):
    import pixgrep

    monkeypatch.setenv("PIXGREP_CATALOG", str(tmp_path / "env" / "mine.db"))
    with pixgrep.open_catalog() as catalog:
        assert catalog.path == tmp_path / "env" / "mine.db"
    assert (tmp_path / "env" / "mine.db").is_file()
    with pixgrep.open_catalog(tmp_path / "given.db") as catalog:  # an explicit path wins
        assert catalog.path == tmp_path / "given.db"


def test_write_batch_is_all_or_nothing(tmp_path: Path):
    db = CatalogDB(tmp_path / "c.db")
    db.write_batch([row("/p/a.jpg", "h1")], {"h1": unit(1)}, "m")
    generation = db.generation()
    with pytest.raises(sqlite3.Error):
        db.write_batch([row("/p/b.jpg", "h2"), ("/p/c.jpg", "too", "short")], {"h2": unit(2)}, "m")
    assert set(db.images_by_path()) == {"/p/a.jpg"}
    assert db.hashes_with_vectors_among("m", ["h1", "h2"]) == {"h1"}
    assert db.generation() == generation
    db.close()


def test_write_batch_updates_rows_in_place_and_bumps_generation(tmp_path: Path):
    db = CatalogDB(tmp_path / "c.db")
    db.write_batch([row("/p/a.jpg", "h1")], {"h1": unit(1)}, "m")
    first = db.images_by_path(["/p/a.jpg"])["/p/a.jpg"]
    generation = db.generation()
    db.write_batch([row("/p/a.jpg", "h2")], {"h2": unit(2)}, "m")
    second = db.images_by_path(["/p/a.jpg"])["/p/a.jpg"]
    assert second.id == first.id and second.content_hash == "h2"
    assert db.generation() == generation + 1
    assert np.allclose(db.vector_for_hash("h2", "m"), unit(2), atol=1e-3)
    db.close()


def test_images_under_is_a_folder_boundary(tmp_path: Path):
    db = CatalogDB(tmp_path / "c.db")
    paths = ["/photos/a.jpg", "/photos/sub/b.jpg", "/photos2/c.jpg", "/photos-x/d.jpg", "/photo/e.jpg"]
    db.write_batch([row(p, f"h{i}") for i, p in enumerate(paths)], {}, "m")
    assert set(db.images_under("/photos")) == {"/photos/a.jpg", "/photos/sub/b.jpg"}
    assert set(db.images_under("/photos/")) == {"/photos/a.jpg", "/photos/sub/b.jpg"}
    assert set(db.images_under("/")) == set(paths)
    db.close()


def test_remove_images_keeps_vectors_still_in_use(tmp_path: Path):
    db = CatalogDB(tmp_path / "c.db")
    db.write_batch(
        [row("/p/a.jpg", "shared"), row("/p/b.jpg", "shared"), row("/p/c.jpg", "own")],
        {"shared": unit(1), "own": unit(2)},
        "m",
    )
    assert db.remove_images(["/p/a.jpg", "/p/c.jpg", "/p/never.jpg"]) == 2
    assert set(db.images_by_path()) == {"/p/b.jpg"}
    assert db.hashes_with_vectors_among("m", ["shared", "own"]) == {"shared"}
    assert db.remove_images([]) == 0
    db.close()


def test_stats_counts_images_errors_vectors_and_bytes(tmp_path: Path):
    db = CatalogDB(tmp_path / "c.db")
    db.write_batch([row("/p/a.jpg", "h1"), row("/p/bad.jpg", "h2", "cannot decode")], {"h1": unit(1)}, "m")
    stats = db.stats()
    assert (stats["images"], stats["errors"], stats["vectors"]) == (1, 1, {"m": 1})
    assert stats["bytes"] > 0 and stats["catalog"] == str(tmp_path / "c.db")
    db.close()


def test_opening_tries_again_when_sqlite_says_locked_without_waiting(tmp_path, monkeypatch):
    """SQLite answers "database is locked" at once where waiting could deadlock (two processes
    creating one catalog): the open is tried again, and only a lock that stays is one line."""
    from pixgrep.catalog import db as dbmod
    from pixgrep.errors import PixgrepError

    real_open, calls = dbmod.CatalogDB._open, []

    def flaky_open(self):
        calls.append(1)
        if len(calls) <= 2:
            self.conn = sqlite3.connect(":memory:")
            raise sqlite3.OperationalError("database is locked")
        real_open(self)

    monkeypatch.setattr(dbmod, "OPEN_RETRY_PAUSES", (0.0, 0.0, 0.0, None))
    monkeypatch.setattr(dbmod.CatalogDB, "_open", flaky_open)
    opened = dbmod.CatalogDB(tmp_path / "c.db")
    assert len(calls) == 3 and opened.conn.execute("SELECT COUNT(*) FROM images").fetchone() == (0,)
    opened.conn.close()

    def locked(self):
        calls.append(1)
        raise sqlite3.OperationalError("database is locked")

    calls.clear()
    monkeypatch.setattr(dbmod.CatalogDB, "_open", locked)
    with pytest.raises(PixgrepError, match="busy .*try again"):
        dbmod.CatalogDB(tmp_path / "c.db")
    assert len(calls) == 4
