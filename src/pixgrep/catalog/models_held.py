"""Which models a catalog holds vectors of, and how each was named when its vectors were written
(a registry name or a model folder), so a command without --model can use the catalog's model."""

from __future__ import annotations

from pixgrep.catalog.db import CatalogDB, sqlite_errors

_KEY = "model_reference:"


def held_models(db: CatalogDB) -> list[str]:
    """The model ids with vectors in the catalog, sorted (a scan of the embeddings' key index)."""
    with sqlite_errors(db.path):
        return sorted(row[0] for row in db.conn.execute("SELECT DISTINCT model FROM embeddings"))


def stored_reference(db: CatalogDB, model_id: str) -> str | None:
    """How model `model_id` was named (--model) when the catalog last stored its vectors, if known."""
    return db.get_meta(_KEY + model_id)


def remember_reference(db: CatalogDB, model_id: str, reference: str) -> None:
    """Record how `model_id` is named; nothing on a read-only catalog or when already recorded."""
    if db.read_only or stored_reference(db, model_id) == reference:
        return
    db.set_meta(_KEY + model_id, reference)
