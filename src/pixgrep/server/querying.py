"""Turn HTTP inputs into search-engine terms, run the search on the shared catalog, shape results."""

from __future__ import annotations

import base64
import binascii
import io
import os
import time
from pathlib import Path

from fastapi import HTTPException

from pixgrep.errors import PixgrepError
from pixgrep.records import SearchResult
from pixgrep.search import query as search_query
from pixgrep.search.options import SearchOptions
from pixgrep.search.query import Term, parse_query
from pixgrep.server.state import ServerState


def parse_terms(query: str) -> list[Term]:
    # Classified without a look at the disk: a client may not probe the server's files.
    return parse_query(query, remote=True)


def make_term(kind: str, value: object, weight: float = 1.0, state: ServerState | None = None) -> Term:
    """A term a client sent: validated by search.query; base64 images decoded first (and, given
    the state, their header checked against its caps)."""
    if kind == "bytes":
        value = decode_base64(value)
        if state is not None:
            check_image(state, value)
    return search_query.make_term(kind, value, weight)


def check_image(state: ServerState, data: bytes, *, decode: bool = False) -> None:
    """413 for an image over the upload size or the server's pixel cap, read from the header before
    any pixel is decoded; 415 (ImageDecodeError) for something that is not an image, or with
    `decode`, that does not decode (a truncated file), before it reaches the model."""
    from pixgrep.images.decode import open_image, read_image_info

    if len(data) > state.max_upload:
        raise HTTPException(413, f"the image is over the {state.max_upload // (1024 * 1024)} MB upload limit")
    info = read_image_info(io.BytesIO(data))
    if info.width * info.height > state.max_pixels:
        raise HTTPException(
            413,
            f"the image is {info.width}x{info.height} pixels, over this server's "
            f"{state.max_pixels:,} pixel cap (pixgrep serve --max-pixels)",
        )
    if decode:
        open_image(data)


def url_failure(url: str) -> str:
    """The one answer for any image URL that was not used: which address was refused, what
    answered (a status, a content type, a closed port, a silence) is not told."""
    return (
        f"{url}: no image could be used from this URL (the server fetches public http(s) addresses "
        "that answer with an image in time; pixgrep serve --allow-private-urls for private ones)"
    )


def download_urls(state: ServerState, terms: list[Term]) -> list[Term]:
    """The terms with every image URL downloaded (under the server's address rule) and checked:
    a bytes term naming its URL. Called before the catalog lock: a slow remote server holds up
    no one else."""
    from pixgrep.search.fetch import DownloadsBusy, fetch_image_bytes

    out = []
    for term in terms:
        if term.kind != "url":
            out.append(term)
            continue
        url = str(term.value)
        try:
            data = fetch_image_bytes(url, allow_private=state.allow_private_urls)
            check_image(state, data)
        except DownloadsBusy:
            raise
        except (PixgrepError, HTTPException):
            raise PixgrepError(url_failure(url)) from None
        out.append(search_query.bytes_term(data, term.weight, source=url))
    return out


def decode_base64(value) -> bytes:
    if not isinstance(value, str) or not value:
        raise PixgrepError("an image must be given as base64 text")
    if value.startswith("data:") and "," in value:  # a data: URL from a browser
        value = value.split(",", 1)[1]
    try:
        return base64.b64decode(value, validate=False)
    except (binascii.Error, ValueError):
        raise PixgrepError("the image is not valid base64") from None


def check_model(state: ServerState, model: str | None) -> None:
    if model and not state.serves_model(model):
        raise PixgrepError(model_mismatch(state, model))


def model_mismatch(state: ServerState, model: str) -> str:
    """Why `model` cannot be used here: one model is loaded per server."""
    try:
        from pixgrep.models.registry import get_spec

        get_spec(model)
        known = True
    except Exception:  # not in the registry (or no registry): an unknown name
        known = False
    if known:
        return f"model {model!r} is not loaded here: this server serves {state.model_name!r} only"
    return f"unknown model {model!r}: this server serves {state.model_name!r}"


