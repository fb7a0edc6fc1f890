"""Photo metadata in the catalog: fill and refresh it, and answer the filters and facets.

Two tables beside `images`, keyed by image id (schema in db.py, migration 2): `photo_meta` (GPS,
camera, lens, orientation, title, description, place name) and `photo_keywords` (one row per
keyword, with a case-folded copy for matching). A trigger deletes both when an image row goes.

`photo_meta.source` records what the row was read from: the image's size and mtime and each
sidecar's name, size and mtime. `refresh` re-reads an image only when that changes, so a sidecar
edited in darktable or digiKam is picked up on the next index run, while nothing else is read
again, and no image is ever decoded or encoded for it (metadata comes from the file header).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from pixgrep.catalog.db import CatalogDB, one_line_errors
from pixgrep.errors import PixgrepError
from pixgrep.images.sidecar import PhotoMeta, read_photo_meta, sidecars_of, xmp_names_in

WRITE_CHUNK = 256  # rows per transaction: an interrupt loses at most this much reading

META_COLUMNS = (
    "latitude, longitude, altitude, make, model, lens, orientation, title, description, "
    "city, region, country, country_code"
)


@dataclass(frozen=True)
class ImageMeta:
    """What the web page and the API show for one image."""

    latitude: float | None
    longitude: float | None
    altitude: float | None
    make: str | None
    model: str | None
    lens: str | None
    orientation: int | None
    title: str | None
    description: str | None
    city: str | None
    region: str | None
    country: str | None
    country_code: str | None
    keywords: tuple[str, ...] = ()

    @property
    def camera(self) -> str | None:
        from pixgrep.images.exif import camera_name

        return camera_name(self.make, self.model)

    @property
    def place(self) -> str | None:
        parts: list[str] = []
        for part in (self.city, self.region, self.country):
            if part and part not in parts:
                parts.append(part)
        return ", ".join(parts) or None

    def to_json(self) -> dict:
        return {
            "camera": self.camera,
            "make": self.make,
            "model": self.model,
            "lens": self.lens,
            "orientation": self.orientation,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "altitude": self.altitude,
            "place": self.place,
            "city": self.city,
            "region": self.region,
            "country": self.country,
            "title": self.title,
            "description": self.description,
            "keywords": list(self.keywords),
        }


def source_key(size: int, mtime_ns: int, sidecars: Iterable[tuple[str, int, int]]) -> str:
    """The change detector of one image's metadata (see module docstring)."""
    parts = [f"{size}:{mtime_ns}"] + [f"{os.path.basename(n)}:{s}:{m}" for n, s, m in sidecars]
    return "|".join(parts)


@dataclass
class RefreshSummary:
    read: int = 0  # images whose metadata was (re-)read
    placed: int = 0  # positions given a place name
    unchanged: int = 0


@one_line_errors
def refresh(
    db: CatalogDB,
    images: Iterable[tuple[int, str, int, int]],
    *,
    workers: int = 2,
    on_warning: Callable[[str, str], None] | None = None,
) -> RefreshSummary:
    """Bring photo_meta up to date for (image id, path, size, mtime_ns) rows; see module docstring."""
    summary = RefreshSummary()
    rows = list(images)
    if not rows:
        return summary
    stored = _stored_sources([r[0] for r in rows], db)
    stale: list[tuple[int, str, str, list]] = []
    unplaced: list[int] = []
    listings: dict[str, set[str] | None] = {}  # one directory listing per folder, not 4 stats per image
    for image_id, path, size, mtime_ns in rows:
        folder = os.path.dirname(path)
        if folder not in listings:
            listings[folder] = xmp_names_in(folder)
        sidecars = sidecars_of(path, listings[folder])
        key = source_key(size, mtime_ns, sidecars)
        previous = stored.get(image_id)
        if previous is not None and previous[0] == key:
            summary.unchanged += 1
            if previous[1]:  # a position that has no place yet (no geocoder at the time)
                unplaced.append(image_id)
            continue
        stale.append((image_id, path, key, sidecars))
    if stale:
        with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            warnings.simplefilter("ignore")  # Pillow's noise on odd EXIF; the pool is inside this block
            for start in range(0, len(stale), WRITE_CHUNK):
                chunk = stale[start : start + WRITE_CHUNK]
                metas = list(pool.map(lambda job: read_photo_meta(job[1], job[3]), chunk))
                _write(db, [(job[0], job[2], meta) for job, meta in zip(chunk, metas, strict=True)])
                summary.read += len(chunk)
    summary.placed = place_missing(db, on_warning=on_warning)
    return summary


