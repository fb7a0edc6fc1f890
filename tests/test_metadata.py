"""Photo metadata: EXIF GPS/camera/lens/orientation against an independent reader
(exifread), XMP/IPTC keywords, sidecars in pixgrep's, darktable's and digiKam's layouts, the
catalog tables and their migration, place names, and the metadata filters inside the ranking."""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data
from fakes import FakeEncoder
from metadata_samples import DARKTABLE, DIGIKAM, build_photo_folder, plain_jpeg  # noqa: E402
from PIL import Image

from pixgrep.catalog import metadata
from pixgrep.catalog.db import MIGRATIONS, CatalogDB
from pixgrep.catalog.ingest import index_roots
from pixgrep.errors import PixgrepError
from pixgrep.images.sidecar import read_photo_meta
from pixgrep.images.xmp_read import parse_xmp, xmp_coordinate

exifread = pytest.importorskip("exifread")


def all_sample_files() -> list[Path]:
    files = []
    for name in ("exif-samples", "odd-images"):
        files += [
            p for p in sorted(shared_data(name).rglob("*")) if p.is_file() and p.suffix.lower() != ".rst"
        ]
    return [p for p in files if p.name != "README" and not p.name.endswith(".txt")]


def exifread_tags(path: Path) -> dict:
    with open(path, "rb") as f:
        try:
            return exifread.process_file(f, details=False)
        except Exception:
            return {}


def ratio(value) -> float | None:
    den = getattr(value, "den", 1)
    num = getattr(value, "num", value)
    return None if den == 0 else float(num) / float(den)


def expected_position(tags: dict) -> tuple[float, float] | None:
    """The position by the rule documented in images/exif.py, from exifread's raw values."""

    def degrees(key: str) -> float | None:
        tag = tags.get(key)
        if tag is None or not 1 <= len(tag.values) <= 3:
            return None
        parts = [ratio(v) for v in tag.values]
        if any(p is None or p < 0 for p in parts) or any(p >= 60 for p in parts[1:]):
            return None
        return sum(p / s for p, s in zip(parts, (1, 60, 3600), strict=False))

    lat, lon = degrees("GPS GPSLatitude"), degrees("GPS GPSLongitude")
    if lat is None or lon is None or lat > 90 or lon > 180:
        return None
    lat_ref = str(tags.get("GPS GPSLatitudeRef", "N")).strip()[:1].upper() or "N"
    lon_ref = str(tags.get("GPS GPSLongitudeRef", "E")).strip()[:1].upper() or "E"
    if lat_ref not in "NS" or lon_ref not in "EW":
        return None
    lat, lon = (-lat if lat_ref == "S" else lat), (-lon if lon_ref == "W" else lon)
    return None if lat == 0 and lon == 0 else (lat, lon)


def clean(tag) -> str | None:
    if tag is None:
        return None
    text = " ".join(str(tag.values if isinstance(tag.values, str) else tag).split("\x00")[0].split())
    return text or None


def test_gps_camera_lens_orientation_match_exifread_on_every_sample_file():
    checked_gps = checked_camera = 0
    for path in all_sample_files():
        tags = exifread_tags(path)
        meta = read_photo_meta(str(path))
        if not tags:
            continue
        expected = expected_position(tags)
        if expected is None:
            assert meta.latitude is None and meta.longitude is None, path
        else:
            assert meta.latitude == pytest.approx(expected[0], abs=1e-7), path
            assert meta.longitude == pytest.approx(expected[1], abs=1e-7), path
            checked_gps += 1
        make, model = clean(tags.get("Image Make")), clean(tags.get("Image Model"))
        if make or model:
            assert (meta.make, meta.model) == (make, model), path
            checked_camera += 1
        lens = clean(tags.get("EXIF LensModel"))
        if lens:
            assert meta.lens is not None and meta.lens.endswith(lens), path
        orientation = tags.get("Image Orientation")
        if orientation is not None and 1 <= orientation.values[0] <= 8:
            assert meta.orientation == orientation.values[0], path
    # the shared samples: 9 Nikon GPS test photos, phones, a Kodak with decimal minutes, ...
    assert checked_gps >= 17 and checked_camera >= 50


def test_gps_edge_cases_of_the_odd_files_are_refused_not_guessed():
    odd = shared_data("odd-images")
    # latitude is one 0xFFFFFFFF number, no longitude: no position, and no crash
    assert read_photo_meta(str(odd / "exif_gps.jpg")).latitude is None
    assert read_photo_meta(str(odd / "empty_gps_ifd.jpg")).latitude is None
    assert read_photo_meta(str(odd / "exif_gps_typeerror.jpg")).latitude is None
    # every sample file reads without raising, including the corrupt and non-image ones
    for path in all_sample_files():
        read_photo_meta(str(path))


