"""Which models a catalog holds: kept in `models_held` by a trigger (schema 5), so a command without
--model never scans every stored vector's key to find out (seconds at 10M rows)."""

from __future__ import annotations

import sqlite3

import numpy as np

from pixgrep.catalog.db import MIGRATIONS, CatalogDB
from pixgrep.catalog.models_held import held_models


def _store(db: CatalogDB, path: str, digest: str, model: str) -> None:
    row = (path, 1, 1, digest, 1, 1, "JPEG", None, None)
    db.write_batch([row], {digest: np.ones(4, np.float32) / 2}, model)


def test_models_come_and_go_with_their_vectors(tmp_path):
    db = CatalogDB(tmp_path / "c.db")
    assert held_models(db) == []
    _store(db, "/p/a.jpg", "a" * 40, "model-a")
    _store(db, "/p/b.jpg", "b" * 40, "model-b")
    assert held_models(db) == ["model-a", "model-b"]
    db.remove_images(["/p/b.jpg"])  # model-b's only vector goes with its file
    assert held_models(db) == ["model-a"]
    assert [r[0] for r in db.conn.execute("SELECT model FROM models_held")] == ["model-a"]
    db.close()


def test_an_older_catalog_learns_its_models_once(tmp_path):
    path = tmp_path / "c.db"
    db = CatalogDB(path)
    _store(db, "/p/a.jpg", "a" * 40, "model-a")
    db.close()
    conn = sqlite3.connect(path)  # as schema 4 left it: no table, no trigger
    conn.executescript(
        "DROP TRIGGER models_held_follow_embeddings; DROP TABLE models_held; PRAGMA user_version = 4;"
    )
    conn.close()
    db = CatalogDB(path)
    assert db.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert held_models(db) == ["model-a"]
    _store(db, "/p/c.jpg", "c" * 40, "model-c")  # the trigger keeps it from now on
    assert held_models(db) == ["model-a", "model-c"]
    db.conn.executescript("DROP TRIGGER models_held_follow_embeddings; DROP TABLE models_held;")
    assert held_models(db) == ["model-a", "model-c"]  # without the table (read-only, older): a scan
    db.close()
