"""From a query to ranked results: the one path every search takes.

    terms (search/query.py) -> term vectors (here) -> plan (search/plan.py: fusion, all-of parts,
    tone, notes) -> scope (search/scope.py: folders, dates, metadata, exclusions) -> rank
    (search/rank.py over search/topk.py: exact or ANN; duplicate folding) -> SearchResults

Each term is encoded as cheaply as possible: an image that is already in the catalog (unchanged
on disk) reuses its stored vector, so `pixgrep ./ref.jpg` runs no model at all, and the text tower
only loads when there is text. `catalog_lock` (the server's lock on its catalog connection) is
held around each catalog read; encoding, scoring and folding run outside it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import TYPE_CHECKING, cast

import numpy as np

from pixgrep.catalog.db import CatalogDB
from pixgrep.errors import PixgrepError
from pixgrep.models.base import Encoder
from pixgrep.records import SearchResult, SearchResults
from pixgrep.search import rank
from pixgrep.search.matrix import VectorMatrix
from pixgrep.search.matrix_store import load_matrix
from pixgrep.search.options import SearchOptions
from pixgrep.search.plan import QueryPlan, plan_query
from pixgrep.search.query import Term, bytes_term, parse_query
from pixgrep.search.scope import Scope, scope_for

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["download_terms", "plan_for", "search", "search_vector", "to_terms"]


def _term_vectors(
    db: CatalogDB, encoder: Encoder, terms: list[Term], lock: AbstractContextManager
) -> tuple[list[np.ndarray | None], set[int]]:
    """Each term's vector (see _encode); `lock` is held around the catalog reads only."""
    if not terms:
        raise PixgrepError("empty query: give some text, an image path or an image URL")
    model = encoder.model_id
    vectors: list[np.ndarray | None] = [None] * len(terms)
    own_ids: set[int] = set()
    # Cheap checks and lookups first (ids, files, downloads), so a bad term fails before a tower loads.
    images: list[tuple[int, Image.Image]] = []  # (term index, picture) still to run through the tower
    for i, term in enumerate(terms):
        if term.kind == "text":
            continue
        if term.kind == "path":
            with lock:
                stored, image_id = _stored_vector_for_path(db, model, str(term.value))
            if image_id is not None:
                own_ids.add(image_id)
            if stored is not None:
                vectors[i] = stored
            else:
                images.append((i, _open(term.value, str(term.value))))
        elif term.kind == "url":
            from pixgrep.search.fetch import fetch_image_bytes

            images.append((i, _open(fetch_image_bytes(str(term.value)), str(term.value))))
        elif term.kind == "bytes":
            images.append((i, _open(cast(bytes, term.value), term.source or "the uploaded image")))
        elif term.kind == "image_id":
            with lock:
                vectors[i] = _stored_vector_for_id(db, model, term.value)
            own_ids.add(cast(int, term.value))
        elif term.kind == "vector":
            vectors[i] = _checked_vector(term.value, encoder.dim)
        else:
            raise PixgrepError(f"unknown query term kind {term.kind!r}")
    texts = [(i, t) for i, t in enumerate(terms) if t.kind == "text"]
    if texts:  # one batch, and the only place the text tower is touched
        encoded = encoder.encode_texts([str(t.value) for _, t in texts])
        for (i, _), row in zip(texts, encoded, strict=True):
            vectors[i] = row
    if images:
        encoded = encoder.encode_images([image for _, image in images])
        for (i, _), row in zip(images, encoded, strict=True):
            vectors[i] = row

    return vectors, own_ids


def _unit_rows(vectors: list[np.ndarray | None]) -> np.ndarray:
    """The term vectors as unit rows (stored float16 vectors are only nearly unit)."""
    first = np.asarray(vectors[0], np.float64)
    rows = np.zeros((len(vectors), first.shape[0]), np.float64)
    for i, vector in enumerate(vectors):
        vector = np.asarray(vector, np.float64)
        if vector.shape != first.shape:
            raise PixgrepError(f"query terms have different sizes ({vector.shape[0]} vs {first.shape[0]})")
        norm = np.linalg.norm(vector)
        if norm > 0:
            rows[i] = vector / norm
    return rows


def _stored_vector_for_path(db: CatalogDB, model: str, path: str) -> tuple[np.ndarray | None, int | None]:
    """The catalog's vector for an image file, if the catalog has it and the file is unchanged."""
    spellings = list(dict.fromkeys([path, os.path.realpath(path)]))
    for spelling, record in db.images_by_path(spellings).items():
        if record.error is not None:
            continue
        try:
            stat = os.stat(spelling)
        except OSError:
            continue
        if stat.st_size != record.size or stat.st_mtime_ns != record.mtime_ns:
            return None, record.id  # changed since indexing: encode it fresh
        vector = db.vector_for_hash(record.content_hash, model)
        return (np.asarray(vector, np.float32) if vector is not None else None), record.id
    return None, None


