"""Indexing through the Python API with FakeEncoder: change detection, reuse, removal, skipping."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data
from fakes import FakeEncoder
from PIL import Image

from pixgrep.catalog.db import CatalogDB
from pixgrep.catalog.ingest import DRAFT_FACTOR, content_hash, index_roots
from pixgrep.catalog.searchable import searchable_rows
from pixgrep.errors import PixgrepError
from pixgrep.images.decode import decode_file


def make_image(path: Path, seed: int, size: tuple[int, int] = (64, 48), fmt: str | None = None) -> Path:
    """A distinct picture per seed (blocks of colour, so the fake encoder tells them apart)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize(size, Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)
    return path


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    for i in range(6):
        make_image(root / f"img{i}.jpg", i)
    make_image(root / "sub" / "deep" / "pic.png", 100)
    return root


@pytest.fixture
def db(tmp_path: Path):
    catalog = CatalogDB(tmp_path / "catalog.db")
    yield catalog
    catalog.close()


def rows(db: CatalogDB) -> dict[str, tuple]:
    return {p: (r.content_hash, r.width, r.height, r.format, r.error) for p, r in db.images_by_path().items()}


def test_first_run_encodes_every_image_and_second_run_nothing(db, photos):
    enc = FakeEncoder()
    first = index_roots(db, enc, [photos], batch_size=4)
    assert (first.found, first.encoded, first.reused, first.skipped, first.removed) == (7, 7, 0, 0, 0)
    assert enc.images_encoded == 7
    stored = db.images_by_path()
    assert set(stored) == {str(p) for p in photos.rglob("*.*")}
    png = stored[str(photos / "sub" / "deep" / "pic.png")]
    assert (png.width, png.height, png.format, png.error) == (64, 48, "PNG", None)
    hashes = {r.content_hash for r in stored.values()}
    assert db.hashes_with_vectors_among("fake", [*hashes, "never-stored"]) == hashes

    generation = db.generation()
    second = index_roots(db, enc, [photos])
    assert (second.found, second.encoded, second.reused, second.removed) == (7, 0, 0, 0)
    assert enc.images_encoded == 7
    assert db.generation() == generation  # nothing changed, so the search matrix stays valid


def test_stored_vectors_are_the_encoders_vectors(db, photos):
    enc = FakeEncoder()
    index_roots(db, enc, [photos])
    path = photos / "img3.jpg"
    record = db.images_by_path([str(path)])[str(path)]
    # decoded as the indexer does: at >= DRAFT_FACTOR times the model's input side (8 px here)
    expected = enc.encode_images([decode_file(path, draft_size=DRAFT_FACTOR * 8)[0]])[0]
    assert not np.allclose(expected, enc.encode_images([Image.open(path)])[0], atol=2e-3)
    stored = db.vector_for_hash(record.content_hash, "fake").astype(np.float32)
    assert np.allclose(stored, expected, atol=2e-3)


def test_rename_and_move_reuse_the_vector_without_the_model(db, photos):
    enc = FakeEncoder()
    index_roots(db, enc, [photos])
    before = rows(db)
    (photos / "img1.jpg").rename(photos / "renamed.jpg")
    (photos / "sub" / "deep" / "pic.png").rename(photos / "moved.png")
    enc.images_encoded = 0
    summary = index_roots(db, enc, [photos])
    assert enc.images_encoded == 0
    assert (summary.encoded, summary.reused, summary.removed) == (0, 2, 2)
    after = rows(db)
    assert str(photos / "img1.jpg") not in after
    assert after[str(photos / "renamed.jpg")] == before[str(photos / "img1.jpg")]
    assert after[str(photos / "moved.png")] == before[str(photos / "sub" / "deep" / "pic.png")]


def test_duplicates_reuse_the_vector(db, photos):
    enc = FakeEncoder()
    index_roots(db, enc, [photos])
    shutil.copy(photos / "img2.jpg", photos / "copy-of-2.jpg")
    enc.images_encoded = 0
    summary = index_roots(db, enc, [photos])
    assert (enc.images_encoded, summary.encoded, summary.reused) == (0, 0, 1)
    stored = db.images_by_path()
    assert stored[str(photos / "copy-of-2.jpg")].content_hash == stored[str(photos / "img2.jpg")].content_hash


