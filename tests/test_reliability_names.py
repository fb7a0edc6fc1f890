"""File names that are not UTF-8 (Latin-1, Shift-JIS, invalid bytes) through the real CLI and the
real server: indexed once, stored exactly, searched, printed exactly by -f and --json, shown
escaped in the table, served as thumbnails, and given XMP sidecars."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from reliability_kit import ODD_NAMES, make_image, pixgrep, start_server, stop, wait_for_index

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def odd_folder(tmp_path: Path) -> tuple[Path, set[bytes]]:
    folder = tmp_path / "odd"
    folder.mkdir()
    names = [*ODD_NAMES, b"plain.jpg"]
    for seed, name in enumerate(names):
        make_image(os.path.join(os.fsencode(folder), name), seed)
    return folder, {os.path.join(os.fsencode(folder), name) for name in names}


def test_odd_names_index_search_json_paths_and_xmp(tmp_path, tiny_model_dir):
    folder, files = odd_folder(tmp_path)
    catalog = tmp_path / "catalog.db"
    common = ("--catalog", catalog, "--model", tiny_model_dir)

    first = pixgrep("index", folder, *common, "--json")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["found"] == 4 and summary["encoded"] + summary["reused"] == 4, summary
    again = json.loads(pixgrep("index", folder, *common, "--json").stdout)
    assert (again["encoded"], again["reused"], again["removed"]) == (0, 0, 0), again  # stored exactly

    paths = pixgrep("-n", "--in", folder, "-k", "10", "-f", "a photo", *common, text=False)
    assert paths.returncode == 0, paths.stderr
    assert set(paths.stdout.splitlines()) == files  # the bytes on disk, for xargs

    lines = pixgrep("-n", "--in", folder, "-k", "10", "--json", "a photo", *common).stdout.splitlines()
    assert {os.fsencode(json.loads(line)["path"]) for line in lines} == files

    table = pixgrep("-n", "--in", folder, "-k", "10", "a photo", *common)
    assert (
        table.returncode == 0 and "caf\\xe9.jpg" in table.stdout and "bad\\xff\\xfe\\x80.png" in table.stdout
    )

    # A file whose name is not UTF-8 can be an image term too; its row is found by its path, which
    # is what leaves the query's own image out of the results.
    latin = os.path.join(os.fsencode(folder), ODD_NAMES[0])
    similar = pixgrep("-n", "--in", folder, "-f", "-k", "10", latin, *common, text=False)
    assert similar.returncode == 0 and set(similar.stdout.splitlines()) == files - {latin}, similar.stderr

    # Deleted odd names leave the catalog; nothing else is touched.
    os.unlink(latin)
    gone = json.loads(pixgrep("index", folder, *common, "--json").stdout)
    assert (gone["removed"], gone["encoded"]) == (1, 0), gone
    conn = sqlite3.connect(catalog)
    kinds = dict(conn.execute("SELECT typeof(path), COUNT(*) FROM images GROUP BY 1").fetchall())
    conn.close()
    assert kinds == {"text": 1, "blob": 2}  # UTF-8 names stay TEXT, as in catalogs made before

    xmp = pixgrep(
        "classify", *sorted(files - {latin}), "--labels", "red,blue", "--write-xmp", "--model", tiny_model_dir
    )
    assert xmp.returncode == 0, xmp.stderr
    for path in files - {latin}:
        assert os.path.exists(path + b".xmp")


def test_odd_names_through_the_server(tmp_path, tiny_model_dir):
    import httpx

    folder, files = odd_folder(tmp_path)
    process, url = start_server("--catalog", tmp_path / "catalog.db", "--model", tiny_model_dir)
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            assert http.post("/api/index", json={"folder": str(folder)}).status_code == 202
            status = wait_for_index(http)
            assert status["state"] == "done" and status["summary"]["found"] == 4, status
            response = http.get("/api/search", params={"q": "a photo", "k": 10})
            assert response.status_code == 200, response.text
            results = response.json()["results"]
            assert {os.fsencode(r["path"]) for r in results} == files
            for result in results:
                thumb = http.get(result["thumb"])
                assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
                info = http.get(f"/api/images/{result['id']}")
                assert info.status_code == 200 and info.json()["path"] == result["path"]
            assert http.get("/api/folders").json()["folders"] == [{"folder": str(folder), "images": 4}]
            knn = http.post("/knn-service", json={"text": "a photo", "deduplicate": False, "num_images": 10})
            assert knn.status_code == 200 and {os.fsencode(r["image_path"]) for r in knn.json()} == files
    finally:
        stop(process)


def test_a_listing_by_date_shows_names_in_no_encoding(tmp_path, tiny_model_dir):
    """`--after 2000 -n` with no query lists from the catalog by capture time: a name stored as
    raw bytes is listed like any other (the listing reads paths as the search does)."""
    from PIL import Image

    folder = tmp_path / "dated"
    folder.mkdir()
    names = [b"caf\xe9.jpg", b"plain.jpg"]
    for year, name in enumerate(names, start=2019):
        exif = Image.Exif()
        exif[0x0132] = f"{year}:05:04 12:30:00"  # IFD0 DateTime
        Image.new("RGB", (32, 32), (40 * year % 256, 90, 160)).save(
            os.fsdecode(os.path.join(os.fsencode(folder), name)), "JPEG", exif=exif
        )
    catalog = tmp_path / "catalog.db"
    common = ("--catalog", catalog, "--model", tiny_model_dir)
    assert pixgrep("index", folder, *common).returncode == 0
    listed = pixgrep("--after", "2000", "-n", "-k", "100", "--in", folder, "-f", *common, text=False)
    assert listed.returncode == 0 and b"Traceback" not in listed.stderr, listed.stderr
    wanted = [os.path.join(os.fsencode(folder), name) for name in reversed(names)]  # newest first
    assert listed.stdout.splitlines() == wanted


def test_a_name_in_no_encoding_goes_through_export_and_import_exactly(tmp_path, tiny_model_dir):
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    folder, files = odd_folder(tmp_path)
    common = ("--model", tiny_model_dir)
    assert pixgrep("index", folder, "--catalog", tmp_path / "a.db", *common).returncode == 0
    out = tmp_path / "rows.parquet"
    done = pixgrep("export", "--parquet", out, "--catalog", tmp_path / "a.db", *common)
    assert done.returncode == 0, done.stderr
    table = pq.read_table(out).to_pydict()
    assert "/caf\\xe9.jpg" in " ".join(table["path"])  # readable text where the name has no encoding
    assert {raw for raw in table["path_bytes"] if raw is not None} == files - {
        os.path.join(os.fsencode(folder), b"plain.jpg")
    }
    done = pixgrep("import", out, "--catalog", tmp_path / "b.db", *common)
    assert done.returncode == 0, done.stderr
    listed = pixgrep(
        "-n", "--in", folder, "-k", "10", "-f", "a photo", "--catalog", tmp_path / "b.db", *common, text=False
    )
    assert listed.returncode == 0 and set(listed.stdout.splitlines()) == files, listed.stderr
