"""Which models a catalog holds vectors of, and how each was named when its vectors were written
(a registry name or a model folder), so a command without --model can use the catalog's model."""

from __future__ import annotations

import sqlite3

from pixgrep.catalog.db import CatalogDB, sqlite_errors

_KEY = "model_reference:"


def held_models(db: CatalogDB) -> list[str]:
    """The model ids with vectors in the catalog, sorted. The `models_held` table (schema 5, kept by
    a trigger on every stored vector) names the candidates, and each is confirmed, since removing
    images can leave a model none (`CatalogDB.remove_images` then drops its name). An older
    read-only catalog without the table is scanned."""
    with sqlite_errors(db.path):
        try:
            named = [row[0] for row in db.conn.execute("SELECT model FROM models_held")]
        except sqlite3.OperationalError as exc:  # schema < 5, read-only: no such table
            if "no such table" not in str(exc):
                raise
            return sorted(row[0] for row in db.conn.execute("SELECT DISTINCT model FROM embeddings"))
        return sorted(model for model in named if _has_vectors(db, model))


def _has_vectors(db: CatalogDB, model: str) -> bool:
    """One stored vector of `model` (its rows are spread over the key: the scan stops at the first)."""
    found = db.conn.execute("SELECT 1 FROM embeddings WHERE model = ? LIMIT 1", (model,)).fetchone()
    return found is not None


def stored_reference(db: CatalogDB, model_id: str) -> str | None:
    """How model `model_id` was named (--model) when the catalog last stored its vectors, if known."""
    return db.get_meta(_KEY + model_id)


def remember_reference(db: CatalogDB, model_id: str, reference: str) -> None:
    """Record how `model_id` is named; nothing on a read-only catalog or when already recorded."""
    if db.read_only or stored_reference(db, model_id) == reference:
        return
    db.set_meta(_KEY + model_id, reference)