def _stored_sources(ids: list[int], db: CatalogDB) -> dict[int, tuple[str, bool]]:
    out: dict[int, tuple[str, bool]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for image_id, source, unplaced in db.conn.execute(
            f"SELECT image_id, source, latitude IS NOT NULL AND placed = 0 FROM photo_meta "
            f"WHERE image_id IN ({marks})",
            chunk,
        ):
            out[image_id] = (source, bool(unplaced))
    return out


def _write(db: CatalogDB, rows: list[tuple[int, str, PhotoMeta]]) -> None:
    now = time.time()
    with db.conn:
        for image_id, key, meta in rows:
            old = db.conn.execute(
                "SELECT latitude, longitude, city, region, country, country_code, placed "
                "FROM photo_meta WHERE image_id = ?",
                (image_id,),
            ).fetchone()
            # The same position keeps its place: a keyword edit does not load the gazetteer.
            same = old is not None and (old[0], old[1]) == (meta.latitude, meta.longitude)
            place = old[2:7] if same else (None, None, None, None, 0)
            db.conn.execute(
                "INSERT OR REPLACE INTO photo_meta (image_id, source, latitude, longitude, altitude, make, "
                "model, lens, orientation, title, description, city, region, country, country_code, placed, "
                "read_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    image_id,
                    key,
                    meta.latitude,
                    meta.longitude,
                    meta.altitude,
                    meta.make,
                    meta.model,
                    meta.lens,
                    meta.orientation,
                    meta.title,
                    meta.description,
                    *place,
                    now,
                ),
            )
            db.conn.execute("DELETE FROM photo_keywords WHERE image_id = ?", (image_id,))
            db.conn.executemany(
                "INSERT OR IGNORE INTO photo_keywords (image_id, keyword, folded) VALUES (?, ?, ?)",
                [(image_id, word, word.casefold()) for word in meta.keywords],
            )


@one_line_errors
def place_missing(db: CatalogDB, *, on_warning: Callable[[str, str], None] | None = None) -> int:
    """Give every stored position without a place name its nearest city (one gazetteer load)."""
    rows = db.conn.execute(
        "SELECT image_id, latitude, longitude FROM photo_meta WHERE latitude IS NOT NULL AND placed = 0"
    ).fetchall()
    if not rows:
        return 0
    from pixgrep.catalog import places

    try:
        found = places.reverse([(lat, lon) for _, lat, lon in rows])
    except PixgrepError as exc:  # the places extra is not installed: positions stay, names later
        if on_warning is not None:
            on_warning("place names", str(exc))
        return 0
    with db.conn:
        db.conn.executemany(
            "UPDATE photo_meta SET city = ?, region = ?, country = ?, country_code = ?, placed = 1 "
            "WHERE image_id = ?",
            [
                (*((p.city, p.region, p.country, p.country_code) if p else (None,) * 4), image_id)
                for (image_id, _, _), p in zip(rows, found, strict=True)
            ],
        )
    return sum(1 for p in found if p)


# -- reads -----------------------------------------------------------------------------------------


