"""The Combiner: it learns a rule the sum cannot express, numpy equals torch, its file is bound to
one model, and `fuse` applies weights and `-` terms around it."""

from __future__ import annotations

import numpy as np
import pytest

from pixgrep.errors import PixgrepError
from pixgrep.lab.combiner_train import CombinerConfig, torch_combiner, train_combiner  # torch inside
from pixgrep.lab.eval.composed import CirFeatures, composed_recalls, query_vectors
from pixgrep.models.combiner import Combiner, load_combiner, save_combiner
from pixgrep.search.fusion import fuse, fusion_used

DIM = 16


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def rotation_triplets(n: int, seed: int) -> CirFeatures:
    """target = normalise(R ref + text) for one fixed rotation R: the sum ref + text misses R."""
    rotation = np.linalg.qr(np.random.default_rng(99).normal(size=(DIM, DIM)))[0]
    rng = np.random.default_rng(seed)
    reference, text = _unit(rng.normal(size=(n, DIM))), _unit(rng.normal(size=(n, DIM)))
    target = _unit(reference @ rotation.T + text)
    return CirFeatures(np.concatenate([reference, target]), text, np.arange(n), np.arange(n, 2 * n))


SMALL = CombinerConfig(
    projection=64, hidden=64, lambda_hidden=16, dropout=0.1, batch_size=128, lr=2e-3, epochs=12, patience=12
)


def random_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """Untrained Combiner arrays of SMALL's sizes (for the tests that need no torch)."""
    rng = np.random.default_rng(seed)
    p, h, lh = SMALL.projection, SMALL.hidden, SMALL.lambda_hidden
    shapes = {"text_proj": (p, DIM), "image_proj": (p, DIM), "hidden": (h, 2 * p), "out": (DIM, h)}
    shapes.update({"lambda1": (lh, 2 * p), "lambda2": (1, lh)})
    out = {}
    for layer, (rows, cols) in shapes.items():
        w, b = (
            (f"lambda_w{layer[-1]}", f"lambda_b{layer[-1]}")
            if layer.startswith("lambda")
            else (f"{layer}_w", f"{layer}_b")
        )
        out[w] = (rng.normal(size=(rows, cols)) / np.sqrt(cols)).astype(np.float32)
        out[b] = (0.1 * rng.normal(size=rows)).astype(np.float32)
    return out


@pytest.fixture(scope="module")
def trained():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return train_combiner(rotation_triplets(800, 0), rotation_triplets(200, 1), SMALL, log=lambda _: None)


@pytest.mark.torch
def test_combiner_learns_what_the_sum_cannot(trained):
    held_out = rotation_triplets(200, 2)
    combiner = Combiner(trained["weights"], {"model_id": "synthetic"})
    learned = composed_recalls(held_out, query_vectors(held_out, "combiner", combiner))
    summed = composed_recalls(held_out, query_vectors(held_out, "sum"))
    assert learned["R@1"] >= summed["R@1"] + 30, (learned, summed)
    assert learned["R@5"] >= 90


@pytest.mark.torch
def test_training_is_reproducible_for_a_seed(trained):
    again = train_combiner(rotation_triplets(800, 0), rotation_triplets(200, 1), SMALL, log=lambda _: None)
    assert again["epoch"] == trained["epoch"]
    for name, array in trained["weights"].items():
        np.testing.assert_array_equal(array, again["weights"][name])


@pytest.mark.torch
def test_numpy_combiner_equals_torch(trained, tmp_path):
    torch = pytest.importorskip("torch")
    path = save_combiner(tmp_path / "c.npz", trained["weights"], {"model_id": "synthetic", "config": {}})
    combiner = load_combiner(path)
    module = torch_combiner(DIM, SMALL)
    module.load_arrays(combiner.weights)
    module.eval()
    rng = np.random.default_rng(5)
    image, text = _unit(rng.normal(size=(300, DIM))), _unit(rng.normal(size=(300, DIM)))
    with torch.no_grad():
        expected = module(torch.from_numpy(image), torch.from_numpy(text)).numpy()
    got = combiner.combine(image, text)
    cosines = (got * expected).sum(1)
    assert cosines.min() >= 0.9999
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    lam = combiner.lambdas(image, text)
    assert lam.shape == (300,) and ((lam > 0) & (lam < 1)).all()


def test_a_single_query_equals_the_batch_and_restores_the_blas_threads():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    combiner = Combiner(random_weights(), {"model_id": "synthetic"})
    rng = np.random.default_rng(8)
    image, text = _unit(rng.normal(size=(20, DIM))), _unit(rng.normal(size=(20, DIM)))
    batch = combiner.combine(image, text)  # one threaded product per layer
    before = [(lib["internal_api"], lib["num_threads"]) for lib in threadpoolctl.threadpool_info()]
    singles = np.concatenate([combiner.combine(image[r], text[r]) for r in range(20)])  # matrix-vector
    np.testing.assert_allclose(singles, batch, atol=1e-5)
    # numpy's einsum path (no threadpoolctl) is the same function too
    np.testing.assert_allclose(combiner._layers(image[:1], text[:1], "einsum")[0], batch[:1], atol=1e-5)
    after = [(lib["internal_api"], lib["num_threads"]) for lib in threadpoolctl.threadpool_info()]
    assert after == before


