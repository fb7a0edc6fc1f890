"""Duplicate folding needs the eye's agreement: a model's near-duplicate is confirmed by the
pictures' perceptual fingerprints (images/fingerprint.py), and a group shows its best copy.

Unit checks on generated pictures, then the calibration target on real photos: pixgrep-mini over
the 1000 Flickr8k test photos plus planted copies of 60 of them."""

from __future__ import annotations

import io
import random
import shutil

import numpy as np
import pytest
from mini_support import mini_cache, pixgrep_cache  # noqa: F401  (session fixture)
from PIL import Image, ImageDraw, ImageFont
from test_mini_e2e import _pixgrep, indexed_test_split  # noqa: F401  (session fixture)

from pixgrep.images.fingerprint import fingerprint, look_alike
from pixgrep.search import dedup


def _scene(seed: int, size=(320, 240)) -> Image.Image:
    """A photo-like picture: smooth random colour fields with a few shapes on them."""
    rng = np.random.default_rng(seed)
    field = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)
    draw = ImageDraw.Draw(field)
    for _ in range(6):
        x, y = int(rng.integers(0, size[0] - 40)), int(rng.integers(0, size[1] - 40))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse((x, y, x + int(rng.integers(20, 90)), y + int(rng.integers(20, 90))), fill=colour)
    return field


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _alike(a: Image.Image, b: Image.Image) -> bool:
    one, two = fingerprint(a), fingerprint(b)
    assert one is not None and two is not None
    return bool(look_alike(np.frombuffer(one, np.uint8), np.frombuffer(two, np.uint8)))


def _recoloured(image: Image.Image, turn: int) -> Image.Image:
    h, s, v = image.convert("HSV").split()
    return Image.merge("HSV", (h.point(lambda x: (x + turn) % 256), s, v)).convert("RGB")


def test_copies_look_alike_and_other_pictures_do_not():
    photo = _scene(1)
    for copy in (
        _jpeg(photo, 60),
        photo.resize((160, 120), Image.BICUBIC),
        photo.resize((480, 360), Image.BICUBIC),
        _jpeg(photo.resize((180, 135)), 70),
    ):
        assert _alike(photo, copy)
    for seed in range(2, 8):  # other pictures
        assert not _alike(photo, _scene(seed))
    assert not _alike(photo, _recoloured(photo, 85))  # the same dress in another colour
    assert not _alike(Image.new("RGB", (64, 64), "red"), Image.new("RGB", (64, 64), "blue"))
    assert not _alike(photo, photo.crop((0, 0, 240, 180)).resize((320, 240)))  # a crop is a new framing


def test_screenshots_of_one_layout_with_other_words_do_not_look_alike():
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", 22)
    except OSError:
        pytest.skip("needs the DejaVu fonts (fonts-dejavu-core) to render text")

    def screenshot(lines):
        image = Image.new("RGB", (800, 600), "white")
        draw = ImageDraw.Draw(image)
        draw.rectangle((0, 0, 800, 60), fill=(40, 90, 200))
        for i, line in enumerate(lines):
            draw.text((40, 100 + 40 * i), line, fill="black", font=font)
        return image

    invoice = screenshot(["Invoice 2041", "Total due: 341.20 EUR", "Pay before 12 March", "Thank you"])
    receipt = screenshot(["Receipt 9913", "Amount paid: 18.75 USD", "Card ending 4421", "Have a nice day"])
    assert not _alike(invoice, receipt)
    assert _alike(invoice, _jpeg(invoice, 75))


def _candidate(key, score, content, vector, image, *, mtime=0, pixels=0):
    bits = fingerprint(image) if image is not None else None
    return dedup.Candidate(key, score, content, mtime, f"/p/{key}.jpg", vector, bits, pixels)


def test_folding_needs_the_model_and_the_fingerprint():
    rng = np.random.default_rng(5)
    base = rng.standard_normal(32).astype(np.float32)
    base /= np.linalg.norm(base)
    close = base + 0.1 * rng.standard_normal(32).astype(np.float32)
    close /= np.linalg.norm(close)
    far = rng.standard_normal(32).astype(np.float32)
    far /= np.linalg.norm(far)
    photo, other = _scene(1), _scene(2)
    candidates = [
        _candidate(1, 0.9, "a", base, photo),
        _candidate(2, 0.8, "b", close, photo.resize((160, 120))),  # a copy: folds
        _candidate(3, 0.7, "c", close, other),  # the model's look-alike, another picture: stays
        _candidate(4, 0.6, "d", far, photo),  # looks alike, the model disagrees: stays
        _candidate(5, 0.5, "e", close, None),  # no fingerprint (imported): stays
        _candidate(6, 0.4, "a", far, None),  # same content as 1: folds whatever its vector
    ]
    assert base @ close > 0.8 > base @ far
    groups = dedup.group_candidates(candidates, 0.8)
    assert [(leader.key, [d.key for d in dups]) for leader, dups in groups] == [
        (1, [2, 6]),
        (3, []),
        (4, []),
        (5, []),
    ]
    # no threshold: the same content only
    assert dedup.group_candidates(candidates, None)[0][1] == [candidates[5]]


def test_a_group_shows_its_largest_then_newest_copy():
    c = dedup.Candidate
    vector = np.ones(4, np.float32) / 2
    small_best_score = c(1, 0.9, "a", 500, "/p/small.jpg", vector, None, 180 * 135)
    large_old = c(2, 0.8, "b", 100, "/p/large-old.jpg", vector, None, 1600 * 1200)
    large_new = c(3, 0.7, "c", 300, "/p/large-new.jpg", vector, None, 1600 * 1200)
    assert dedup.best_copy([small_best_score, large_old, large_new]) is large_new


