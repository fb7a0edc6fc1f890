"""The public Python API. The CLI, the web server and the eval commands all go through it.

import pixgrep
with pixgrep.open_catalog(model="pixgrep-mini") as cat:
    cat.index(["~/Photos"])
    for hit in cat.search("a kitten peeking from behind a corner", k=5):
        print(hit.score, hit.path)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from pixgrep.catalog.db import CatalogDB
from pixgrep.models.base import Encoder
from pixgrep.records import IndexSummary, SearchResult

__all__ = ["Catalog", "IndexSummary", "SearchResult", "open_catalog"]


class Catalog:
    """A catalog file plus the model used to index and query it (loaded on first need)."""

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        model: str | None = None,
        *,
        encoder: Encoder | None = None,
    ):
        self.db = CatalogDB(path)
        self.model_name = model
        self._encoder = encoder

    @property
    def path(self) -> Path:
        return self.db.path

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
        ray: str | bool = False,
    ) -> IndexSummary:
        """Bring the catalog up to date for every image under `roots` (new, changed, moved, gone).

        `batch_size` images go through the model per call and into the catalog per transaction.
        ray: run the model on a Ray cluster (True: a local Ray instance; or "auto", "ray://...",
        a GCS "host:port"); the walk and the catalog stay here (docs/distributed.md).
        """
        from pixgrep.catalog.ingest import index_roots

        if ray:
            from pixgrep.catalog.ray_ingest import index_roots_ray

            return index_roots_ray(
                self.db,
                self.encoder,
                [str(r) if "://" in str(r) else Path(os.path.expanduser(r)) for r in roots],  # s3://, gs://
                address=None if ray is True else ray,
                exclude=exclude,
                include_hidden=include_hidden,
                progress=progress,
                batch_size=batch_size,
            )
        return index_roots(
            self.db,
            self.encoder,
            [Path(os.path.expanduser(r)) for r in roots],
            exclude=exclude,
            include_hidden=include_hidden,
            progress=progress,
            batch_size=batch_size,
        )

    def search(
        self,
        query: str | Sequence,
        *,
        roots: Sequence[str | os.PathLike] | None = None,
        k: int = 10,
        offset: int = 0,
        threshold: float | None = None,
        after: str | None = None,
        before: str | None = None,
        exclude: Sequence[str] = (),
        include_hidden: bool = True,
    ) -> list[SearchResult]:
        """Best matches for a query in pixgrep's query language (see `search.query`; docs/search.md).

        `query` is one string, argv-style tokens, or a list of `search.query.Term`. after/before:
        capture-time bounds (YYYY, YYYY-MM, YYYY-MM-DD or ISO); exclude: globs; include_hidden=False
        leaves out dot-files and junk folders, as indexing does.
        """
        from pixgrep.search.engine import search

        return search(
            self.db,
            self.encoder,
            query,
            roots=roots,
            k=k,
            offset=offset,
            threshold=threshold,
            after=after,
            before=before,
            exclude=exclude,
            include_hidden=include_hidden,
        )

    def search_vector(
        self,
        vector: np.ndarray,
        *,
        roots: Sequence[str | os.PathLike] | None = None,
        k: int = 10,
        offset: int = 0,
        threshold: float | None = None,
        after: str | None = None,
        before: str | None = None,
    ) -> list[SearchResult]:
        """Best matches for a ready query vector (unit length, the model's space)."""
        from pixgrep.search.engine import search_vector

        return search_vector(
            self.db,
            self.encoder,
            vector,
            roots=roots,
            k=k,
            offset=offset,
            threshold=threshold,
            after=after,
            before=before,
        )

    def stats(self) -> dict:
        return self.db.stats()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_catalog(
    path: str | os.PathLike | None = None,
    model: str | None = None,
    *,
    encoder: Encoder | None = None,
) -> Catalog:
    """Open (creating if needed) a catalog. `model` is a registry name or a model folder."""
    return Catalog(path, model, encoder=encoder)