def test_duplicates_found_in_one_run_are_encoded_once(db, tmp_path):
    root = tmp_path / "dupes"
    make_image(root / "a.jpg", 7)
    for name in ("b.jpg", "c.jpg", "d/e.jpg"):
        (root / name).parent.mkdir(exist_ok=True)
        shutil.copy(root / "a.jpg", root / name)
    enc = FakeEncoder()
    summary = index_roots(db, enc, [root], batch_size=2)
    assert enc.images_encoded == 1
    assert (summary.found, summary.encoded, summary.reused) == (4, 1, 3)
    assert len({r.content_hash for r in db.images_by_path().values()}) == 1


def test_deleted_file_leaves_the_results_and_its_unshared_vector(db, photos):
    enc = FakeEncoder()
    index_roots(db, enc, [photos])
    gone = db.images_by_path()[str(photos / "img4.jpg")]
    (photos / "img4.jpg").unlink()
    generation = db.generation()
    summary = index_roots(db, enc, [photos])
    assert summary.removed == 1
    assert str(photos / "img4.jpg") not in db.images_by_path()
    assert all(os.fsdecode(row[1]) != str(photos / "img4.jpg") for row in searchable_rows(db, "fake"))
    assert db.vector_for_hash(gone.content_hash, "fake") is None
    assert db.generation() > generation


def test_changed_file_is_re_encoded(db, photos):
    enc = FakeEncoder()
    index_roots(db, enc, [photos])
    path = photos / "img0.jpg"
    old = db.images_by_path([str(path)])[str(path)]
    make_image(path, 999, size=(80, 40))
    os.utime(path, ns=(old.mtime_ns + 10**9, old.mtime_ns + 10**9))
    enc.images_encoded = 0
    summary = index_roots(db, enc, [photos])
    assert (enc.images_encoded, summary.encoded, summary.reused) == (1, 1, 0)
    new = db.images_by_path([str(path)])[str(path)]
    assert new.id == old.id  # same row, updated in place
    assert new.content_hash != old.content_hash
    assert (new.width, new.height) == (80, 40)


def test_touched_file_with_same_content_is_not_re_encoded(db, photos):
    enc = FakeEncoder()
    index_roots(db, enc, [photos])
    path = photos / "img5.jpg"
    os.utime(path, ns=(1, 10**18))
    enc.images_encoded = 0
    summary = index_roots(db, enc, [photos])
    assert (enc.images_encoded, summary.reused) == (0, 1)
    assert db.images_by_path([str(path)])[str(path)].mtime_ns == 10**18


def test_undecodable_file_is_recorded_once_and_not_retried(db, photos, capsys):
    bad = photos / "broken.jpg"
    bad.write_bytes(b"this is not a jpeg")
    enc = FakeEncoder()
    warnings: list[tuple[str, str]] = []
    first = index_roots(db, enc, [photos], on_warning=lambda p, r: warnings.append((p, r)))
    assert first.skipped == 1 and first.encoded == 7
    assert warnings == [(str(bad), "not an image pixgrep can read")]
    record = db.images_by_path([str(bad)])[str(bad)]
    assert record.error == "not an image pixgrep can read"
    assert all(os.fsdecode(row[1]) != str(bad) for row in searchable_rows(db, "fake"))

    warnings.clear()
    second = index_roots(db, enc, [photos], on_warning=lambda p, r: warnings.append((p, r)))
    assert warnings == [] and second.skipped == 1 and second.encoded == 0

    make_image(bad, 55, fmt="JPEG")  # fixed: now a real picture with a new size and mtime
    third = index_roots(db, enc, [photos], on_warning=lambda p, r: warnings.append((p, r)))
    assert third.encoded == 1 and third.skipped == 0
    assert db.images_by_path([str(bad)])[str(bad)].error is None


def test_default_warning_is_one_line_on_stderr(db, tmp_path, capsys, cli_logging):
    root = tmp_path / "w"
    root.mkdir()
    (root / "empty.png").write_bytes(b"")
    index_roots(db, FakeEncoder(), [root])
    err = capsys.readouterr().err
    assert err == f"pixgrep: warning: {root / 'empty.png'}: not an image pixgrep can read\n"


def test_hidden_and_junk_are_skipped_unless_asked(db, tmp_path):
    root = tmp_path / "lib"
    make_image(root / "visible.jpg", 1)
    make_image(root / ".hidden.jpg", 2)
    make_image(root / ".private" / "x.jpg", 3)
    for junk in (".git", "node_modules", "__pycache__", "@eaDir", "$RECYCLE.BIN", "lost+found"):
        make_image(root / junk / "thumb.jpg", 4)
    (root / "notes.txt").write_text("not an image")
    enc = FakeEncoder()
    assert index_roots(db, enc, [root]).found == 1
    summary = index_roots(db, enc, [root], include_hidden=True)
    assert summary.found == 3  # hidden files and folders, but junk folders stay out
    assert {Path(p).name for p in db.images_by_path()} == {"visible.jpg", ".hidden.jpg", "x.jpg"}