def test_gps_rationals_with_zero_denominator_missing_refs_and_out_of_range(tmp_path: Path):
    from PIL import TiffImagePlugin

    from pixgrep.images.exif import gps_position

    def position(gps: dict):
        exif = Image.Exif()
        ifd = exif.get_ifd(0x8825)
        ifd.update(gps)
        path = tmp_path / "gps.jpg"
        Image.new("RGB", (8, 8)).save(path, exif=exif)
        with Image.open(path) as image:
            return gps_position(image.getexif())

    R = TiffImagePlugin.IFDRational
    florence = {1: "N", 2: (R(43), R(46), R(45)), 3: "E", 4: (R(11), R(15), R(0))}
    found = position(florence)
    assert found is not None and found.latitude == pytest.approx(43 + 46 / 60 + 45 / 3600)
    assert position({**florence, 2: (R(43), R(46), R(0, 0))}) is None  # 0/0 seconds: unknown
    assert position({k: v for k, v in florence.items() if k not in (1, 3)}).latitude > 0  # no refs: N/E
    assert position({**florence, 1: "X"}) is None  # a ref that is neither N nor S
    assert position({**florence, 2: (R(93), R(0), R(0))}) is None  # latitude > 90
    assert position({**florence, 4: (R(11), R(75), R(0))}) is None  # 75 minutes
    assert position({1: "N", 2: (R(0), R(0), R(0)), 3: "E", 4: (R(0), R(0), R(0))}) is None  # no fix
    with_alt = position({**florence, 5: b"\x01", 6: R(12, 1)})
    assert with_alt is not None and with_alt.altitude == -12.0  # below sea level
    assert position({**florence, 6: R(5, 0)}).altitude is None  # 0/0 altitude: position kept


def embedded_keywords_by_regex(path: Path) -> list[str]:
    """An independent reading of dc:subject from the raw file bytes."""
    data = path.read_bytes().decode("latin-1")
    bag = re.search(r"<dc:subject>\s*<rdf:Bag>(.*?)</rdf:Bag>", data, re.S)
    return re.findall(r"<rdf:li>([^<]*)</rdf:li>", bag.group(1)) if bag else []


def test_embedded_xmp_and_iptc_keywords_title_description():
    folder = shared_data("exif-samples") / "jpg" / "xmp"
    blue = read_photo_meta(str(folder / "BlueSquare.jpg"))
    assert list(blue.keywords) == embedded_keywords_by_regex(folder / "BlueSquare.jpg")
    assert blue.title == "Blue Square Test File - .jpg"
    assert blue.description.startswith("XMPFiles BlueSquare test file")
    assert "tag" in read_photo_meta(str(folder / "no_exif.jpg")).keywords
    long = read_photo_meta(str(shared_data("exif-samples") / "jpg" / "long_description.jpg"))
    assert long.description.startswith("Operation Mountain Viper")


def test_darktable_sidecar_image_name_plus_xmp(tmp_path: Path):
    image = plain_jpeg(tmp_path / "IMG_1.jpg")
    (tmp_path / "IMG_1.jpg.xmp").write_text(DARKTABLE, encoding="utf-8")
    meta = read_photo_meta(str(image))
    assert meta.title == "Ponte Vecchio at dusk"
    assert list(meta.keywords) == ["bridge", "darktable|format|jpg", "Places|Italy|Florence"]


def test_digikam_sidecar_stem_xmp_with_tagslist_description_and_gps(tmp_path: Path):
    image = plain_jpeg(tmp_path / "IMG_2.jpg")
    (tmp_path / "IMG_2.xmp").write_text(DIGIKAM, encoding="utf-8")
    meta = read_photo_meta(str(image))
    assert meta.description == "Anna by the river"
    assert list(meta.keywords) == ["Anna", "Holiday", "People|Anna"]
    assert meta.latitude == pytest.approx(48 + 51.5 / 60) and meta.longitude == pytest.approx(2.29)


def test_pixgrep_classify_sidecar_is_read_back(tmp_path: Path):
    from pixgrep.tagging.xmp import add_keywords

    image = plain_jpeg(tmp_path / "cat.png")
    add_keywords(image, ["cat", "sofa"])
    assert list(read_photo_meta(str(image)).keywords) == ["cat", "sofa"]