@one_line_errors
def meta_by_id(db: CatalogDB, ids: Iterable[int]) -> dict[int, ImageMeta]:
    ids = [int(i) for i in ids]
    out: dict[int, ImageMeta] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        keywords: dict[int, list[str]] = {}
        for image_id, word in db.conn.execute(
            f"SELECT image_id, keyword FROM photo_keywords WHERE image_id IN ({marks}) ORDER BY rowid", chunk
        ):
            keywords.setdefault(image_id, []).append(word)
        for row in db.conn.execute(
            f"SELECT image_id, {META_COLUMNS} FROM photo_meta WHERE image_id IN ({marks})", chunk
        ):
            out[row[0]] = ImageMeta(*row[1:], keywords=tuple(keywords.get(row[0], ())))  # type: ignore[misc]
    return out


@dataclass(frozen=True)
class MetaFilter:
    """The metadata filters of a search; None = not filtered on that."""

    near: tuple[float, float, float] | None = None  # latitude, longitude, radius in km
    camera: str | None = None  # case-insensitive substring of "make model"
    tag: str | None = None  # keyword: exact, a parent of "a|b|c", or a prefix ending in "*"
    place: str | None = None  # city, region, country or country code: whole or start of it

    def active(self) -> bool:
        return any(v is not None for v in (self.near, self.camera, self.tag, self.place))


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@one_line_errors
def matching_ids(db: CatalogDB, meta: MetaFilter) -> set[int] | None:
    """Ids of the images that pass every metadata filter; None when no filter is set."""
    if not meta.active():
        return None
    where: list[str] = []
    args: list[object] = []
    if meta.camera is not None:
        where.append("lower(coalesce(make, '') || ' ' || coalesce(model, '')) LIKE ? ESCAPE '\\'")
        args.append(f"%{_like_escape(meta.camera.strip().lower())}%")
    if meta.place is not None:
        text = meta.place.strip().casefold()
        clauses = []
        for column in ("city", "region", "country", "country_code"):
            clauses.append(f"lower({column}) = ? OR lower({column}) LIKE ? ESCAPE '\\'")
            args += [text, f"{_like_escape(text)}%"]
        where.append("(" + " OR ".join(clauses) + ")")
    if meta.near is not None:
        lat, lon, km = meta.near
        # A bounding box the index can use, then the exact great-circle distance below.
        dlat = km / 111.0
        where.append("latitude BETWEEN ? AND ?")
        args += [lat - dlat, lat + dlat]
    if meta.tag is not None:
        tag = " ".join(meta.tag.split()).casefold()
        if tag.endswith("*"):
            prefix = _like_escape(tag[:-1])
            cond, targs = "folded LIKE ? ESCAPE '\\'", [f"{prefix}%"]
        else:
            cond, targs = "(folded = ? OR folded LIKE ? ESCAPE '\\')", [tag, f"{_like_escape(tag)}|%"]
        where.append(f"image_id IN (SELECT image_id FROM photo_keywords WHERE {cond})")
        args += targs
    sql = "SELECT image_id, latitude, longitude FROM photo_meta"
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = db.conn.execute(sql, args).fetchall()
    if meta.near is None:
        return {r[0] for r in rows}
    from pixgrep.catalog.places import great_circle_km

    lat, lon, km = meta.near
    if not rows:
        return set()
    ids = np.asarray([r[0] for r in rows])
    distance = great_circle_km(lat, lon, np.asarray([r[1] for r in rows]), np.asarray([r[2] for r in rows]))
    return {int(i) for i in ids[distance <= km]}