def _stored_vector_for_id(db: CatalogDB, model: str, image_id: object) -> np.ndarray:
    if isinstance(image_id, bool) or not isinstance(image_id, int):
        raise PixgrepError(f"image id {image_id!r} is not a number")
    key = image_id
    record = db.images_by_id([key]).get(key)
    if record is None:
        raise PixgrepError(f"image id {key} is not in the catalog")
    vector = db.vector_for_hash(record.content_hash, model)
    if vector is None:
        raise PixgrepError(f"image id {key} ({record.path}) has no vector for model {model}")
    return np.asarray(vector, np.float32)


def _checked_vector(value: object, dim: int) -> np.ndarray:
    try:
        vector = np.asarray(value, np.float32).reshape(-1)
    except (TypeError, ValueError):
        raise PixgrepError("a query vector must be a list of numbers") from None
    if vector.shape[0] != dim:
        raise PixgrepError(f"a query vector must have {dim} numbers, this one has {vector.shape[0]}")
    if not np.all(np.isfinite(vector)):
        raise PixgrepError("a query vector must hold only finite numbers")
    return vector


def _open(source: object, label: str) -> Image.Image:
    from pixgrep.images.decode import ImageDecodeError, open_image

    try:
        return open_image(cast(str | bytes, source))
    except ImageDecodeError as exc:  # its kind kept: a server answers 415, or 413 for a bomb
        raise type(exc)(f"{label}: {exc}") from None


def download_terms(terms: list[Term]) -> list[Term]:
    """The same terms with every image URL downloaded (a bytes term naming its URL). The server calls
    this before it takes the catalog lock, so a slow remote server never holds up other requests."""
    from pixgrep.search.fetch import fetch_image_bytes

    return [
        bytes_term(fetch_image_bytes(str(t.value)), t.weight, source=str(t.value)) if t.kind == "url" else t
        for t in terms
    ]


def to_terms(query: str | os.PathLike | Sequence[str] | Sequence[Term]) -> list[Term]:
    """Terms from one query string, an image file's path, argv-style tokens, or ready Terms (see
    search.query)."""
    if isinstance(query, str):
        return parse_query(query)
    if isinstance(query, Term):
        return [query]
    if isinstance(query, os.PathLike):  # an image file
        return parse_query([os.fspath(query)])
    if isinstance(query, bytes | bytearray | memoryview) or not isinstance(query, Sequence):
        raise PixgrepError(
            f"a query is a string, a list of strings or a list of Terms, not {type(query).__name__} "
            "(an image in memory: [pixgrep.search.query.bytes_term(data)])"
        )
    items = list(query)
    if items and all(isinstance(item, Term) for item in items):
        return items  # type: ignore[return-value]
    if any(isinstance(item, Term) for item in items):
        raise PixgrepError("a query is either a list of Terms or a list of strings, not both")
    if not all(isinstance(item, str | os.PathLike) for item in items):
        raise PixgrepError("a query is a string, a list of strings or a list of Terms")
    return parse_query([os.fspath(cast("str | os.PathLike[str]", item)) for item in items])


def search(
    db: CatalogDB,
    encoder: Encoder,
    terms: Sequence[Term],
    options: SearchOptions,
    catalog_lock: AbstractContextManager | None = None,
) -> SearchResults:
    """Best matches for a query's terms, best first, as `options` asks (see SearchOptions).

    Images the query is made of (an image term that is in the catalog, an image_id term) are left
    out of the results, as rclip does: the best match for ./cat.jpg is not ./cat.jpg itself.
    No terms with a metadata or date filter set: the matching images, newest first (no model run).
    """
    lock = catalog_lock or contextlib.nullcontext()
    terms = list(terms)
    if not terms and options.lists_without_query():
        with lock:
            return list_matching(db, options)
    if not terms:
        raise PixgrepError("empty query: give some text, an image path or an image URL")
    plan, own_ids = plan_for(db, encoder, terms, options, lock)
    return _ranked(db, encoder, plan, options, own_ids, lock)


def plan_for(
    db: CatalogDB,
    encoder: Encoder,
    terms: Sequence[Term],
    options: SearchOptions,
    catalog_lock: AbstractContextManager | None = None,
) -> tuple[QueryPlan, frozenset[int]]:
    """The plan of a query's terms (their vectors, fused, split into parts, toned: search/plan.py)
    and the catalog ids of the images the query is made of. PixgrepError on bad input.
    `catalog_lock` is held around the catalog reads only: while one request's towers run (a long
    query, a large upload), the others keep reading the catalog."""
    lock = catalog_lock or contextlib.nullcontext()
    terms = list(terms)
    encoder = encoder.in_language(options.lang)  # the query language of NLLB towers (else itself)
    if options.ignore_tone:  # "a kitchen, messy, dingy" is encoded as "a kitchen" (then projected)
        from pixgrep.search.tone import strip_tone_items

        terms = [replace(t, value=strip_tone_items(str(t.value))) if t.kind == "text" else t for t in terms]
    if terms and all(term.kind == "text" for term in terms):  # nothing to check first (files, ids, URLs)
        encoder.prepare_texts()  # the text tower loads in threads while the matrix is opened
        with lock:
            load_matrix(db, encoder.model_id)
    vectors, own_ids = _term_vectors(db, encoder, terms, lock)
    plan = plan_query(
        encoder,
        terms,
        _unit_rows(vectors),
        fusion=options.fusion,
        all_parts=options.all_parts,
        ignore_tone=options.ignore_tone,
        tone=options.tone,
    )
    return plan, frozenset(own_ids)


