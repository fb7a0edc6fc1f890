"""Text in the pictures of object-store rows (paths that are URIs, as a `--ray` run of a prefix
stores them): the words step reads them through images/storage.py, file:// and a local S3 server
(moto, tests/objectstore.py), with a fake text reader. An object that cannot be fetched is one
warning and is tried again by the next run; a store that is down stops the fetching early."""

from __future__ import annotations

import logging
import shutil
import socket
from pathlib import Path

import pytest
from fakes import FakeEncoder
from test_words import FakeReader, picture

pa = pytest.importorskip("pyarrow", reason="needs the parquet extra (pip install 'pixgrep[parquet]')")
pq = pytest.importorskip("pyarrow.parquet")

import pixgrep  # noqa: E402
from pixgrep.catalog import ocr_pass, words  # noqa: E402
from pixgrep.images import storage  # noqa: E402

NOTE_SIZE = (80, 60)  # the fake reader finds text in pictures of this size
PREFIX = "photos/notes"


@pytest.fixture
def reader(monkeypatch) -> FakeReader:
    fake = FakeReader({NOTE_SIZE: "FERRY TERMINAL gate B14"})
    monkeypatch.setattr(ocr_pass, "TextReader", lambda threads=None: fake)
    monkeypatch.setattr(ocr_pass, "require_ocr", lambda: None)
    return fake


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "pics"
    picture(root / "ticket.png", 1, size=NOTE_SIZE)
    for n in range(5):
        picture(root / f"street_{n}.png", 10 + n)
    return root


def uri_catalog(tmp_path: Path, folder: Path, uri_of) -> Path:
    """A catalog whose rows are the folder's pictures at the URIs uri_of(file) gives: a local
    index exported, its paths mapped, imported (with their content hashes, as a Ray run stores)."""
    with pixgrep.open_catalog(tmp_path / "local.db", encoder=FakeEncoder()) as local:
        local.index([folder])
        local.export_parquet(tmp_path / "local.parquet", "fake")
    table = pq.read_table(tmp_path / "local.parquet")
    paths = [uri_of(Path(p)) for p in table.column("path").to_pylist()]
    table = table.set_column(table.schema.get_field_index("path"), "path", pa.array(paths))
    pq.write_table(table.drop_columns(["path_bytes"]), tmp_path / "uris.parquet")
    with pixgrep.open_catalog(tmp_path / "uris.db", encoder=FakeEncoder()) as cat:
        cat.import_parquet([tmp_path / "uris.parquet"])
    return tmp_path / "uris.db"


def read_text(catalog: Path, root: str) -> ocr_pass.TextSummary:
    """The words step an index run of `root` ends with (Catalog.index, also after `--ray`)."""
    with pixgrep.open_catalog(catalog, encoder=FakeEncoder()) as cat:
        summary = ocr_pass.after_index(cat._db, [root], ocr=True, progress=False)
    assert summary is not None
    return ocr_pass.TextSummary(**summary)


def words_found(catalog: Path, query: str) -> list[str]:
    with pixgrep.open_catalog(catalog, encoder=FakeEncoder()) as cat:
        return [r.path for r in cat.search(f"words:{query}", k=5)]


def test_file_uri_rows_are_read_once_per_content(tmp_path, folder, reader):
    catalog = uri_catalog(tmp_path, folder, lambda p: p.as_uri())
    summary = read_text(catalog, folder.as_uri() + "/")
    assert (summary.read, summary.with_text, summary.unreachable) == (6, 1, 0)
    assert words_found(catalog, "ferry terminal") == [(folder / "ticket.png").as_uri()]
    with pixgrep.open_catalog(catalog, encoder=FakeEncoder()) as cat:  # a URI scope takes word hits
        assert len(cat.search("words:ferry", roots=[folder.as_uri()])) == 1
        assert cat.search("words:ferry", roots=[folder.as_uri() + "-other"]) == []
    assert read_text(catalog, folder.as_uri()).read == 0 and reader.calls == 6  # not read again


