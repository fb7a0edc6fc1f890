"""Helpers for the server and browser tests: a small catalog of generated images, filled directly
with SQL (so these tests depend only on the catalog schema, not on the indexer), and a live
uvicorn server on a free local port."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

from PIL import Image, ImageDraw
from ports import free_port

from pixgrep.catalog.db import CatalogDB
from pixgrep.images.decode import open_image

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 180, 60),
    "blue": (40, 60, 220),
    "yellow": (240, 220, 40),
    "purple": (140, 40, 170),
    "orange": (250, 140, 20),
    "grey": (128, 128, 128),
    "black": (10, 10, 10),
    "white": (245, 245, 245),
    "cyan": (30, 200, 220),
}


def draw_image(colour: tuple[int, int, int], variant: int, size=(160, 120)) -> Image.Image:
    """A colour field with a shape whose place depends on `variant`, so every file differs."""
    image = Image.new("RGB", size, colour)
    pen = ImageDraw.Draw(image)
    x = 10 + (variant * 37) % (size[0] - 50)
    y = 10 + (variant * 23) % (size[1] - 50)
    inverse = tuple(255 - c for c in colour)
    if variant % 2:
        pen.ellipse((x, y, x + 40, y + 40), fill=inverse)
    else:
        pen.rectangle((x, y, x + 40, y + 40), fill=inverse)
    return image


def make_images(root: Path, per_colour: int = 2) -> list[Path]:
    """Files under root/<colour>/ (JPEG and PNG alternating); returns their real paths."""
    files = []
    for n, (name, rgb) in enumerate(COLOURS.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for v in range(per_colour):
            suffix = "png" if (n + v) % 2 else "jpg"
            path = folder / f"{name}_{v}.{suffix}"
            draw_image(rgb, n * 7 + v).save(path)
            files.append(Path(os.path.realpath(path)))
    return files


def add_to_catalog(
    db_path: Path, files: list[Path | str], encoder, *, taken_at: str | None = None, vectors=True
) -> dict[str, int]:
    """Store rows for `files` as the indexer would (path, size, hash, size, vector), through the
    catalog's own batch write, in one transaction; path -> id.

    A path is stored as given (not resolved), so tests can plant links and odd paths."""
    rows, encoded = [], {}
    for file in files:
        path = str(file)
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        stat = os.stat(path)
        try:
            image = open_image(path)
            width, height, fmt, error = image.width, image.height, Image.open(path).format, None
        except Exception as exc:
            image, width, height, fmt, error = None, None, None, None, str(exc)
        rows.append((path, stat.st_size, stat.st_mtime_ns, digest, width, height, fmt, taken_at, error))
        if image is not None and vectors:
            encoded.setdefault(digest, encoder.encode_images([image])[0])
    db = CatalogDB(db_path)
    try:
        db.write_batch(rows, encoded, encoder.model_id)
        stored = db.images_by_path([row[0] for row in rows])
        return {row[0]: stored[row[0]].id for row in rows}
    finally:
        db.close()


class LiveServer:
    """uvicorn serving `app` on 127.0.0.1 in a thread; `url` is its base URL."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