def test_broken_sidecars_give_no_fields_and_no_error(tmp_path: Path):
    image = plain_jpeg(tmp_path / "a.jpg")
    (tmp_path / "a.jpg.xmp").write_text("<x:xmpmeta><rdf:RDF>unclosed", encoding="utf-8")
    assert read_photo_meta(str(image)).keywords == ()
    billion = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">' + "".join(
        f'<!ENTITY {c} "' + ("&" + p + ";") * 10 + '">' for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    assert parse_xmp(billion + "]><x:xmpmeta>&i;</x:xmpmeta>").keywords == []


def test_xmp_coordinates():
    assert xmp_coordinate("43,28.0469N", "N") == pytest.approx(43.467448, abs=1e-6)
    assert xmp_coordinate("11,53,6.45E", "E") == pytest.approx(11.885125)
    assert xmp_coordinate("3,43.5W", "E") == pytest.approx(-3.725)
    assert xmp_coordinate("95,0N", "N") is None and xmp_coordinate("10,61E", "E") is None
    assert xmp_coordinate("43,1E", "N") is None and xmp_coordinate("junk", "N") is None


# -- the catalog ---------------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path):
    catalog = CatalogDB(tmp_path / "catalog.db")
    yield catalog
    catalog.close()


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    return build_photo_folder(tmp_path / "photos")


def names(db: CatalogDB, ids) -> set[str]:
    return {os.path.basename(r.path) for r in db.images_by_id(ids).values()}


def test_index_fills_metadata_and_filters_find_exactly_the_expected_images(db, photo_folder):
    index_roots(db, FakeEncoder(), [photo_folder])
    match = lambda **kw: names(db, metadata.matching_ids(db, metadata.MetaFilter(**kw)))
    # 87_OSError.jpg was taken in Florence (43.786 N, 11.235 E); the DSCN ones 50 km away near Arezzo
    assert match(near=(43.77925, 11.24626, 10)) == {"87_OSError.jpg"}
    assert match(near=(43.77925, 11.24626, 80)) == {"87_OSError.jpg", "DSCN0010.jpg", "DSCN0012.jpg"}
    assert match(camera="canon eos") == {"Canon_40D.jpg"}
    assert match(camera="NIKON") == {"DSCN0010.jpg", "DSCN0012.jpg", "87_OSError.jpg", "Nikon_D70.jpg"}
    assert match(tag="blue square") == {"BlueSquare.jpg"}
    assert match(tag="places") == {"bridge.jpg"}  # a parent of Places|Italy|Florence
    assert match(tag="pla*") == {"bridge.jpg"}
    assert match(tag="pla") == set()
    assert match(tag="anna") == {"anna.jpg"}
    assert match(place="Italy") == {"87_OSError.jpg", "DSCN0010.jpg", "DSCN0012.jpg"}
    assert match(place="florence") == {"87_OSError.jpg"}
    assert match(place="spain") == {"iphone_hdr_NO.jpg"}
    assert match(place="france") == {"anna.jpg"}  # its position came from the digiKam sidecar
    assert match(camera="nikon", place="arezzo") == {"DSCN0010.jpg", "DSCN0012.jpg"}
    stats = metadata.counts(db)
    assert (stats["with_gps"], stats["with_camera"], stats["with_keywords"]) == (5, 6, 3)


def test_places_are_at_least_as_near_as_the_reverse_geocode_packages_own_answer(db, photo_folder):
    import reverse_geocode

    from pixgrep.catalog.places import great_circle_km

    index_roots(db, FakeEncoder(), [photo_folder])
    rows = db.conn.execute(
        "SELECT latitude, longitude, city, country_code FROM photo_meta WHERE latitude IS NOT NULL"
    ).fetchall()
    assert len(rows) == 5
    for lat, lon, city, code in rows:
        theirs = reverse_geocode.get((lat, lon))  # nearest by degrees, not by great-circle distance
        ours = db.conn.execute(
            "SELECT 1 FROM photo_meta WHERE city = ? AND country_code = ?", (city, code)
        ).fetchone()
        assert ours and code == theirs["country_code"]
        from pixgrep.catalog.places import lookup

        mine = lookup(f"{city}, {code}")
        assert (
            great_circle_km(lat, lon, mine.latitude, mine.longitude)
            <= great_circle_km(lat, lon, theirs["latitude"], theirs["longitude"]) + 1e-6
        )