@one_line_errors
def facets(db: CatalogDB, ids: Iterable[int] | None = None, limit: int = 20) -> dict[str, list[dict]]:
    """The most common places, cameras, years and tags (with counts), over `ids` or the whole catalog."""
    scope = ""
    args: list[object] = []
    chosen = None
    if ids is not None:
        chosen = [int(i) for i in ids]
        with db.conn:  # committed at once: an open transaction would pin this connection's snapshot
            db.conn.execute("CREATE TEMP TABLE IF NOT EXISTS facet_scope (id INTEGER PRIMARY KEY)")
            db.conn.execute("DELETE FROM facet_scope")
            db.conn.executemany("INSERT OR IGNORE INTO facet_scope VALUES (?)", [(i,) for i in chosen])
        scope = " AND {col} IN (SELECT id FROM facet_scope)"

    def grouped(sql: str, col: str) -> list[dict]:
        text = sql.replace("{scope}", scope.replace("{col}", col))
        return [{"value": value, "count": count} for value, count in db.conn.execute(text, args) if value]

    out = {
        "places": grouped(
            "SELECT city, COUNT(*) AS n FROM photo_meta WHERE city IS NOT NULL{scope} "
            f"GROUP BY city ORDER BY n DESC, city LIMIT {int(limit)}",
            "image_id",
        ),
        "countries": grouped(
            "SELECT country, COUNT(*) AS n FROM photo_meta WHERE country IS NOT NULL{scope} "
            f"GROUP BY country ORDER BY n DESC, country LIMIT {int(limit)}",
            "image_id",
        ),
        "years": grouped(
            "SELECT substr(taken_at, 1, 4) AS year, COUNT(*) AS n FROM images "
            "WHERE taken_at IS NOT NULL AND error IS NULL{scope} "
            f"GROUP BY year ORDER BY year DESC LIMIT {int(limit) * 3}",
            "id",
        ),
        "tags": grouped(
            "SELECT min(keyword), COUNT(DISTINCT image_id) AS n FROM photo_keywords WHERE 1{scope} "
            f"GROUP BY folded ORDER BY n DESC, folded LIMIT {int(limit)}",
            "image_id",
        ),
    }
    # Cameras: the filter text is "make model" (what --camera matches), the label what people
    # call it ("Canon EOS 40D", not "Canon Canon EOS 40D").
    from pixgrep.images.exif import camera_name

    cameras = db.conn.execute(
        "SELECT make, model, COUNT(*) AS n FROM photo_meta WHERE (make IS NOT NULL OR model IS NOT NULL)"
        + scope.replace("{col}", "image_id")
        + f" GROUP BY make, model ORDER BY n DESC, make, model LIMIT {int(limit)}",
        args,
    ).fetchall()
    out["cameras"] = [
        {"value": " ".join(p for p in (make, model) if p), "label": camera_name(make, model), "count": n}
        for make, model, n in cameras
    ]
    if chosen is not None:
        with db.conn:
            db.conn.execute("DELETE FROM facet_scope")
    return out


@one_line_errors
def counts(db: CatalogDB) -> dict[str, int]:
    """For `pixgrep stats`: how many images have a position, a place, a camera, keywords, a title."""
    one = lambda sql: int(db.conn.execute(sql).fetchone()[0])
    live = "image_id IN (SELECT id FROM images WHERE error IS NULL)"
    return {
        "with_gps": one(f"SELECT COUNT(*) FROM photo_meta WHERE latitude IS NOT NULL AND {live}"),
        "with_place": one(f"SELECT COUNT(*) FROM photo_meta WHERE city IS NOT NULL AND {live}"),
        "with_camera": one(
            f"SELECT COUNT(*) FROM photo_meta WHERE (make IS NOT NULL OR model IS NOT NULL) AND {live}"
        ),
        "with_keywords": one(f"SELECT COUNT(DISTINCT image_id) FROM photo_keywords WHERE {live}"),
        "keywords": one("SELECT COUNT(DISTINCT folded) FROM photo_keywords"),
    }


@one_line_errors
def refresh_under(
    db: CatalogDB, roots: Iterable[str], *, on_warning: Callable[[str, str], None] | None = None
) -> RefreshSummary:
    """refresh() for every decodable image row below the folders (or the files) an index run walked."""
    rows: dict[int, tuple[int, str, int, int]] = {}
    for root in roots:
        found = db.images_under(root) if os.path.isdir(root) else db.images_by_path([root])
        for record in found.values():
            if record.error is None:
                rows[record.id] = (record.id, record.path, record.size, record.mtime_ns)
    return refresh(db, rows.values(), workers=min(4, os.cpu_count() or 1), on_warning=on_warning)