def normalise_roots(roots: list[str] | None) -> tuple[str, ...] | None:
    cleaned = []
    for root in roots or []:
        if not root or not root.strip():
            continue
        path = Path(os.path.expanduser(root.strip()))
        if not path.is_absolute():
            raise PixgrepError(f"folder scope must be an absolute path: {root}")
        cleaned.append(str(path))
    return tuple(cleaned) if cleaned else None


def check_vector_terms(state: ServerState, terms: list) -> None:
    dim = state.catalog.encoder.dim
    for term in terms:
        if term.kind == "vector" and term.value.shape != (dim,):
            raise PixgrepError(
                f"a vector term has {term.value.size} numbers; this model's vectors have {dim}"
            )


def run_search(
    state: ServerState, terms: list[Term], options: SearchOptions, notes: list[str] | None = None
) -> tuple[list[SearchResult], float]:
    """Results and milliseconds taken; `notes` (if given) receives the search's notes (a query
    cut at the context length). Encoding, ranking and duplicate folding run outside the catalog lock."""
    if not terms and not options.lists_without_query():
        raise PixgrepError(
            "nothing to search for: give a query, an image, an image URL, an image id or a filter "
            "(near, camera, tag, place, after, before)"
        )
    check_vector_terms(state, terms)
    started = time.perf_counter()
    terms = download_urls(state, terms)  # outside the lock: a slow remote server holds up no one else
    with state.lock:
        ids = [int(t.value) for t in terms if t.kind == "image_id"]  # type: ignore[call-overload]
        known = state.catalog.images(ids) if ids else {}
        missing = [i for i in ids if i not in known]
        if missing:
            raise not_found(f"no image with id {missing[0]} in the catalog")
    results = state.catalog.search(terms, options, catalog_lock=state.lock)
    if notes is not None:
        notes.extend(results.notes)
    return results, (time.perf_counter() - started) * 1000


def fusion_ran(state: ServerState, terms: list[Term], options: SearchOptions) -> str:
    """ "combiner" or "sum": how the query's image and text terms were fused (search.fusion)."""
    from pixgrep.search.fusion import combiner_for, fusion_used, is_composed

    kinds, weights = [t.kind for t in terms], [t.weight for t in terms]
    if not is_composed(kinds, weights):
        return "sum"
    return fusion_used(kinds, weights, combiner_for(state.catalog.encoder, options.fusion))


def result_json(result: SearchResult) -> dict:
    row = {
        "id": result.image_id,
        "path": result.path,
        "name": os.path.basename(result.path),
        "score": round(float(result.score), 6),
        "size": result.size,
        "width": result.width,
        "height": result.height,
        "taken_at": result.taken_at,
        "thumb": f"/api/images/{result.image_id}/thumb",
        "file": f"/api/images/{result.image_id}/file",
    }
    if result.parts is not None:  # all-of search: each part's cosine
        row["parts"] = {text: round(score, 6) for text, score in result.parts.items()}
    if result.words:  # why it matched: the query's words in its text, names or keywords
        row.update(words=list(result.words), words_from=list(result.words_from))
    if result.duplicate_ids:  # near-identical images folded into this one
        row["duplicates"] = [
            {
                "id": i,
                "name": os.path.basename(p),
                "path": p,
                "thumb": f"/api/images/{i}/thumb",
                "file": f"/api/images/{i}/file",
            }
            for i, p in zip(result.duplicate_ids, result.duplicate_paths, strict=True)
        ]
    return row


def response_json(
    results: list[SearchResult],
    *,
    k: int,
    offset: int,
    took_ms: float,
    fusion: str = "sum",
    warnings: list[str] | None = None,
) -> dict:
    return {
        "results": [result_json(r) for r in results],
        "k": k,
        "offset": offset,
        # A full page may have more behind it; a short page is the end.
        "next_offset": offset + len(results) if len(results) == k else None,
        "took_ms": round(took_ms, 2),
        "fusion": fusion,
        "warnings": list(warnings or []),
    }


def not_found(message: str) -> HTTPException:
    return HTTPException(status_code=404, detail=message)