def test_exclude_globs_match_names_and_relative_paths(db, tmp_path):
    root = tmp_path / "lib"
    make_image(root / "keep.jpg", 1)
    make_image(root / "skip.png", 2)
    make_image(root / "drafts" / "a.jpg", 3)
    make_image(root / "year" / "raw" / "b.jpg", 4)
    make_image(root / "year" / "c.jpg", 5)
    summary = index_roots(db, FakeEncoder(), [root], exclude=["*.png", "drafts", "year/raw"])
    assert summary.found == 2
    assert {Path(p).name for p in db.images_by_path()} == {"keep.jpg", "c.jpg"}


def test_excluded_file_that_still_exists_keeps_its_row(db, photos):
    enc = FakeEncoder()
    index_roots(db, enc, [photos])
    summary = index_roots(db, enc, [photos], exclude=["img0.jpg"])
    assert summary.removed == 0 and str(photos / "img0.jpg") in db.images_by_path()


def test_removal_only_touches_the_walked_folders(db, tmp_path):
    a, b = tmp_path / "a", tmp_path / "ab"
    make_image(a / "1.jpg", 1)
    make_image(b / "2.jpg", 2)
    enc = FakeEncoder()
    index_roots(db, enc, [a, b])
    (b / "2.jpg").unlink()
    assert index_roots(db, enc, [a]).removed == 0  # "/ab" is not below "/a"
    assert str(b / "2.jpg") in db.images_by_path()
    assert index_roots(db, enc, [b]).removed == 1


def test_another_model_keeps_the_first_models_vectors(db, photos):
    first, second = FakeEncoder("model-a"), FakeEncoder("model-b")
    index_roots(db, first, [photos])
    summary = index_roots(db, second, [photos])
    assert second.images_encoded == 7 and summary.encoded == 7
    hashes = {r.content_hash for r in db.images_by_path().values()}
    assert len(hashes) == 7
    assert (
        db.hashes_with_vectors_among("model-a", hashes)
        == db.hashes_with_vectors_among("model-b", hashes)
        == hashes
    )
    assert index_roots(db, first, [photos]).encoded == 0


def test_missing_root_is_a_user_error(db, tmp_path):
    with pytest.raises(PixgrepError, match="no such folder or file"):
        index_roots(db, FakeEncoder(), [tmp_path / "nope"])


def test_files_named_as_roots_are_indexed_alone_and_keep_their_rows(db, tmp_path):
    for i in range(4):
        make_image(tmp_path / "photos" / f"{i}.jpg", i)
    (tmp_path / "photos" / "notes.txt").write_text("not a picture")
    chosen = [tmp_path / "photos" / "0.jpg", tmp_path / "photos" / "2.jpg"]
    warnings = []
    encoder = FakeEncoder()
    summary = index_roots(
        db, encoder, [*chosen, tmp_path / "photos" / "notes.txt"], on_warning=lambda p, r: warnings.append(p)
    )
    assert summary.found == 2 and encoder.images_encoded == 2
    assert warnings == [str(tmp_path / "photos" / "notes.txt")]
    assert sorted(db.images_by_path()) == sorted(str(p) for p in chosen)
    # the folder walk later finds the same rows (same spelling), encoding only the two others
    summary = index_roots(db, encoder, [tmp_path / "photos"])
    assert (summary.found, summary.encoded, summary.removed) == (4, 2, 0)
    assert encoder.images_encoded == 4


def test_progress_callback_sees_every_committed_batch(db, tmp_path):
    root = tmp_path / "many"
    for i in range(10):
        make_image(root / f"{i}.jpg", i)
    seen = []
    index_roots(db, FakeEncoder(), [root], batch_size=3, progress=lambda s: seen.append(s.encoded))
    assert seen[:4] == [3, 6, 9, 10]


