"""Query vectors and search: weighted sums, stored-vector reuse, lazy towers, result filters."""

from __future__ import annotations

import os

import numpy as np
import pytest
from fakes import FakeEncoder
from PIL import Image
from searchkit import add_image, unit

from pixgrep.catalog.db import CatalogDB
from pixgrep.errors import PixgrepError
from pixgrep.search import engine
from pixgrep.search.engine import to_terms
from pixgrep.search.options import SearchOptions
from pixgrep.search.query import Term, parse_query


def search(db, encoder, query, **options):
    """The engine's search, with the query and options spelled as a user writes them."""
    return engine.search(db, encoder, to_terms(query), SearchOptions(**options))


def query_vector(db, encoder, terms):
    """The vector a search scores with: the first row of the production query plan."""
    return engine.plan_for(db, encoder, terms, SearchOptions())[0].vectors[0]


def search_vector(db, encoder, vector, **options):
    return engine.search_vector(db, encoder, vector, SearchOptions(**options))


@pytest.fixture
def db(tmp_path):
    database = CatalogDB(tmp_path / "catalog.db")
    yield database
    database.close()


def make_image(path, color, size=(32, 24)):
    Image.new("RGB", size, color).save(path)
    return str(path)


def test_weighted_sum_of_text_terms(db, fake_encoder):
    vector = query_vector(db, fake_encoder, parse_query("horse + 0.5:stars - day"))
    horse, stars, day = fake_encoder.encode_texts(["horse", "stars", "day"])
    expected = unit(horse + 0.5 * stars - day)
    np.testing.assert_allclose(vector, expected, atol=1e-6)
    assert abs(np.linalg.norm(vector) - 1) < 1e-6
    assert fake_encoder.texts_encoded == 6  # the three terms went through the text tower in one batch
    assert fake_encoder.images_encoded == 0


def test_image_file_in_the_catalog_reuses_its_vector_and_runs_no_tower(db, fake_encoder, tmp_path):
    path = make_image(tmp_path / "red.png", (255, 0, 0))
    stored = unit(np.arange(1, fake_encoder.dim + 1))
    add_image(db, path, stored, stat=True)
    vector = query_vector(db, fake_encoder, parse_query([path]))
    np.testing.assert_allclose(vector, stored, atol=2e-3)  # float16 storage
    assert fake_encoder.images_encoded == 0 and fake_encoder.texts_encoded == 0


def test_image_changed_since_indexing_is_encoded_fresh(db, fake_encoder, tmp_path):
    path = make_image(tmp_path / "red.png", (255, 0, 0))
    add_image(db, path, unit(np.arange(1, fake_encoder.dim + 1)), stat=True)
    make_image(path, (0, 0, 255), size=(40, 30))  # rewritten: size and mtime differ
    vector = query_vector(db, fake_encoder, parse_query([path]))
    assert fake_encoder.images_encoded == 1
    expected = fake_encoder.encode_images([Image.open(path)])[0]
    np.testing.assert_allclose(vector, expected, atol=1e-6)


def test_image_outside_the_catalog_uses_the_image_tower_only(db, fake_encoder, tmp_path):
    path = make_image(tmp_path / "green.png", (0, 255, 0))
    query_vector(db, fake_encoder, parse_query([path, "-", "0.3:" + path]))
    assert fake_encoder.images_encoded == 2 and fake_encoder.texts_encoded == 0


def test_image_plus_text(db, fake_encoder, tmp_path):
    path = make_image(tmp_path / "blue.png", (0, 0, 255))
    vector = query_vector(db, fake_encoder, parse_query([path, "+", "2:in red"]))
    image = fake_encoder.encode_images([Image.open(path)])[0]
    text = fake_encoder.encode_texts(["in red"])[0]
    np.testing.assert_allclose(vector, unit(image + 2 * text), atol=1e-6)


def test_bytes_image_id_and_vector_terms(db, fake_encoder, tmp_path):
    path = make_image(tmp_path / "x.png", (10, 200, 30))
    image_id = add_image(db, "/elsewhere/y.jpg", unit(np.ones(fake_encoder.dim)))
    raw = open(path, "rb").read()
    direct = unit(np.arange(fake_encoder.dim, dtype=np.float32))
    terms = [Term(1.0, "bytes", raw), Term(1.0, "image_id", image_id), Term(-0.5, "vector", direct)]
    vector = query_vector(db, fake_encoder, terms)
    expected = unit(
        fake_encoder.encode_images([Image.open(path)])[0] + unit(np.ones(fake_encoder.dim)) - 0.5 * direct
    )
    np.testing.assert_allclose(vector, expected, atol=2e-3)


