"""Thumbnails and full images, by catalog id only.

No endpoint takes a path: a client names an image by its catalog id, and the server serves the file
the catalog holds for it, only if that file is still a plain image file at its real path. A symlink
anywhere on the way (a file or folder link pointing out of the indexed roots) is refused, unless
what it points to is itself in the catalog.

Rows whose path is an object-store URI (s3://, gs://, ...: indexed with --ray or imported from
Parquet) are read through pyarrow (images/storage.py) with a size cap and a deadline; a missing or
unreachable object is a 404. A file:// URI is a local path and passes the same guards as one.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response
from PIL import Image
from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable

from pixgrep.images.decode import ImageDecodeError, open_image
from pixgrep.images.storage import REMOTE_SCHEMES, TooLarge, is_uri, local_path, read_bytes, scheme_of
from pixgrep.records import ImageRecord
from pixgrep.server.guards import ErrorBody, ImageIdPath, error_text
from pixgrep.server.querying import not_found
from pixgrep.server.state import ServerState, get_state
from pixgrep.server.thumbnails import THUMB_SIZES, to_jpeg

router = APIRouter(prefix="/api/images", tags=["images"])

# Formats every browser shows as they are; others (HEIC, TIFF, PSD, ...) are sent as JPEG.
BROWSER_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}

# An object-store image is read whole into memory: at most this big, within this many seconds.
REMOTE_MAX_BYTES = 64 * 1024 * 1024
REMOTE_TIMEOUT_S = 15.0


def _record(state: ServerState, image_id: int) -> ImageRecord:
    with state.lock:
        record = state.catalog.images([image_id]).get(image_id)
    if record is None:
        raise not_found(f"no image with id {image_id} in the catalog")
    return record


def servable_source(state: ServerState, record: ImageRecord) -> Path | str:
    """What to read for `record`: the real local path (guarded, servable_path) or an object-store
    URI (read later through read_remote); a 404/403 saying why for anything else."""
    if record.error:
        raise not_found(f"image {record.id} could not be read when it was indexed")
    if not is_uri(record.path):
        return servable_path(state, record.id, record.path)
    local = local_path(record.path)
    if local is not None:  # file:// is this machine's disk: the local guards, never a way around them
        return servable_path(state, record.id, local)
    if scheme_of(record.path) not in REMOTE_SCHEMES:
        raise HTTPException(403, f"image {record.id} has a path that is not served")
    return record.path


def read_remote(image_id: int, uri: str) -> bytes:
    """An object's bytes, or a 404 (gone, unreachable, no answer) / 413 (over the cap) saying why."""
    try:
        return read_bytes(uri, max_bytes=REMOTE_MAX_BYTES, timeout=REMOTE_TIMEOUT_S)
    except FileNotFoundError:
        raise not_found(f"the object of image {image_id} is gone: {uri}") from None
    except TooLarge as exc:
        raise HTTPException(413, f"image {image_id} is not served: {exc}") from None
    except TimeoutError:
        raise not_found(f"image {image_id}: the store did not answer in {REMOTE_TIMEOUT_S:g} s") from None
    except OSError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise not_found(f"image {image_id} cannot be read from its store now: {reason}") from None


def servable_path(state: ServerState, image_id: int, stored: str) -> Path:
    """The real path of the catalog's local file `stored`, or a 404/403 saying why it is not served."""
    if not os.path.isabs(stored) or ".." in Path(stored).parts:
        raise HTTPException(403, f"image {image_id} has a path that is not served")
    real = os.path.realpath(stored)
    if real != os.path.normpath(stored):
        # A link: serve only what the catalog itself holds, never what a link points out to.
        with state.lock:
            target = state.catalog.images_at([real]).get(real)
        if target is None or target.error:
            raise HTTPException(403, f"image {image_id} is a link to a file outside the catalog")
    if not os.path.isfile(real):
        raise not_found(f"the file of image {image_id} is gone; re-index its folder")
    return Path(real)