def test_interrupt_keeps_committed_batches_and_resume_encodes_only_the_rest(db, tmp_path):
    root = tmp_path / "many"
    for i in range(12):
        make_image(root / f"{i:02}.jpg", i)

    class Interrupting(FakeEncoder):
        def encode_pixels(self, pixels):
            if self.images_encoded >= 8:
                raise KeyboardInterrupt
            return super().encode_pixels(pixels)

    with pytest.raises(KeyboardInterrupt):
        index_roots(db, Interrupting(), [root], batch_size=4)
    stored = db.images_by_path()
    hashes = {r.content_hash for r in stored.values()}
    assert len(stored) == 8 and len(db.hashes_with_vectors_among("fake", hashes)) == 8
    enc = FakeEncoder()
    summary = index_roots(db, enc, [root], batch_size=4)
    assert enc.images_encoded == 4 and summary.encoded == 4
    reference = CatalogDB(tmp_path / "reference.db")
    index_roots(reference, FakeEncoder(), [root], batch_size=5)
    assert rows(db) == rows(reference)
    reference.close()


def test_content_hash_reads_head_tail_and_size(tmp_path):
    big = tmp_path / "big.bin"
    data = bytearray(os.urandom(3 << 20))
    big.write_bytes(data)
    digest = content_hash(str(big), len(data))
    data[2 << 20] ^= 0xFF  # the middle is not read
    big.write_bytes(data)
    assert content_hash(str(big), len(data)) == digest
    data[-1] ^= 0xFF
    big.write_bytes(data)
    assert content_hash(str(big), len(data)) != digest
    small = tmp_path / "small.bin"
    small.write_bytes(b"abc")
    assert content_hash(str(small), 3) != content_hash(str(big), len(data))


def test_every_odd_image_is_indexed_or_skipped_with_one_warning(db, tmp_path, capsys, cli_logging):
    odd = shared_data("odd-images")
    root = tmp_path / "odd"
    shutil.copytree(odd, root)
    summary = index_roots(db, FakeEncoder(), [root], batch_size=8)
    err_lines = capsys.readouterr().err.splitlines()
    assert all(line.startswith(f"pixgrep: warning: {root}/") for line in err_lines), err_lines
    warned = [line.split(": ")[2] for line in err_lines]
    assert len(warned) == len(set(warned)) == summary.skipped
    stored = db.images_by_path()
    assert summary.found == len(stored)
    assert {p for p, r in stored.items() if r.error} == set(warned)
    assert summary.encoded + summary.reused == summary.found - summary.skipped
    # the files that must never be indexed, and a few that naive loaders get wrong but must work
    for name in ("empty.jpg", "not_an_image.jpg", "decompression_bomb.gif", "bmp_b_reallybig.bmp"):
        assert stored[str(root / name)].error, name
    for name in (
        "pil_sample_cmyk.jpg",
        "hopper.Lab.tif",
        "hopper.psd",
        "iss634.webp",
        "hopper_16bit.pgm",
        "tiff_16bit_RGB.tiff",
        "hopper.avif",
    ):
        assert stored[str(root / name)].error is None, name


def test_raw_files_without_rawpy_are_skipped_with_one_note_and_not_stored(db, photos, monkeypatch):
    import pixgrep.catalog.ingest as ingest

    monkeypatch.setattr(ingest, "raw_supported", lambda: False)
    for name in ("a.CR2", "b.nef", "sub/c.dng"):
        (photos / name).write_bytes(b"raw sensor data")
    notes: list[tuple[str, str]] = []
    summary = index_roots(db, FakeEncoder(), [photos], on_warning=lambda p, r: notes.append((p, r)))
    assert (summary.found, summary.encoded, summary.skipped) == (10, 7, 3)
    assert len(notes) == 1 and "3 camera RAW file(s)" in notes[0][1] and "pixgrep[raw]" in notes[0][1]
    assert not any(p.lower().endswith((".cr2", ".nef", ".dng")) for p in db.images_by_path())


def test_the_diff_asks_about_the_hashes_it_meets_by_primary_key(db):
    """More hashes than one query binds, a model with none of them, and the index SQLite uses."""
    vectors = {f"h{i:04d}": np.ones(4, np.float32) for i in range(1200)}
    db.write_batch([], vectors, "model-a")
    asked = [f"h{i:04d}" for i in range(0, 2400, 2)] + ["h0000"]  # half stored, one asked twice
    assert db.hashes_with_vectors_among("model-a", asked) == {h for h in asked if h in vectors}
    assert db.hashes_with_vectors_among("model-b", asked) == set()
    assert db.hashes_with_vectors_among("model-a", []) == set()
    plan = db.conn.execute(
        "EXPLAIN QUERY PLAN SELECT content_hash FROM embeddings WHERE model = ? AND content_hash IN (?, ?)",
        ("model-a", "h0001", "h0002"),
    ).fetchall()
    assert any("INDEX" in row[-1] and "content_hash=?" in row[-1] for row in plan), plan
