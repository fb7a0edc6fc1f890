"""The pieces of detailed queries and folding: the part splitter, all-of scoring, tone projection,
duplicate grouping."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from pixgrep.models.base import Encoder
from pixgrep.search import allof, dedup, tone
from pixgrep.search.parts import MAX_PARTS, split_parts

# -- splitter ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        (
            "A bed with a striped couch, and an air conditioner.",
            ["A bed", "a striped couch", "an air conditioner"],
        ),
        ("a black and white dog running", ["a black and white dog running"]),
        ("rock and roll", ["rock and roll"]),
        ("a man running with speed", ["a man running with speed"]),
        ("Two dogs play in the grass with a ball", ["Two dogs play in the grass", "a ball"]),
        (
            "A hotel room. The carpet is red; 1,000 dollars a night! A lamp and his dog",
            ["A hotel room", "The carpet is red", "1,000 dollars a night", "A lamp", "his dog"],
        ),
        ("It costs 3.5 euros. Cheap", ["It costs 3.5 euros", "Cheap"]),
        ("a dog, a dog. A DOG", ["a dog"]),
        ("and, , with ;", []),
        ("  a red fox  ", ["a red fox"]),
    ],
)
def test_split_parts_fixed_examples(text, parts):
    assert split_parts(text) == parts


def test_split_parts_caps_the_number_of_parts():
    parts = split_parts(", ".join(f"thing{i}" for i in range(MAX_PARTS + 5)))
    assert len(parts) == MAX_PARTS
    assert parts[-1] == ", ".join(f"thing{i}" for i in range(MAX_PARTS - 1, MAX_PARTS + 5))


# -- all-of combination -------------------------------------------------------------------------


def test_all_of_prefers_the_image_matching_every_part():
    """Image A matches each of three parts moderately, image B one part strongly. The plain query
    (one vector for the whole text, here the normalised sum of the parts) prefers B; all-of, A."""
    rng = np.random.default_rng(0)
    dim = 64
    e = np.eye(dim, dtype=np.float32)
    parts = e[:3]
    whole = _unit(parts.sum(axis=0))
    background = rng.standard_normal((200, dim))
    a = 0.3 * parts.sum(axis=0) + np.sqrt(1 - 3 * 0.3**2) * e[10]
    b = 0.95 * parts[0] + np.sqrt(1 - 0.95**2) * e[11]
    images = np.concatenate([background / np.linalg.norm(background, axis=1, keepdims=True), [a, b]])
    plain = images @ whole
    assert plain[-1] > plain[-2]  # without --all, B ranks higher
    combined = allof.combine(np.concatenate([parts @ images.T, plain[None]]))
    assert combined[-2] > combined[-1]  # with --all, A does
    assert np.argmax(combined) == len(images) - 2


def test_combine_single_part_is_its_z_score_and_constant_rows_give_zero():
    scores = np.array([[0.1, 0.2, 0.3]])
    assert np.allclose(allof.combine(scores), allof.standardise(scores)[0])
    assert np.allclose(allof.combine(np.full((2, 4), 0.3)), 0.0)


def test_combine_power_zero_is_the_mean_and_stays_finite_for_large_scores():
    scores = np.array([[0.0, 1.0, 50.0, 0.0], [1.0, 0.0, -50.0, 0.0]])
    assert np.allclose(allof.combine(scores, power=0), allof.standardise(scores).mean(axis=0))
    assert np.isfinite(allof.combine(scores, power=-8.0)).all()


# -- tone ---------------------------------------------------------------------------------------

TONE_DIMS = 48  # the bag-of-words fake puts tone words in dimensions [0, 48), all else above


class BagOfWords(Encoder):
    """Text vector = normalised sum of per-word vectors; tone words live in their own dimensions."""

    model_id = "bag-of-words"
    dim = 128
    logit_scale = 100.0

    def __init__(self):
        self.lexicon = set(tone.load_lexicon())

    def _word(self, word: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
        row = np.random.default_rng(seed).standard_normal(self.dim)
        if word in self.lexicon:
            row[TONE_DIMS:] = 0
        else:
            row[:TONE_DIMS] = 0
        return row

    def encode_texts(self, texts):
        rows = []
        for text in texts:
            words = text.lower().replace(",", " ").split()
            row = sum((self._word(w) for w in words), np.zeros(self.dim))
            rows.append(row / np.linalg.norm(row))
        return np.asarray(rows, np.float32)

    def preprocess(self, image):
        raise NotImplementedError

    def encode_pixels(self, pixels):
        raise NotImplementedError


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXGREP_CACHE", str(tmp_path))
    tone._memory.clear()
    return tmp_path


def test_tone_projection_removes_the_tone_component(isolated_cache):
    encoder = BagOfWords()
    # rank 4: the fake gives every tone word its own random direction, so one dimension (the
    # shipped RANK) holds little of three given words; the contract is the same at any rank
    space = tone.tone_space(encoder, rank=4)
    assert np.allclose(space.basis @ space.basis.T, np.eye(len(space.basis)), atol=1e-5)
    query = encoder.encode_texts(["a kitchen with a table, messy, sad, ugly"])[0]
    assert np.abs(space.basis @ query).max() > 0.1  # the tone words are really in the query
    projected = space.project(query)
    assert np.abs(space.basis @ projected).max() < 1e-5
    assert np.linalg.norm(projected) == pytest.approx(1.0, abs=1e-5)
    assert list((isolated_cache / "tone").glob("*.npz"))  # cached for the next process


def _ranks(images, queries, targets):
    scores = queries @ images.T
    return 1 + (scores > scores[np.arange(len(queries)), targets][:, None]).sum(axis=1)


def test_tone_projection_keeps_the_rank_of_a_tone_neutral_query(isolated_cache):
    encoder = BagOfWords()
    rng = np.random.default_rng(1)
    # content words that are not in the tone templates (tone.SCENES, tone.FORMS)
    scenes = [
        f"{thing} {other}"
        for thing in ("bicycle", "volcano", "guitar", "tram")
        for other in ("cat", "lamp", "tree", "bag", "hat")
    ]
    neutral = encoder.encode_texts(scenes)
    toned = encoder.encode_texts([f"{s}, messy, sad, ugly" for s in scenes])
    # each scene's target image is a noisy copy of its text vector, among 300 random images
    targets = np.arange(len(scenes))
    noisy = neutral + 0.12 * rng.standard_normal(neutral.shape)
    images = np.concatenate([noisy, rng.standard_normal((300, encoder.dim))])
    images = (images / np.linalg.norm(images, axis=1, keepdims=True)).astype(np.float32)
    plain = _ranks(images, neutral, targets)
    assert np.array_equal(_ranks(images, tone.apply_tone(encoder, neutral, ignore_tone=True), targets), plain)
    # tone words cost rank; removing the tone component gives it back
    with_tone = _ranks(images, toned, targets)
    assert with_tone.sum() > plain.sum()
    recovered = _ranks(images, tone.apply_tone(encoder, toned, ignore_tone=True), targets)
    assert recovered.sum() < with_tone.sum()


@pytest.mark.parametrize(
    ("text", "stripped"),
    [
        ("The dogs play on the snow, sad, luxurious", "The dogs play on the snow"),
        ("a kitchen, messy and very dingy.", "a kitchen"),
        ("a dog, sad; a red ball, ugly", "a dog, a red ball"),
        # tone words inside a phrase, or items that also say something else: unchanged
        ("a messy, dingy kitchen", "a messy, dingy kitchen"),
        ("an old man, happy children, a dark dog", "an old man, happy children, a dark dog"),
        ("messy", "messy"),  # the first item always stays
        ("a dog on grass", "a dog on grass"),
    ],
)
def test_strip_tone_items_fixed_examples(text, stripped):
    assert tone.strip_tone_items(text) == stripped


def test_ignore_tone_search_drops_appended_tone_words(isolated_cache, tmp_path):
    """End to end through the engine: "QUERY, messy, sad" with --ignore-tone ranks as "QUERY" does."""
    from pixgrep.catalog.db import CatalogDB, vector_to_blob
    from pixgrep.search.engine import search
    from pixgrep.search.options import SearchOptions
    from pixgrep.search.query import parse_query

    encoder = BagOfWords()
    rng = np.random.default_rng(6)
    db = CatalogDB(tmp_path / "c.db")
    with db.conn:
        for i, vector in enumerate(rng.standard_normal((60, encoder.dim))):
            digest = f"{i:040d}"
            db.conn.execute(
                "INSERT INTO images (path, size, mtime_ns, content_hash, width, height, format, taken_at,"
                " error, indexed_at) VALUES (?, 1, 1, ?, 1, 1, 'JPEG', NULL, NULL, 0)",
                (f"/p/{i:03d}.jpg", digest),
            )
            blob = vector_to_blob(_unit(vector))
            db.conn.execute("INSERT INTO embeddings VALUES (?, ?, ?)", (digest, encoder.model_id, blob))
        db.bump_generation()

    def ranked(text: str, ignore: bool) -> list[str]:
        options = SearchOptions(k=20, ignore_tone=ignore, dedup=False)
        return [r.path for r in search(db, encoder, parse_query(text), options)]

    assert ranked("bicycle volcano, messy, sad", True) == ranked("bicycle volcano", True)
    assert ranked("bicycle volcano, messy, sad", False) != ranked("bicycle volcano", False)


def test_deliberate_tone_moves_the_query_towards_that_tone(isolated_cache):
    encoder = BagOfWords()
    neutral = encoder.encode_texts(["a kitchen"])[0]
    cozy = encoder._word("cozy") / np.linalg.norm(encoder._word("cozy"))
    with_tone = tone.apply_tone(encoder, neutral, tone=("cozy",))
    assert with_tone @ cozy > neutral @ cozy + 0.2
    # a word outside the lexicon is measured on the fly
    assert tone.apply_tone(encoder, neutral, tone=("glittery",)).shape == neutral.shape


def test_parse_tone_words():
    assert tone.parse_tone_words("Messy, dingy;messy") == ("messy", "dingy")
    assert tone.parse_tone_words(["cozy", "bright, warm"]) == ("cozy", "bright", "warm")
    with pytest.raises(Exception, match="--tone"):
        tone.parse_tone_words(" , ")


# -- duplicate grouping -------------------------------------------------------------------------


def _unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def _vectors():
    rng = np.random.default_rng(2)
    base = _unit(rng.standard_normal(64))
    near = _unit(base + 0.05 * rng.standard_normal(64))  # a re-encoded copy: cosine ~0.96
    # a distinct photo of the same scene: clearly related (cosine ~0.78), a different picture
    neighbour = _unit(base + 0.8 * _unit(rng.standard_normal(64)))
    other = _unit(rng.standard_normal(64))
    return base, near, neighbour, other


def _prints(count: int) -> list[bytes]:
    """Fingerprints of `count` distinct generated pictures (images/fingerprint.py)."""
    from test_dedup_fingerprints import _scene

    from pixgrep.images.fingerprint import fingerprint

    return [fingerprint(_scene(seed)) for seed in range(count)]  # type: ignore[misc]


def test_group_candidates_hash_near_and_distinct_neighbours():
    base, near, neighbour, other = _vectors()
    assert base @ near > base @ neighbour > dedup.threshold_for("pixgrep-mini@abc")
    look, elsewhere = _prints(2)
    c = dedup.Candidate
    candidates = [
        c(1, 0.30, "h1", 200, "/p/b.jpg", base, look),
        c(2, 0.30, "h1", 100, "/p/a-copy.jpg", base, look),  # same hash, same score, older: leads
        c(3, 0.29, "h2", 50, "/p/near.jpg", near, look),
        c(4, 0.28, "h3", 50, "/p/neighbour.jpg", neighbour, elsewhere),  # another shot of the scene
        c(5, 0.10, "h4", 50, "/p/other.jpg", other, look),
        c(6, 0.05, "h1", 300, "/p/same-bytes-elsewhere.jpg", np.zeros(64, np.float32)),
    ]
    groups = dedup.group_candidates(candidates, dedup.threshold_for("pixgrep-mini"))
    assert [(leader.key, [d.key for d in dups]) for leader, dups in groups] == [
        (2, [1, 3, 6]),
        (4, []),
        (5, []),
    ]


def _leader_by_leader(candidates, threshold):
    """The folding rule written plainly (each candidate against every leader so far), for checking."""
    from pixgrep.images.fingerprint import look_alike

    groups, leaders, by_hash = [], [], {}
    for candidate in sorted(candidates, key=lambda c: (-c.score, c.mtime_ns, c.path)):
        index = by_hash.get(candidate.content_hash)
        if index is None:
            by_model = sorted(
                (i for i, leader in enumerate(leaders) if leader.vector @ candidate.vector >= threshold),
                key=lambda i: -(leaders[i].vector @ candidate.vector),
            )
            for i in by_model:
                one, two = (np.frombuffer(c.fingerprint, np.uint8) for c in (leaders[i], candidate))
                if look_alike(one, two):
                    index = i
                    break
        if index is None:
            by_hash.setdefault(candidate.content_hash, len(groups))
            groups.append((candidate.key, []))
            leaders.append(candidate)
        else:
            groups[index][1].append(candidate.key)
    return groups


@pytest.mark.parametrize("seed", range(3))
def test_group_candidates_blockwise_matches_the_plain_rule(monkeypatch, seed):
    monkeypatch.setattr(dedup, "FOLD_BLOCK", 7)  # leaders made inside a block and across blocks
    rng = np.random.default_rng(seed)
    centres = [_unit(rng.standard_normal(16)) for _ in range(12)]
    prints = _prints(3)
    candidates = []
    for key in range(90):  # bursts of near-copies around a few scenes, some shared files
        vector = _unit(centres[key % 12] + 0.25 * rng.standard_normal(16)).astype(np.float32)
        content = f"h{key % 30}" if key % 4 == 0 else f"k{key}"
        picture = prints[key % 24 // 8]  # some shots of a scene look alike, others do not
        score = float(rng.random())
        candidates.append(dedup.Candidate(key, score, content, key, f"/p/{key}.jpg", vector, picture))
    for threshold in (0.5, 0.7, None):
        got = [
            (leader.key, [d.key for d in dups])
            for leader, dups in dedup.group_candidates(candidates, threshold)
        ]
        assert got == _leader_by_leader(candidates, dedup.NEVER if threshold is None else threshold)
    by_hash_only = len(dedup.group_candidates(candidates, None))
    assert len(dedup.group_candidates(candidates, 0.5)) < by_hash_only  # the fingerprints folded some


def test_duplicate_groups_over_blocks(monkeypatch):
    monkeypatch.setattr(dedup, "BLOCK_ROWS", 3)  # several blocks on both sides of the product
    base, near, neighbour, other = _vectors()
    rng = np.random.default_rng(3)
    fill = [_unit(rng.standard_normal(64)) for _ in range(5)]
    vectors = np.stack([base, *fill[:3], near, neighbour, other, *fill[3:], base])
    hashes = ["a", "f0", "f1", "f2", "b", "c", "d", "f3", "f4", "zz"]
    hashes[8] = "f2"  # same bytes as row 3, different vector row (e.g. decoded again)
    groups = dedup.duplicate_groups(vectors, hashes, 0.85)  # above the neighbour, below the copy
    assert sorted(groups) == [[0, 4, 9], [3, 8]]


# -- eval: the score-matrix protocol equals the vector one ---------------------------------------


def test_retrieval_metrics_from_scores_equals_the_vector_protocol():
    from pixgrep.lab.metrics import retrieval_metrics, retrieval_metrics_from_scores

    rng = np.random.default_rng(4)
    images = rng.standard_normal((30, 16)).astype(np.float32)
    captions = rng.standard_normal((60, 16)).astype(np.float32)
    caption_image = [i // 2 for i in range(60)]
    expected = retrieval_metrics(images, captions, caption_image)
    got = retrieval_metrics_from_scores(captions @ images.T, caption_image)
    assert got == pytest.approx(expected)


def test_all_of_scores_single_part_texts_rank_as_plain_search(isolated_cache):
    from pixgrep.lab.eval.retrieval import all_of_scores

    encoder = BagOfWords()
    rng = np.random.default_rng(5)
    images = rng.standard_normal((40, encoder.dim)).astype(np.float32)
    texts = ["bicycle cat", "volcano lamp"]
    scores = all_of_scores(encoder, texts, images)
    plain = encoder.encode_texts(texts) @ images.T
    assert np.array_equal(np.argsort(-scores, axis=1), np.argsort(-plain, axis=1))
    parted = all_of_scores(encoder, ["bicycle cat, and a volcano lamp"], images)
    assert not np.array_equal(
        np.argsort(-parted[0]),
        np.argsort(-(encoder.encode_texts(["bicycle cat, and a volcano lamp"]) @ images.T)[0]),
    )