# -- the calibration target on real photos --------------------------------------------------------

QUERIES = ("a dog", "a man climbing a mountain", "children playing", "a person on a bike")


@pytest.fixture(scope="module")
def with_planted_copies(indexed_test_split, tmp_path_factory):  # noqa: F811
    """The indexed test split, copied, plus 60 of its photos copied 3 ways in another folder:
    (catalog, cache, {copy name: original name}, the photos folder, the copies folder)."""
    photos, catalog, cache, names = indexed_test_split
    base = tmp_path_factory.mktemp("planted")
    catalog_copy = base / "catalog.db"
    shutil.copyfile(catalog, catalog_copy)
    copies = base / "copies"
    copies.mkdir()
    rng = random.Random(11)
    origin = {}
    for name in sorted(rng.sample(names, 60)):
        with Image.open(photos / name) as opened:
            image = opened.convert("RGB")
        stem = name.rsplit(".", 1)[0]
        scale = rng.uniform(0.5, 1.5)
        resized = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
        small = image.copy()
        small.thumbnail((180, 180))
        made = (("jpeg", image, rng.randint(60, 95)), ("resize", resized, 90), ("small", small, 70))
        for kind, picture, quality in made:
            picture.save(copies / f"{stem}-{kind}.jpg", "JPEG", quality=quality)
            origin[f"{stem}-{kind}.jpg"] = name
    proc = _pixgrep(["index", str(copies), "--catalog", str(catalog_copy), "--model", "pixgrep-mini"], cache)
    assert proc.returncode == 0, proc.stderr
    return catalog_copy, cache, origin, photos, copies


def _name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def test_everyday_queries_fold_no_distinct_photos_and_planted_copies_fold(with_planted_copies):
    import pixgrep

    catalog_path, cache, origin, photos, copies = with_planted_copies
    source = lambda path: origin.get(_name(path), _name(path))  # noqa: E731
    folders = [str(photos), str(copies)]
    with pixgrep_cache(cache), pixgrep.open_catalog(catalog_path, model="pixgrep-mini") as catalog:
        wrong = 0
        for query in QUERIES:
            for hit in catalog.search(query, k=200, roots=folders):
                wrong += sum(source(d) != source(hit.path) for d in hit.duplicate_paths)
        assert wrong <= 2, f"{wrong} distinct photos folded into others"
        # Each original, searched by its own picture (left out of its own results): its three
        # copies come back as one group, showing the largest of them.
        together = shown_largest = 0
        for original in sorted(set(origin.values())):
            mine = {n for n, o in origin.items() if o == original}
            hits = catalog.search([str(photos / original)], k=20, roots=folders)
            groups = [[hit.path, *hit.duplicate_paths] for hit in hits]
            group = max(groups, key=lambda paths: len(mine & {_name(p) for p in paths}))
            together += len(mine & {_name(p) for p in group})
            shown_largest += group[0] == max(group, key=_pixels)
        listed = catalog.duplicates(roots=folders)  # `pixgrep duplicates`: the same confirmation
    assert together >= 0.95 * 3 * 60, f"{together}/180 planted copies folded together"
    assert shown_largest == 60, f"the group shows its largest copy in {shown_largest}/60"
    mixed = [g for g in listed if len({source(r.path) for r in g}) > 1]
    assert len(mixed) <= 1, [[r.path for r in g] for g in mixed]
    copies_of = lambda original: {n for n, o in origin.items() if o == original}  # noqa: E731
    whole = [g for g in listed if {_name(r.path) for r in g} >= copies_of(source(g[0].path))]
    assert len(whole) >= 0.95 * 60
    assert all(_pixels(g[0].path) == max(_pixels(r.path) for r in g) for g in listed)  # best copy first


def _pixels(path: str) -> int:
    with Image.open(path) as image:
        return image.width * image.height


def test_a_catalog_from_before_fingerprints_gets_them_once_at_its_next_index_run(tmp_path, tiny_model_dir):
    from pixgrep.catalog.db import CatalogDB
    from pixgrep.catalog.fingerprints import COMPLETE_KEY, fingerprints_of
    from pixgrep.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    for seed in range(3):
        _scene(seed).save(photos / f"s{seed}.jpg", quality=90)
    common = ["--catalog", str(tmp_path / "c.db"), "--model", str(tiny_model_dir)]
    assert main(["index", str(photos), *common]) == 0
    db = CatalogDB(tmp_path / "c.db")
    hashes = [r.content_hash for r in db.images_by_path().values()]
    stored = fingerprints_of(db, hashes)
    assert len(stored) == 3  # written with the vectors
    with db.conn:  # what an older pixgrep left: no fingerprints, no mark
        db.conn.execute("DELETE FROM fingerprints")
        db.conn.execute("DELETE FROM meta WHERE key = ?", (COMPLETE_KEY,))
    db.close()
    assert main(["index", str(photos), *common]) == 0  # nothing new to encode: only the fill
    db = CatalogDB(tmp_path / "c.db")
    filled = fingerprints_of(db, hashes)
    assert filled.keys() == stored.keys() and db.get_meta(COMPLETE_KEY) == "1"
    # decoded at another JPEG draft scale than for the model: a few bits apart, the same picture
    for digest, bits in stored.items():
        assert look_alike(np.frombuffer(bits, np.uint8), np.frombuffer(filled[digest], np.uint8))
    db.close()