@pytest.mark.parametrize(
    "term, message",
    [
        (Term(1.0, "image_id", 999), "image id 999 is not in the catalog"),
        (Term(1.0, "vector", [1.0, 2.0]), "must have 192 numbers"),
        (Term(1.0, "vector", ["a", "b"]), "must be a list of numbers"),
        (Term(1.0, "bytes", b"not an image"), "the uploaded image: not an image pixgrep can read"),
    ],
)
def test_bad_terms_are_one_line_errors(db, fake_encoder, term, message):
    with pytest.raises(PixgrepError, match=message):
        query_vector(db, fake_encoder, [term])


def test_unreadable_image_file_names_the_file(db, fake_encoder, tmp_path):
    fake = tmp_path / "fake.jpg"
    fake.write_text("hello")
    with pytest.raises(PixgrepError, match=r"fake\.jpg: not an image"):
        query_vector(db, fake_encoder, parse_query([str(fake)]))


def test_terms_that_cancel_out_are_an_error(db, fake_encoder):
    with pytest.raises(PixgrepError, match="cancel out"):
        query_vector(db, fake_encoder, parse_query("cat - cat"))
    with pytest.raises(PixgrepError, match="cancel out"):
        query_vector(db, fake_encoder, parse_query("0:cat"))


def test_search_ranks_by_the_combined_query(db, fake_encoder):
    texts = fake_encoder.encode_texts(["horse", "stripes", "night"])
    add_image(db, "/p/horse.jpg", texts[0])
    add_image(db, "/p/zebra.jpg", unit(texts[0] + texts[1]))
    add_image(db, "/p/night-horse.jpg", unit(texts[0] + texts[2]))
    add_image(db, "/p/stripes.jpg", texts[1])
    assert search(db, fake_encoder, "horse + stripes", k=1)[0].path == "/p/zebra.jpg"
    assert search(db, fake_encoder, "horse + night", k=1)[0].path == "/p/night-horse.jpg"
    ranked = [r.path for r in search(db, fake_encoder, ["horse", "-", "night"], k=4)]
    assert ranked.index("/p/horse.jpg") < ranked.index("/p/night-horse.jpg")


def test_search_results_carry_metadata_and_json_keys(db, fake_encoder):
    add_image(db, "/p/a.jpg", fake_encoder.encode_texts(["cat"])[0], taken_at="2020-01-02T03:04:05")
    [result] = search(db, fake_encoder, "cat")
    assert result.path == "/p/a.jpg" and abs(result.score - 1) < 1e-3
    metadata = (result.size, result.width, result.height, result.taken_at)
    assert metadata == (1000, 64, 48, "2020-01-02T03:04:05")
    assert sorted(result.to_json()) == ["height", "path", "score", "size", "taken_at", "width"]


def test_the_query_image_itself_is_left_out(db, fake_encoder, tmp_path):
    path = make_image(tmp_path / "ref.png", (200, 10, 10))
    vector = fake_encoder.encode_images([Image.open(path)])[0]
    ref_id = add_image(db, path, vector, stat=True)
    add_image(db, tmp_path / "near.png", unit(vector + 0.1 * unit(np.ones(fake_encoder.dim))))
    paths = [r.path for r in search(db, fake_encoder, [path])]
    assert paths == [str(tmp_path / "near.png")]
    assert [r.path for r in search(db, fake_encoder, [Term(1.0, "image_id", ref_id)])] == paths
    # search_vector has no query image: the reference comes back first
    assert search_vector(db, fake_encoder, vector, k=1)[0].path == path


