"""The public Python API. The CLI, the web server and the eval commands all go through it.

import pixgrep
with pixgrep.open_catalog(model="pixgrep-mini") as cat:
    cat.index(["~/Photos"])
    for hit in cat.search("a kitten peeking from behind a corner", k=5):
        print(hit.score, hit.path)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pixgrep.catalog.db import CatalogDB
from pixgrep.models.base import Encoder
from pixgrep.records import ImageRecord, IndexSummary, SearchResult
from pixgrep.search.options import SearchOptions
from pixgrep.search.query import Term

__all__ = ["Catalog", "IndexSummary", "SearchOptions", "SearchResult", "open_catalog"]


class Catalog:
    """A catalog file plus the model used to index and query it (loaded on first need).

    This is the one door to the catalog for the CLI, the server and eval: they never open SQLite
    themselves, so a schema change stays inside `catalog/db.py` and this class.
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        model: str | None = None,
        *,
        encoder: Encoder | None = None,
    ):
        self._db = CatalogDB(path)
        self.model_name = model
        self._encoder = encoder

    @property
    def path(self) -> Path:
        return self._db.path

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            from pixgrep.models import load_encoder

            self._encoder = load_encoder(self.model_name)
        return self._encoder

    def index(
        self,
        roots: Sequence[str | os.PathLike],
        *,
        exclude: Sequence[str] = (),
        include_hidden: bool = False,
        progress: bool | Callable[[IndexSummary], None] = False,
        batch_size: int = 32,
    ) -> IndexSummary:
        """Bring the catalog up to date for every image under `roots` (new, changed, moved, gone).

        `batch_size` images go through the model per call and into the catalog per transaction.
        """
        from pixgrep.catalog.ingest import index_roots

        return index_roots(
            self._db,
            self.encoder,
            [Path(os.path.expanduser(r)) for r in roots],
            exclude=exclude,
            include_hidden=include_hidden,
            progress=progress,
            batch_size=batch_size,
        )

    def search(
        self,
        query: str | Sequence[str] | Sequence[Term],
        options: SearchOptions | None = None,
        **fields: Any,
    ) -> list[SearchResult]:
        """Best matches for a query in pixgrep's query language (see `search.query`; docs/search.md).

        `query` is one string, argv-style tokens, or a list of `search.query.Term`. Options come as a
        `SearchOptions`, as its fields by keyword (k=5, roots=[...], after="2019"), or both (the
        keywords win): see SearchOptions for each one.
        """
        from pixgrep.search.engine import search, to_terms

        return search(self._db, self.encoder, to_terms(query), SearchOptions.of(options, **fields))

    def search_vector(
        self, vector: np.ndarray, options: SearchOptions | None = None, **fields: Any
    ) -> list[SearchResult]:
        """Best matches for a ready query vector (the model's space); options as `search`."""
        from pixgrep.search.engine import search_vector

        return search_vector(self._db, self.encoder, vector, SearchOptions.of(options, **fields))

    def images(self, ids: Iterable[int]) -> dict[int, ImageRecord]:
        """The catalog's records of these image ids (ids it does not hold are absent)."""
        return self._db.images_by_id(ids)

    def images_at(self, paths: Iterable[str]) -> dict[str, ImageRecord]:
        """The catalog's records of these exact path spellings (paths it does not hold are absent)."""
        return self._db.images_by_path(list(paths))

    def vectors_of(self, records: Iterable[ImageRecord]) -> dict[int, np.ndarray]:
        """The stored vectors (float32, as stored: only nearly unit) of these images for the loaded
        model, by image id; images without one are absent."""
        model = self.encoder.model_id
        vectors: dict[int, np.ndarray] = {}
        for record in records:
            if record.error is None and record.content_hash:
                vector = self._db.vector_for_hash(record.content_hash, model)
                if vector is not None:
                    vectors[record.id] = np.asarray(vector, np.float32)
        return vectors

    def folders(self) -> dict[str, int]:
        """Folders holding readable images, with how many each holds directly."""
        return self._db.folder_counts()

    def prepare_search(self) -> None:
        """Bring the search structures for the loaded model up to date now (not on the next query)."""
        from pixgrep.search.matrix import load_matrix

        load_matrix(self._db, self.encoder.model_id)

    def stats(self) -> dict:
        return self._db.stats()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_catalog(
    path: str | os.PathLike | None = None,
    model: str | None = None,
    *,
    encoder: Encoder | None = None,
) -> Catalog:
    """Open (creating if needed) a catalog. `model` is a registry name or a model folder."""
    return Catalog(path, model, encoder=encoder)
