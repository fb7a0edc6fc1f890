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
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pixgrep.catalog.db import CatalogDB
from pixgrep.models.base import Encoder
from pixgrep.records import ImageRecord, IndexSummary, SearchResult, SearchResults
from pixgrep.search.options import SearchOptions, string_list
from pixgrep.search.query import Term

if TYPE_CHECKING:
    from pixgrep.catalog.metadata import ImageMeta

__all__ = ["Catalog", "IndexSummary", "SearchOptions", "SearchResult", "open_catalog"]


class Catalog:
    """A catalog file plus the model used to index and query it (loaded on first need).

    This is the one door to the catalog for the CLI, the server and eval: they never open SQLite
    themselves, so a schema change stays inside `catalog/` (all SQL runs there) and this class.
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        model: str | None = None,
        *,
        encoder: Encoder | None = None,
        lang: str | None = None,
        create: bool = True,
    ):
        self._db = CatalogDB(path, create=create)
        self.model_name = model
        self._encoder = encoder
        self.lang = lang  # query language for models that take one (NLLB); None: models.languages

    @property
    def path(self) -> Path:
        return self._db.path

    @property
    def read_only(self) -> bool:
        """Whether this catalog was opened read-only (its file or folder is not writable)."""
        return self._db.read_only

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            from pixgrep.models import load_encoder

            self._encoder = load_encoder(self.model_name or self._catalog_model(), language=self.lang)
        return self._encoder

    def held_model(self) -> str | None:
        """The rule for a command without a model, in one place: the model id of the catalog's
        vectors when it holds one model; None when it holds none (the registry default is used);
        several are refused with their names (PixgrepError)."""
        from pixgrep.catalog.models_held import held_models
        from pixgrep.errors import PixgrepError

        held = held_models(self._db)
        if len(held) > 1:
            names = f"{len(held)} models ({', '.join(held)})"
            raise PixgrepError(f"the catalog holds vectors of {names}; name one with --model")
        return held[0] if held else None

    def _catalog_model(self) -> str | None:
        """The model reference to load when none is named (held_model's model, found again by how
        it was named when its vectors were stored); None for the registry default."""
        from pixgrep.catalog.models_held import stored_reference
        from pixgrep.errors import PixgrepError
        from pixgrep.models.registry import MODELS

        model_id = self.held_model()
        if model_id is None:
            return None
        name = model_id.split("@", 1)[0]  # a built model's id is NAME@BUILD
        reference = stored_reference(self._db, model_id) or (name if name in MODELS else None)
        if reference is None:
            raise PixgrepError(
                f"the catalog holds vectors of model {model_id}, which is not in the registry; "
                "name its folder with --model"
            )
        return reference

    def _remember_model(self) -> None:
        """Record how the model of the vectors just stored was named, for commands without --model."""
        from pixgrep.catalog.models_held import remember_reference

        if self.model_name is None or self._db.read_only:
            return
        name = os.fspath(self.model_name)
        if os.path.isdir(os.path.expanduser(name)):  # a folder: found again from any working folder
            name = os.path.realpath(os.path.expanduser(name))
        remember_reference(self._db, self.encoder.model_id, name)

    def index(
        self,
        roots: Sequence[str | os.PathLike],
        *,
        exclude: Sequence[str] = (),
        include_hidden: bool = False,
        progress: bool | Callable[[IndexSummary], None] = False,
        batch_size: int = 32,
        ray: str | bool = False,
        ocr: bool | None = None,
        wait: bool = True,
    ) -> IndexSummary:
        """Bring the catalog up to date for every image under `roots` (new, changed, moved, gone).

        `batch_size` images go through the model per call and into the catalog per transaction.
        ray: run the model on a Ray cluster (True: a local Ray instance; or "auto", "ray://...",
        a GCS "host:port"); the walk and the catalog stay here (docs/distributed.md).
        ocr: True reads text in the pictures from now on (remembered by the catalog), False stops,
        None as the catalog remembers (docs/words.md).
        wait=False: when another index run is writing this catalog, raise IndexRunBusy (a
        PixgrepError) at once instead of waiting for it to finish.
        """
        roots = _root_list(roots)
        summary = self._index_images(roots, exclude, include_hidden, progress, batch_size, ray, wait)
        self._remember_model()
        from pixgrep.catalog.ocr_pass import after_index  # words: OCR and the word index

        summary.text = after_index(self._db, roots, ocr=ocr, progress=progress)
        return summary

    def _index_images(self, roots, exclude, include_hidden, progress, batch_size, ray, wait) -> IndexSummary:
        from pixgrep.catalog.ingest import index_roots

        if ray:
            from pixgrep.catalog.ray_ingest import index_roots_ray

            return index_roots_ray(
                self._db,
                self.encoder,
                [str(r) if "://" in str(r) else Path(os.path.expanduser(r)) for r in roots],  # s3://, gs://
                address=None if ray is True else ray,
                exclude=exclude,
                include_hidden=include_hidden,
                progress=progress,
                batch_size=batch_size,
            )
        return index_roots(
            self._db,
            self.encoder,
            [Path(os.path.expanduser(r)) for r in roots],
            exclude=exclude,
            include_hidden=include_hidden,
            progress=progress,
            batch_size=batch_size,
            wait=wait,
        )

    def search(
        self,
        query: str | os.PathLike | Sequence[str] | Sequence[Term] | None,
        options: SearchOptions | None = None,
        *,
        catalog_lock: AbstractContextManager | None = None,
        **fields: Any,
    ) -> SearchResults:
        """Best matches for a query in pixgrep's query language (see `search.query`; docs/search.md).

        `query` is one string, argv-style tokens, or a list of `search.query.Term`. Options come as a
        `SearchOptions`, as its fields by keyword (k=5, roots=[...], after="2019"), or both (the
        keywords win): see SearchOptions for each one. An empty query (None, "", []) with a metadata
        or date filter (near=, camera=, tag=, place=, after=, before=) lists the matching images,
        newest first, without loading the model. words="auto" ranks a text query by the word index
        (text in pictures, names, keywords) and CLIP together, "only" by words alone, "off" by CLIP
        alone (search/words.py). lang="de": the language of this search's text, for models told
        it (NLLB-CLIP; default: the catalog's `lang`, else models.languages).

        The results are a list with `notes` (e.g. a query text cut at the model's context
        length). catalog_lock: a lock a caller shares this Catalog under (the server's); it is
        held around each catalog read only, so ranking and duplicate folding run outside it.
        """
        from pixgrep.search.engine import search, to_terms

        options = SearchOptions.of(options, **fields)
        empty = (
            query is None
            or (isinstance(query, str) and not query.strip())
            or (isinstance(query, Sequence) and not isinstance(query, str) and not list(query))
        )
        if empty and options.lists_without_query():
            return search(self._db, self._encoder, [], options, catalog_lock)  # type: ignore[arg-type]
        from pixgrep.search.words import search_with_words  # words and meaning together

        # options.lang: this search's query language, on a view of the shared encoder (NLLB only)
        encoder = lambda: self.encoder.in_language(options.lang)  # noqa: E731
        return search_with_words(self._db, encoder, to_terms(query or ""), options, catalog_lock)

    def search_vector(
        self, vector: np.ndarray, options: SearchOptions | None = None, **fields: Any
    ) -> SearchResults:
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

    def duplicates(
        self, roots: Sequence[str | os.PathLike] | None = None, threshold: float | None = None
    ) -> list[list[ImageRecord]]:
        """Groups of near-identical images (below `roots`, if given) for the loaded model: same
        content, or image cosine >= threshold (default: the model's measured one, else identical
        files only; search/dedup.py). Each group oldest file first."""
        from pixgrep.search.dedup import catalog_duplicates

        under = None if roots is None else [os.path.abspath(os.path.expanduser(r)) for r in _root_list(roots)]
        return catalog_duplicates(self._db, self.encoder.model_id, under, threshold)

    def folders(self) -> dict[str, int]:
        """Folders holding readable images, with how many each holds directly."""
        return self._db.folder_counts()

    def holds_under(self, folder: str) -> bool:
        """Whether the catalog holds a readable image below `folder` (an absolute path)."""
        return self._db.holds_under(folder)

    def prepare_search(
        self,
        *,
        progress: bool = False,
        large_only: bool = False,
        open_graph: bool = False,
        relayout_words: bool = True,
    ) -> None:
        """Bring the search structures for the loaded model up to date now (not on the next query);
        progress: a bar while an ANN index is built; large_only: skip catalogs too small for one;
        open_graph: open the ANN graph as well (a process that will ask many questions).
        The word index too (built whole after an import into a catalog that had none, or when an
        older pixgrep built it with other prefix lengths, unless relayout_words is False)."""
        from pixgrep.catalog import words
        from pixgrep.search.ann import prepare

        prepare(
            self._db, self.encoder.model_id, progress=progress, large_only=large_only, open_graph=open_graph
        )
        if not self._db.read_only:
            words.prepare(self._db, progress=progress, relayout=relayout_words)

    def search_index(self) -> dict | None:
        """How the loaded model's search index stands and how the last search in this process ran
        (`last_method`: "ann" or "exact"); see docs/search.md. None before any search."""
        from pixgrep.search.matrix_store import cached_matrix

        matrix = cached_matrix(self._db.path, self.encoder.model_id)
        return matrix.describe() if matrix is not None else None

    def facets(self, options: SearchOptions | None = None, *, limit: int = 20, **fields: Any) -> dict:
        """The most common places, countries, cameras, years and tags with image counts, over the
        images that the options' metadata filters (near, camera, tag, place) let through."""
        from pixgrep.catalog.metadata import facets
        from pixgrep.search.filters import allowed_for

        options = SearchOptions.of(options, **fields)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            from pixgrep.errors import PixgrepError

            raise PixgrepError(f"limit must be a whole number from 1 to 10000 (got {limit!r})")
        return facets(self._db, allowed_for(self._db, options), limit=limit)

    def photo_metadata(self, ids: Iterable[int]) -> dict[int, ImageMeta]:
        """Camera, lens, place, position, title, description and keywords of these images, by id
        (images indexed before metadata existed are absent until the next index run)."""
        from pixgrep.catalog.metadata import meta_by_id

        return meta_by_id(self._db, ids)

    def stats(self) -> dict:
        """Counts and size of the catalog, including how many images have a position, a place, a
        camera and keywords."""
        from pixgrep.catalog.metadata import counts
        from pixgrep.catalog.words import counts as word_counts
        from pixgrep.search.matrix_store import describe_index

        stats = {**self._db.stats(), **counts(self._db), **word_counts(self._db)}
        stats["search_index"] = {
            model: describe_index(self._db.path, model) for model in stats["vectors"] or {}
        }
        return stats

    # -- embeddings in and out as Parquet (catalog/parquet.py, docs/distributed.md) -------------

    def vector_models(self) -> list[str]:
        """The model ids the catalog holds vectors of."""
        from pixgrep.catalog.parquet import catalog_models

        return catalog_models(self._db)

    def export_parquet(self, out: str | os.PathLike, model: str) -> int:
        """Write every image with a vector of model id `model` to the Parquet file `out`; rows written."""
        from pixgrep.catalog.parquet import export_parquet

        return export_parquet(self._db, out, model)

    def import_parquet(
        self,
        inputs: Sequence[str | os.PathLike],
        *,
        batch_size: int = 10_000,
        progress: Callable[[Any], None] | None = None,
    ) -> Any:
        """Store the rows of Parquet files / clip-retrieval folders as images with vectors of this
        catalog's model (refused with PixgrepError for another model or vector size); an
        ImportSummary. Resumable: one transaction per batch."""
        from pixgrep.catalog.parquet import find_sources, import_sources

        sources = find_sources(inputs)
        encoder = self.encoder
        summary = import_sources(
            self._db, sources, encoder.model_id, encoder.dim, batch=batch_size, progress=progress
        )
        self._remember_model()
        return summary

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _root_list(roots: object) -> list[str]:
    """Folders given to the API: one (a string, bytes or a path: not the letters of its name) or
    a list of them; anything else is one PixgrepError."""
    return list(string_list(roots, "folders"))


def open_catalog(
    path: str | os.PathLike | None = None,
    model: str | None = None,
    *,
    encoder: Encoder | None = None,
    lang: str | None = None,
    create: bool = True,
) -> Catalog:
    """Open (creating if needed) a catalog. `model` is a registry name or a model folder. `lang`:
    the language of text queries (de, zh, deu_Latn, ...) for models whose text tower takes one
    (NLLB-CLIP); default: $PIXGREP_LANG, else the locale, else English. create=False: a missing
    catalog is refused (PixgrepError) instead of made, as commands that only read it want."""
    return Catalog(path, model, encoder=encoder, lang=lang, create=create)