def test_scoping_offset_threshold_and_filters_through_search(db, fake_encoder, tmp_path):
    cat = fake_encoder.encode_texts(["cat"])[0]
    other = fake_encoder.encode_texts(["other"])[0]
    for i in range(6):
        add_image(db, f"/lib/a/{i}.jpg", unit(cat + i * 0.3 * other))
    add_image(db, "/lib/b/0.jpg", cat)
    add_image(db, "/lib/a/.hidden/1.jpg", cat)
    add_image(db, "/lib/a/node_modules/1.jpg", cat)
    add_image(db, "/lib/a/raw/1.jpg", cat)
    everything = [r.path for r in search(db, fake_encoder, "cat", k=20, roots=["/lib/a"])]
    assert "/lib/b/0.jpg" not in everything and len(everything) == 9
    visible = [r.path for r in search(db, fake_encoder, "cat", k=20, roots=["/lib/a"], include_hidden=False)]
    assert "/lib/a/.hidden/1.jpg" not in visible and "/lib/a/node_modules/1.jpg" not in visible
    kept = [r.path for r in search(db, fake_encoder, "cat", k=20, roots=["/lib/a"], exclude=["raw"])]
    assert "/lib/a/raw/1.jpg" not in kept and len(kept) == 8
    kept = [r.path for r in search(db, fake_encoder, "cat", k=20, roots=["/lib/a"], exclude=["*.jpg"])]
    assert kept == []
    top = search(db, fake_encoder, "cat", k=20, roots=["/lib/a"], include_hidden=False, exclude=["raw"])
    assert [r.path for r in top] == ["/lib/a/0.jpg", *[f"/lib/a/{i}.jpg" for i in range(1, 6)]]
    page = search(
        db, fake_encoder, "cat", k=2, offset=2, roots=["/lib/a"], include_hidden=False, exclude=["raw"]
    )
    assert [r.path for r in page] == ["/lib/a/2.jpg", "/lib/a/3.jpg"]
    strong = search(db, fake_encoder, "cat", k=20, roots=["/lib/a"], threshold=top[2].score)
    assert all(r.score >= top[2].score for r in strong) and "/lib/a/3.jpg" not in [r.path for r in strong]


def test_search_with_a_model_of_other_size_is_an_error(db, fake_encoder):
    add_image(db, "/p/a.jpg", np.ones(16))
    with pytest.raises(PixgrepError, match="16 dimensions"):
        search(db, fake_encoder, "cat")


def test_search_through_the_public_api(tmp_path, fake_encoder):
    import pixgrep

    folder = tmp_path / "pics"
    folder.mkdir()
    db = CatalogDB(tmp_path / "c.db")
    add_image(db, folder / "a.jpg", fake_encoder.encode_texts(["sun"])[0], taken_at="2021-07-01")
    add_image(db, folder / "b.jpg", fake_encoder.encode_texts(["moon"])[0])
    db.close()
    with pixgrep.open_catalog(tmp_path / "c.db", encoder=fake_encoder) as catalog:
        assert catalog.search("sun", k=1, roots=[folder])[0].path == str(folder / "a.jpg")
        assert [r.path for r in catalog.search("moon", after="2021")] == [str(folder / "a.jpg")]
        hit = catalog.search_vector(fake_encoder.encode_texts(["moon"])[0], k=1)[0]
        assert os.path.basename(hit.path) == "b.jpg"


class CuttingEncoder(FakeEncoder):
    """The fake encoder, with a context length of five words."""

    def cut_texts(self, texts):
        return [" ".join(t.split()[5:]) or None for t in texts]


def test_a_cut_query_is_a_note_on_the_results_not_a_python_warning(db, recwarn):
    encoder = CuttingEncoder()
    add_image(db, "/p/a.jpg", unit(np.ones(encoder.dim)))
    long = "a dog runs on the beach near the sea"
    results = search(db, encoder, long, k=3)
    assert len(results) == 1 and len(results.notes) == 1
    assert "longer than the model reads" in results.notes[0] and "near the sea" in results.notes[0]
    assert not [w for w in recwarn if "longer than" in str(w.message)]
    assert search(db, encoder, "a dog", k=3).notes == ()


class WatchedLock:
    """A lock that says whether it is held (the server's catalog lock in a test)."""

    def __init__(self):
        self.held = False

    def __enter__(self):
        assert not self.held
        self.held = True

    def __exit__(self, *exc):
        self.held = False


def test_ranking_and_folding_run_outside_the_catalog_lock(db, fake_encoder, monkeypatch):
    from pixgrep.search import rank

    for i in range(40):
        add_image(db, f"/p/{i:02}.jpg", unit(np.arange(fake_encoder.dim) + (i % 10)))
    lock = WatchedLock()
    seen = []
    for name in ("candidates", "fold", "rank"):
        step = getattr(rank, name)

        def watched(*args, step=step, name=name):
            seen.append((name, lock.held))
            return step(*args)

        monkeypatch.setattr(rank, name, watched)
    folded = engine.search(db, fake_encoder, to_terms("cat"), SearchOptions(k=5), catalog_lock=lock)
    plain = engine.search(
        db, fake_encoder, to_terms("cat"), SearchOptions(k=5, dedup=False), catalog_lock=lock
    )
    assert len(folded) == len(plain) == 5
    assert {name for name, _ in seen} == {"candidates", "fold", "rank"}
    assert not any(held for _, held in seen), seen