def search_vector(
    db: CatalogDB,
    encoder: Encoder,
    vector: np.ndarray,
    options: SearchOptions,
    catalog_lock: AbstractContextManager | None = None,
) -> SearchResults:
    """Best matches for a ready vector of the model's space (normalised here)."""
    vector = _checked_vector(vector, encoder.dim)
    norm = float(np.linalg.norm(vector))
    if norm < 1e-12:
        raise PixgrepError("a query vector must not be all zeros")
    term = Term(1.0, "vector", vector / norm)
    plan = plan_query(
        encoder,
        [term],
        (vector / norm)[None],
        fusion="sum",
        ignore_tone=options.ignore_tone,
        tone=options.tone,
    )
    return _ranked(db, encoder, plan, options, frozenset(), catalog_lock or contextlib.nullcontext())


def list_matching(db: CatalogDB, options: SearchOptions) -> SearchResults:
    """The images the options' filters let through, newest capture time first (search/listing.py)."""
    from pixgrep.search.listing import list_images

    return SearchResults(list_images(db, scope_for(db, options), k=options.k, offset=options.offset))


def _ranked(
    db: CatalogDB,
    encoder: Encoder,
    plan: QueryPlan,
    options: SearchOptions,
    own_ids: frozenset[int],
    lock: AbstractContextManager,
) -> SearchResults:
    with lock:
        matrix = load_matrix(db, encoder.model_id)
        if matrix.rows and matrix.dim != plan.vectors.shape[1]:
            raise PixgrepError(
                f"the catalog's vectors for {encoder.model_id} have {matrix.dim} dimensions, "
                f"the model gives {plan.vectors.shape[1]}: re-index with this model"
            )
        if matrix.rows == 0 or options.k == 0:
            return SearchResults(notes=plan.notes)
        scope = scope_for(db, options, own_ids)
    if options.dedup:
        groups = _folded(db, matrix, plan, options, scope, encoder.model_id, lock)
    else:
        groups = rank.rank(matrix, plan, options.k, options.offset, scope)
    with lock:
        return SearchResults(_results(db, groups), plan.notes)


def _folded(
    db: CatalogDB,
    matrix: VectorMatrix,
    plan: QueryPlan,
    options: SearchOptions,
    scope: Scope,
    model: str,
    lock: AbstractContextManager,
) -> list[rank.Group]:
    """The page of duplicate groups: rank a window, read the few facts folding needs, fold;
    widen the window while the groups do not fill the page."""
    from pixgrep.search.dedup import threshold_for

    threshold = threshold_for(model)
    need = options.offset + options.k
    window = rank.window_for(options.k, options.offset)
    while True:
        found = rank.candidates(matrix, plan, window, scope)
        with lock:
            facts = _facts(db, [hit.image_id for hit in found.hits])
        groups = rank.fold(found, facts, threshold, plan)
        if len(groups) >= need or found.complete:
            return groups[options.offset : need]
        window *= 4


def _facts(db: CatalogDB, ids: list[int]) -> rank.Facts:
    """What folding needs of each candidate, in two batched reads."""
    from pixgrep.catalog.fingerprints import fingerprints_of

    records = db.images_by_id(ids)
    prints = fingerprints_of(db, [r.content_hash for r in records.values()])
    return {
        i: rank.Fact(
            r.content_hash, r.mtime_ns, (r.width or 0) * (r.height or 0), r.size, prints.get(r.content_hash)
        )
        for i, r in records.items()
    }


def _results(db: CatalogDB, groups: list[rank.Group]) -> list[SearchResult]:
    records = db.images_by_id(
        [g.hit.image_id for g in groups] + [d.image_id for g in groups for d in g.duplicates]
    )
    results = []
    for group in groups:
        record = records.get(group.hit.image_id)
        if record is None:  # removed after the matrix was read; its row will be gone next time
            continue
        duplicates = [d for d in group.duplicates if d.image_id in records]
        results.append(
            SearchResult(
                image_id=record.id,
                path=record.path,
                score=group.hit.score,
                size=record.size,
                width=record.width,
                height=record.height,
                taken_at=record.taken_at,
                parts=group.parts,
                duplicate_ids=tuple(d.image_id for d in duplicates),
                duplicate_paths=tuple(records[d.image_id].path for d in duplicates),
            )
        )
    return results