def test_an_object_over_the_cap_is_indexed_without_text_once(tmp_path, folder, reader, monkeypatch, caplog):
    catalog = uri_catalog(tmp_path, folder, lambda p: p.as_uri())
    monkeypatch.setattr(ocr_pass, "OBJECT_MAX_BYTES", 100)  # every picture is bigger
    with caplog.at_level(logging.WARNING):
        summary = read_text(catalog, folder.as_uri())
        assert (summary.read, summary.failed, summary.unreachable) == (6, 6, 0) and reader.calls == 0
        assert read_text(catalog, folder.as_uri()).read == 0  # stored as read: not fetched again
    lines = [r.getMessage() for r in caplog.records if "cannot read text" in r.getMessage()]
    assert len(lines) == 6 and all("byte cap" in line for line in lines)


def test_s3_rows_are_read_and_a_missing_object_is_tried_again_next_run(tmp_path, folder, reader, caplog):
    from objectstore import s3_server

    with s3_server() as store:
        uris = {Path(u).name: u for u in store.upload(sorted(folder.iterdir()), PREFIX)}
        catalog = uri_catalog(tmp_path, folder, lambda p: uris[p.name])
        store.delete(uris["ticket.png"])
        with caplog.at_level(logging.WARNING):
            summary = read_text(catalog, f"s3://{PREFIX}")
        assert (summary.read, summary.unreachable) == (5, 1)
        lines = [r.getMessage() for r in caplog.records if "cannot fetch" in r.getMessage()]
        assert len(lines) == 1 and "ticket.png" in lines[0] and "gone" in lines[0]
        assert words_found(catalog, "ticket") == [uris["ticket.png"]]  # kept, found by its name
        assert words_found(catalog, "ferry") == []

        store.upload([folder / "ticket.png"], PREFIX)  # back: the next run reads it
        again = read_text(catalog, f"s3://{PREFIX}")
        assert (again.read, again.with_text, again.unreachable) == (1, 1, 0)
        assert words_found(catalog, "ferry terminal") == [uris["ticket.png"]]


def test_a_store_that_is_gone_stops_the_fetching_early(tmp_path, folder, reader, caplog):
    many = tmp_path / "many"
    shutil.copytree(folder, many)
    for n in range(20):
        picture(many / f"more_{n}.png", 100 + n)
    catalog = uri_catalog(tmp_path, many, lambda p: p.as_uri())
    shutil.rmtree(many)  # every object gone
    with caplog.at_level(logging.WARNING):
        summary = read_text(catalog, many.as_uri())
    assert (summary.read, summary.unreachable) == (0, 26) and reader.calls == 0
    said = [r.getMessage() for r in caplog.records]
    fetches = [line for line in said if "cannot fetch" in line]
    assert ocr_pass.MAX_OBJECT_FAILURES <= len(fetches) < ocr_pass.MAX_OBJECT_FAILURES + ocr_pass.MAX_THREADS
    assert len([line for line in said if "stopped fetching objects" in line]) == 1
    with pixgrep.open_catalog(catalog, encoder=FakeEncoder()) as cat:
        assert words.hashes_read(cat._db) == set()  # nothing stored: the next run tries them all
        assert cat.stats()["images"] == 26  # every row kept


def test_a_store_that_never_answers_costs_the_deadline_not_a_hang(
    tmp_path, folder, reader, monkeypatch, caplog
):
    from objectstore import s3_server

    with s3_server() as store:
        uris = {Path(u).name: u for u in store.upload(sorted(folder.iterdir()), PREFIX)}
        catalog = uri_catalog(tmp_path, folder, lambda p: uris[p.name])
        with socket.socket() as silent:  # accepts connections, never answers
            silent.bind(("127.0.0.1", 0))
            silent.listen(8)
            monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
            monkeypatch.setattr(ocr_pass, "OBJECT_TIMEOUT_S", 0.5)
            monkeypatch.setattr(storage, "S3_REQUEST_TIMEOUT_S", 2.0)  # so the pool thread ends soon after
            monkeypatch.setattr(storage, "S3_ATTEMPTS", 1)
            with caplog.at_level(logging.WARNING):
                summary = read_text(catalog, f"s3://{PREFIX}")
    assert (summary.read, summary.unreachable) == (0, 6)
    assert any("did not answer in 0.5 s" in r.getMessage() for r in caplog.records)
