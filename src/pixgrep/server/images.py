"""Thumbnails and full images, by catalog id only.

No endpoint takes a path: a client names an image by its catalog id, and the server serves the file
the catalog holds for it, only if that file is still a plain image file at its real path. A symlink
anywhere on the way (a file or folder link pointing out of the indexed roots) is refused, unless
what it points to is itself in the catalog.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response
from PIL import Image

from pixgrep.images.decode import ImageDecodeError, open_image
from pixgrep.records import ImageRecord
from pixgrep.server.querying import not_found
from pixgrep.server.state import ServerState, get_state
from pixgrep.server.thumbnails import THUMB_SIZES, to_jpeg

router = APIRouter(prefix="/api/images", tags=["images"])

# Formats every browser shows as they are; others (HEIC, TIFF, PSD, ...) are sent as JPEG.
BROWSER_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}


def _record(state: ServerState, image_id: int) -> ImageRecord:
    with state.lock:
        record = state.catalog.images([image_id]).get(image_id)
    if record is None:
        raise not_found(f"no image with id {image_id} in the catalog")
    return record


def servable_path(state: ServerState, record: ImageRecord) -> Path:
    """The real path of the catalog's file for `record`, or a 404/403 saying why it is not served."""
    if record.error:
        raise not_found(f"image {record.id} could not be read when it was indexed")
    stored = record.path
    if not os.path.isabs(stored) or ".." in Path(stored).parts:
        raise HTTPException(403, f"image {record.id} has a path that is not served")
    real = os.path.realpath(stored)
    if real != os.path.normpath(stored):
        # A link: serve only what the catalog itself holds, never what a link points out to.
        with state.lock:
            target = state.catalog.images_at([real]).get(real)
        if target is None or target.error:
            raise HTTPException(403, f"image {record.id} is a link to a file outside the catalog")
    if not os.path.isfile(real):
        raise not_found(f"the file of image {record.id} is gone; re-index its folder")
    return Path(real)


@router.get("/{image_id}")
def image_info(image_id: int, state: Annotated[ServerState, Depends(get_state)]):
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


@router.get("/{image_id}/thumb", response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
def thumbnail(
    image_id: int,
    request: Request,
    state: Annotated[ServerState, Depends(get_state)],
    size: Annotated[int, Query(description=f"longest side, one of {THUMB_SIZES}")] = 256,
):
    """A JPEG preview (longest side `size`), made with Pillow and cached in memory."""
    if size not in THUMB_SIZES:
        raise HTTPException(422, f"size must be one of {', '.join(map(str, THUMB_SIZES))}")
    record = _record(state, image_id)
    path = servable_path(state, record)
    etag = f'"{record.content_hash}-{size}"'
    headers = {"Cache-Control": "private, max-age=3600", "ETag": etag}
    if request.headers.get("if-none-match") == etag:  # the browser has this very preview
        return Response(status_code=304, headers=headers)
    try:
        data = state.thumbs.get(str(path), record.content_hash, size)
    except ImageDecodeError as exc:
        raise not_found(f"image {image_id} cannot be read now: {exc}") from None
    return Response(data, media_type="image/jpeg", headers=headers)


@router.get("/{image_id}/file", response_class=Response, responses={200: {"content": {"image/*": {}}}})
def full_image(image_id: int, state: Annotated[ServerState, Depends(get_state)]):
    """The image itself: the file as it is for browser formats, converted to JPEG otherwise."""
    record = _record(state, image_id)
    path = servable_path(state, record)
    kind = None
    try:
        with Image.open(path) as probe:  # only ever send bytes as they are when they are an image
            kind = probe.format
    except Exception:  # HEIC and friends need pixgrep's decoder; a non-image fails there
        pass
    headers = {"Cache-Control": "private, max-age=3600"}
    if kind in BROWSER_TYPES:
        return FileResponse(path, media_type=BROWSER_TYPES[kind], headers=headers)
    try:
        return Response(to_jpeg(open_image(path)), media_type="image/jpeg", headers=headers)
    except ImageDecodeError as exc:
        raise not_found(f"image {image_id} cannot be read now: {exc}") from None