def test_sidecar_change_gives_new_keywords_on_the_next_run_without_encoding(db, photo_folder):
    encoder = FakeEncoder()
    index_roots(db, encoder, [photo_folder])
    sidecar = photo_folder / "bridge.jpg.xmp"
    sidecar.write_text(DARKTABLE.replace("<rdf:li>bridge</rdf:li>", "<rdf:li>sunset</rdf:li>"), "utf-8")
    os.utime(sidecar, ns=(1, 10**18))  # a distinct mtime even on a coarse clock
    encoder.images_encoded = 0
    index_roots(db, encoder, [photo_folder])
    assert encoder.images_encoded == 0
    match = lambda tag: names(db, metadata.matching_ids(db, metadata.MetaFilter(tag=tag)))
    assert match("sunset") == {"bridge.jpg"} and match("bridge") == set()
    # a new sidecar beside an image that had none, and a removed one
    (photo_folder / "Canon_40D.xmp").write_text(DIGIKAM, "utf-8")
    (photo_folder / "anna.xmp").unlink()
    index_roots(db, encoder, [photo_folder])
    assert encoder.images_encoded == 0
    assert names(db, metadata.matching_ids(db, metadata.MetaFilter(tag="holiday"))) == {"Canon_40D.jpg"}


def test_unchanged_files_are_not_read_again(db, photo_folder, monkeypatch):
    index_roots(db, FakeEncoder(), [photo_folder])
    calls = []
    monkeypatch.setattr(metadata, "read_photo_meta", lambda *a: calls.append(a))
    index_roots(db, FakeEncoder(), [photo_folder])
    assert calls == []


def test_migration_fills_an_existing_catalog_without_re_encoding(tmp_path: Path, photo_folder):
    path = tmp_path / "old.db"
    encoder = FakeEncoder()
    with _closing(CatalogDB(path)) as db:
        index_roots(db, encoder, [photo_folder])
    # Make it a schema-1 catalog, as a pixgrep before this feature left it.
    conn = sqlite3.connect(path)
    conn.executescript(
        "DROP TRIGGER photo_meta_follows_images; DROP TABLE photo_meta; DROP TABLE photo_keywords; "
        "PRAGMA user_version = 1;"
    )
    conn.close()
    encoder.images_encoded = 0
    with _closing(CatalogDB(path)) as db:
        assert db.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert db.conn.execute("SELECT COUNT(*) FROM photo_meta").fetchone()[0] == 0
        index_roots(db, encoder, [photo_folder])
        assert encoder.images_encoded == 0
        assert metadata.counts(db)["with_gps"] == 5


def test_removed_images_take_their_metadata_with_them(db, photo_folder):
    index_roots(db, FakeEncoder(), [photo_folder])
    (photo_folder / "bridge.jpg").unlink()
    index_roots(db, FakeEncoder(), [photo_folder])
    assert metadata.matching_ids(db, metadata.MetaFilter(tag="bridge")) == set()
    orphans = "SELECT COUNT(*) FROM photo_meta WHERE image_id NOT IN (SELECT id FROM images)"
    assert db.conn.execute(orphans).fetchone()[0] == 0


def test_facets_count_places_cameras_years_tags(db, photo_folder):
    index_roots(db, FakeEncoder(), [photo_folder])
    found = metadata.facets(db)
    places = {f["value"]: f["count"] for f in found["places"]}
    assert places["Arezzo"] == 2 and places["Florence"] == 1
    cameras = {f["label"]: f["count"] for f in found["cameras"]}
    assert cameras["COOLPIX P6000"] if "COOLPIX P6000" in cameras else cameras["NIKON COOLPIX P6000"] == 2
    assert {f["value"] for f in found["tags"]} >= {"Blue Square", "bridge", "Anna"}
    assert (
        sum(f["count"] for f in found["years"])
        == db.conn.execute("SELECT COUNT(*) FROM images WHERE taken_at IS NOT NULL").fetchone()[0]
    )
    scoped = metadata.facets(db, metadata.matching_ids(db, metadata.MetaFilter(place="Italy")))
    assert {f["value"] for f in scoped["countries"]} == {"Italy"}
    assert not db.conn.in_transaction  # the scratch table's writes must not pin a read snapshot


class _closing:
    def __init__(self, db):
        self.db = db

    def __enter__(self):
        return self.db

    def __exit__(self, *exc):
        self.db.close()


# -- places --------------------------------------------------------------------------------------