def test_combiner_file_is_bound_to_its_model(tmp_path):
    path = save_combiner(tmp_path / "c.npz", random_weights(), {"model_id": "model-a@1"})
    combiner = load_combiner(path)
    combiner.check_model("model-a@1")
    with pytest.raises(PixgrepError, match="trained for model model-a@1, not model-b"):
        combiner.check_model("model-b")
    with pytest.raises(PixgrepError, match="two vectors of 16"):
        combiner.combine(np.zeros((1, 8)), np.zeros((1, 8)))
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(PixgrepError, match="not a Combiner file"):
        load_combiner(tmp_path / "other.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(PixgrepError, match="not a Combiner file"):
        load_combiner(tmp_path / "text.npz")


def test_float16_file_is_half_the_size_and_computes_in_float32(tmp_path):
    # untrained weights of the trained Combiner's sizes: float16 rounding is the same relative error
    weights, meta = random_weights(1), {"model_id": "synthetic"}
    full = load_combiner(save_combiner(tmp_path / "full.npz", weights, meta))
    half_path = save_combiner(tmp_path / "half.npz", weights, meta, storage="float16")
    with np.load(half_path) as stored:
        assert {stored[k].dtype for k in stored.files if k != "meta"} == {np.dtype(np.float16)}
    half = load_combiner(half_path)
    assert half.meta["storage"] == "float16" and full.meta["storage"] == "float32"
    # widened once at load: the arrays a query multiplies are float32, equal to the rounded weights
    assert {w.dtype for w in half.weights.values()} == {np.dtype(np.float32)}
    for name, array in weights.items():
        np.testing.assert_array_equal(half.weights[name], array.astype(np.float16).astype(np.float32))
    rng = np.random.default_rng(7)
    image, text = _unit(rng.normal(size=(200, DIM))), _unit(rng.normal(size=(200, DIM)))
    got = half.combine(image, text)
    assert got.dtype == np.float32
    assert (got * full.combine(image, text)).sum(1).min() >= 0.999
    with pytest.raises(ValueError, match="storage"):
        save_combiner(tmp_path / "x.npz", weights, meta, storage="int8")
    ints = {k: (v * 100).astype(np.int32) for k, v in weights.items()}
    np.savez(tmp_path / "ints.npz", meta=np.array('{"format": "pixgrep-combiner", "model_id": "m"}'), **ints)
    with pytest.raises(PixgrepError, match="not float32 or float16"):
        load_combiner(tmp_path / "ints.npz")


class _Recorder:
    """A stand-in Combiner that records its inputs and answers a fixed direction."""

    def __init__(self, answer: np.ndarray):
        self.answer = answer.astype(np.float32)
        self.seen: list[tuple[np.ndarray, np.ndarray]] = []

    def combine(self, image, text):
        self.seen.append((image[0], text[0]))
        return self.answer[None]


def test_fuse_uses_the_combiner_only_for_image_plus_text():
    e = np.eye(4)
    recorder = _Recorder(e[3])
    vector, used = fuse(["path", "text"], [1.0, 1.0], [e[0], e[1]], recorder)  # type: ignore[arg-type]
    assert used == "combiner" and np.allclose(vector, e[3])
    assert np.allclose(recorder.seen[0][0], e[0]) and np.allclose(recorder.seen[0][1], e[1])
    # text only, images only, or no Combiner: the weighted sum, as before
    for kinds in (["text", "text"], ["path", "image_id"]):
        vector, used = fuse(kinds, [1.0, 1.0], [e[0], e[1]], recorder)  # type: ignore[arg-type]
        assert used == "sum" and np.allclose(vector, _unit(e[0] + e[1]))
    assert fuse(["path", "text"], [1.0, 1.0], [e[0], e[1]], None)[1] == "sum"
    assert fusion_used(["path", "text"], [1.0, -1.0], recorder) == "sum"  # a subtracted text is no edit


def test_fuse_applies_weights_and_negative_terms_around_the_combiner():
    e = np.eye(4)
    recorder = _Recorder(e[3])
    # image weight 2, text 1: one unit of each is fused, the extra image unit is added as in the sum;
    # the rejected image (-0.5) is subtracted from the result
    vector, used = fuse(
        ["image_id", "text", "image_id"],
        [2.0, 1.0, -0.5],
        [e[0], e[1], e[2]],
        recorder,  # type: ignore[arg-type]
    )
    expected = np.sqrt(2) * e[3] + 1.0 * e[0] - 0.5 * e[2]
    assert used == "combiner" and np.allclose(vector, _unit(expected), atol=1e-6)
    # two positive texts are one text input (their weighted sum), not two queries
    fuse(["url", "text", "text"], [1.0, 1.0, 1.0], [e[0], e[1], e[2]], recorder)  # type: ignore[arg-type]
    assert np.allclose(recorder.seen[-1][1], _unit(e[1] + e[2]))
    with pytest.raises(PixgrepError, match="different sizes"):
        fuse(["text", "path"], [1.0, 1.0], [e[0], np.ones(3)], recorder)  # type: ignore[arg-type]