@router.get("/{image_id}")
def image_info(image_id: ImageIdPath, state: Annotated[ServerState, Depends(get_state)]):
    """What the catalog knows about one image."""
    record = _record(state, image_id)
    return {
        "id": record.id,
        "path": record.path,
        "name": os.path.basename(record.path),
        "size": record.size,
        "width": record.width,
        "height": record.height,
        "format": record.format,
        "taken_at": record.taken_at,
        "error": record.error,
        "thumb": f"/api/images/{record.id}/thumb",
        "file": f"/api/images/{record.id}/file",
    }


# Beyond the statuses app._ROUTE_ERRORS lists for every image route: an object over REMOTE_MAX_BYTES.
_TOO_LARGE: dict[int | str, dict[str, Any]] = {413: {"model": ErrorBody, "description": error_text(413)}}


@router.get(
    "/{image_id}/thumb",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, **_TOO_LARGE},
)
def thumbnail(
    image_id: ImageIdPath,
    request: Request,
    state: Annotated[ServerState, Depends(get_state)],
    size: Annotated[int, Query(description=f"longest side, one of {THUMB_SIZES}")] = 256,
):
    """A JPEG preview (longest side `size`), made with Pillow and cached in memory."""
    if size not in THUMB_SIZES:
        raise HTTPException(422, f"size must be one of {', '.join(map(str, THUMB_SIZES))}")
    record = _record(state, image_id)
    source = servable_source(state, record)
    etag = f'"{record.content_hash}-{size}"'
    headers = {"Cache-Control": "private, max-age=3600", "ETag": etag}
    if request.headers.get("if-none-match") == etag:  # the browser has this very preview
        return Response(status_code=304, headers=headers)
    # An object is fetched only when the cache does not hold its preview.
    load = (lambda: read_remote(image_id, source)) if isinstance(source, str) else None
    try:
        data = state.thumbs.get(str(source), record.content_hash, size, load=load)
    except ImageDecodeError as exc:
        raise not_found(f"image {image_id} cannot be read now: {exc}") from None
    return Response(data, media_type="image/jpeg", headers=headers)


@router.get(
    "/{image_id}/file",
    response_class=Response,
    responses={200: {"content": {"image/*": {}}}, **_TOO_LARGE},
)
def full_image(image_id: ImageIdPath, request: Request, state: Annotated[ServerState, Depends(get_state)]):
    """The image itself: the file as it is for browser formats, converted to JPEG otherwise. A
    Range header is answered for a local file (206); a bad one is a 400, one past the end a 416."""
    record = _record(state, image_id)
    source = servable_source(state, record)
    data = read_remote(image_id, source) if isinstance(source, str) else None
    kind = None
    try:  # only ever send bytes as they are when they are an image
        with Image.open(io.BytesIO(data) if data is not None else source) as probe:
            kind = probe.format
    except Exception:  # HEIC and friends need pixgrep's decoder; a non-image fails there
        pass
    headers = {"Cache-Control": "private, max-age=3600"}
    if kind in BROWSER_TYPES:
        if data is not None:
            return Response(data, media_type=BROWSER_TYPES[kind], headers=headers)
        _check_range(request.headers.get("range"), source)
        return FileResponse(source, media_type=BROWSER_TYPES[kind], headers=headers)
    try:
        return Response(
            to_jpeg(open_image(data if data is not None else source)),
            media_type="image/jpeg",
            headers=headers,
        )
    except ImageDecodeError as exc:
        raise not_found(f"image {image_id} cannot be read now: {exc}") from None


def _check_range(header: str | None, path: str | os.PathLike) -> None:
    """FileResponse answers a bad Range header in plain text: check it first with the same parser,
    so that it gets the JSON error every other bad input gets."""
    if header is None:
        return
    size = os.stat(path).st_size
    try:
        FileResponse._parse_range_header(header, size)
    except MalformedRangeHeader as exc:
        raise HTTPException(400, f"bad Range header: {exc.content.removeprefix('Range header: ')}") from None
    except RangeNotSatisfiable:
        message = f"no byte the Range header asks for is in the file ({size} bytes)"
        raise HTTPException(416, message, headers={"Content-Range": f"bytes */{size}"}) from None