def test_forward_lookup_and_near_parsing():
    from pixgrep.catalog.places import lookup, parse_near

    assert lookup("Florence").country_code == "IT"
    assert lookup("florence, south carolina").region == "South Carolina"
    assert lookup("SANT JULIÀ DE LÒRIA").country == "Andorra"
    assert parse_near("43.5,11.2", 10) == (43.5, 11.2, 10)
    assert parse_near("43.5, 11.2, 3", 10) == (43.5, 11.2, 3)
    lat, lon, km = parse_near("Florence, 25", 10)
    assert km == 25 and lat == pytest.approx(43.779, abs=0.01)
    for bad in ("95,10", "10,200", "43,11,-1", "Xyzzyville", "Florence, Narnia"):
        with pytest.raises(PixgrepError):
            parse_near(bad, 10)
    with pytest.raises(PixgrepError, match="at most three numbers"):  # not the place "1,2,3" in 4 km
        parse_near("1,2,3,4", 10)


def test_reverse_lookup_uses_great_circle_distance_across_the_dateline():
    from pixgrep.catalog.places import reverse

    # Two points 2 km apart on either side of the 180th meridian in Fiji have the same nearest town
    # (a nearest-by-degrees search puts the east one 190 km away, in the Lau islands).
    west, east = reverse([(-16.8, 179.99), (-16.8, -179.99)])
    assert west is not None and east is not None and west.city == east.city == "Labasa"
    assert reverse([(0.0, -160.0)]) == [None]  # open Pacific: no place within 100 km


# -- filters inside the ranking ------------------------------------------------------------------


def test_allowed_mask_filters_before_top_k(tmp_path):
    from searchkit import add_image, top

    from pixgrep.catalog.db import CatalogDB
    from pixgrep.search.matrix_store import load_matrix

    rows, dim = 50, 4
    vectors = np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float32)
    store = CatalogDB(tmp_path / "mask.db")
    ids = [add_image(store, f"/p/{i:03d}.jpg", vectors[i], model="m") for i in range(rows)]
    matrix = load_matrix(store, "m")
    query = vectors[0]
    order = np.argsort(vectors @ query)
    worst = {ids[i] for i in order[:7]}  # the 7 lowest-scoring images
    hits = top(matrix, query, 5, allowed=worst)
    assert len(hits) == 5 and {h.image_id for h in hits} <= worst
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert top(matrix, query, 5, allowed=set()) == []
    store.close()


def test_listing_without_a_query_is_newest_first(db, photo_folder):
    from pixgrep.search.listing import list_images
    from pixgrep.search.scope import Scope

    index_roots(db, FakeEncoder(), [photo_folder])
    allowed = metadata.matching_ids(db, metadata.MetaFilter(camera="nikon"))
    scope = Scope(allowed=frozenset(allowed))
    listed = list_images(db, scope, k=10)
    assert {os.path.basename(r.path) for r in listed} == names(db, allowed)
    times = [r.taken_at for r in listed if r.taken_at]
    assert times == sorted(times, reverse=True)
    assert len(list_images(db, scope, k=2, offset=1)) == 2
    assert not db.conn.in_transaction


def test_python_api_filters_list_rank_facets_and_stats(tmp_path: Path, photo_folder):
    import pixgrep

    with pixgrep.open_catalog(tmp_path / "api.db", encoder=FakeEncoder()) as catalog:
        catalog.index([photo_folder])
        base = lambda results: sorted(os.path.basename(r.path) for r in results)
        assert base(catalog.search(None, near="Florence")) == ["87_OSError.jpg"]
        assert base(catalog.search("", near=(43.77925, 11.24626, 80))) == [
            "87_OSError.jpg", "DSCN0010.jpg", "DSCN0012.jpg",
        ]  # fmt: skip
        ranked = catalog.search("a photo", camera="nikon", k=2)
        nikons = {"DSCN0010.jpg", "DSCN0012.jpg", "87_OSError.jpg", "Nikon_D70.jpg"}
        assert len(ranked) == 2 and set(base(ranked)) <= nikons
        assert base(catalog.search("x", tag="places", place=None)) == ["bridge.jpg"]
        assert catalog.facets(camera="canon")["cameras"][0]["label"] == "Canon EOS 40D"
        meta = catalog.photo_metadata([r.image_id for r in catalog.search(None, tag="anna")])
        assert [m.country for m in meta.values()] == ["France"]  # the digiKam sidecar's GPS
        assert catalog.stats()["with_keywords"] == 3
        with pytest.raises(PixgrepError):
            catalog.search(None)  # no query, no filter
