"""int8 variants (models/quantize.py, `pixgrep models quantize`, `--model NAME@int8`) and the
execution-provider choice (models/devices.py; no GPU here: CUDA is stubbed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixgrep.cli import main
from pixgrep.errors import PixgrepError
from pixgrep.models import devices, load_encoder, quantize
from pixgrep.models.folder import open_folder

pytest.importorskip("onnx")
pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

TEXTS = ["a dog on the beach", "a red car", "two children in the snow", "", "sunset over the sea"]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("PIXGREP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def tiny_int8(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model quantised once for this module (dynamic, both towers)."""
    out = tmp_path_factory.mktemp("q") / "tiny-int8"
    base = open_folder(tiny_model_dir)
    quantize.quantize_folder(base, out, base_id=base.fingerprint(), text_tower="int8")
    return out


def photos(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    paths = []
    for i in range(count):
        field = np.linspace(0, 255, 64 * 80 * 3).reshape(64, 80, 3) * rng.uniform(0.2, 1.0, 3)
        noisy = field + rng.normal(0, 20, field.shape)
        path = folder / f"p{i:02d}.jpg"
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def test_variant_folder_is_int8_loads_and_stays_close_to_float32(tiny_model_dir, tiny_int8, tmp_path):
    import onnx

    meta = json.loads((tiny_int8 / "variant.json").read_text())
    assert meta["variant"] == "int8" and meta["method"] == "dynamic"
    assert meta["of"] == open_folder(tiny_model_dir).fingerprint()
    cost = meta["cost"]
    assert 0.99 <= cost["image_cosine_mean"] <= 1.0 and 0.95 <= cost["text_cosine_min"] <= 1.0
    for tower in ("visual", "textual"):  # really quantised: integer matmuls, int8 weights
        graph = onnx.load(str(tiny_int8 / tower / "model.onnx")).graph
        assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in graph.node)
        assert any(t.data_type == onnx.TensorProto.INT8 for t in graph.initializer)
    f32, q8 = load_encoder(str(tiny_model_dir)), load_encoder(str(tiny_int8))
    assert q8.model_id != f32.model_id
    files = photos(tmp_path / "p", 12)
    a = f32.encode_images([Image.open(p) for p in files])
    b = q8.encode_images([Image.open(p) for p in files])
    assert np.sum(a * b, axis=1).min() > 0.98
    assert not np.allclose(a, b, atol=1e-6)  # not the float32 graph under another name
    t = np.sum(f32.encode_texts(TEXTS) * q8.encode_texts(TEXTS), axis=1)
    assert t.min() > 0.95


def test_name_at_int8_builds_once_into_the_cache_under_its_own_id(cache, tiny_model_dir):
    base_id = open_folder(tiny_model_dir).fingerprint()
    enc = load_encoder(f"{tiny_model_dir}@int8")
    assert enc.model_id == f"{base_id}@int8"
    assert enc.folder.path == quantize.cached_variant_dir(base_id)
    assert str(enc.folder.path).startswith(str(cache))
    stamp = (enc.folder.path / "visual" / "model.onnx").stat().st_mtime_ns
    again = load_encoder(f"{tiny_model_dir}@int8")
    assert again.model_id == enc.model_id
    assert (again.folder.path / "visual" / "model.onnx").stat().st_mtime_ns == stamp  # not rebuilt
    assert not list(enc.folder.path.parent.glob(".*partial*"))
    meta = quantize.read_metadata(enc.folder.path)
    assert meta is not None and meta["text_tower"] == "float32 (unchanged)"  # the default
    assert meta["cost"]["text_cosine_min"] == 1.0  # the same float32 text tower


def test_a_folder_whose_name_ends_in_at_int8_is_a_folder(tmp_path, tiny_model_dir):
    odd = tmp_path / "mine@int8"
    shutil.copytree(tiny_model_dir, odd)
    assert quantize.parse_variant(str(odd)) is None
    assert load_encoder(str(odd)).model_id.startswith("mine@int8@")


def test_int8_and_float32_vectors_never_mix_in_a_catalog(cache, tiny_model_dir, tmp_path, capsys):
    photos(tmp_path / "pics", 6)
    catalog = str(tmp_path / "catalog.db")
    args = ["index", str(tmp_path / "pics"), "--catalog", catalog, "--json", "--model"]
    assert main([*args, str(tiny_model_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["encoded"] == 6
    assert main([*args, f"{tiny_model_dir}@int8"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["encoded"] == 6 and second["reused"] == 0  # no float32 vector reused for int8
    assert main(["stats", "--catalog", catalog, "--json"]) == 0
    vectors = json.loads(capsys.readouterr().out)["vectors"]
    base_id = open_folder(tiny_model_dir).fingerprint()
    assert vectors == {base_id: 6, f"{base_id}@int8": 6}
    query = ["search", "-n", "-f", "a photo", "--in", str(tmp_path / "pics"), "--catalog", catalog]
    assert main([*query, "--model", f"{tiny_model_dir}@int8"]) == 0
    assert len(capsys.readouterr().out.split()) == 6


def test_quantize_cli_end_to_end_and_info_shows_the_cost(tiny_model_dir, tmp_path, capsys, cache):
    images = tmp_path / "mine"
    photos(images, 14)
    out = tmp_path / "q"
    assert (
        main(
            ["models", "quantize", str(tiny_model_dir), "--out", str(out), "--images", str(images), "--json"]
        )
        == 0
    )
    meta = json.loads(capsys.readouterr().out)
    assert meta["cost"]["images"] == "14 given images" and meta["cost"]["texts"] == len(
        quantize.MEASURE_TEXTS
    )
    assert meta["model_id"] == load_encoder(str(out)).model_id
    assert main(["models", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "int8 of" in text and "top-10 agreement" in text and "14 given images" in text
    # NAME@int8 before and after it is built into the cache
    assert main(["models", "info", f"{tiny_model_dir}@int8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cached"] is False
    assert main(["models", "quantize", str(tiny_model_dir), "--text-tower", "int8"]) == 0
    assert "--model" in capsys.readouterr().out
    assert main(["models", "info", f"{tiny_model_dir}@int8", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["cached"] and info["model_id"].endswith("@int8")
    assert info["variant"]["text_tower"] == "int8 dynamic"
    assert 0.95 < info["variant"]["cost"]["text_cosine_min"] < 1.0
    assert info["variant"]["cost"]["images"].startswith("48 generated images")


def test_quantize_cli_errors_are_one_line(tiny_model_dir, tmp_path, capsys, cache):
    cases = [
        (["--method", "static"], "needs --calibration"),
        (["--images", str(tmp_path / "nowhere")], "no such folder"),
        (["--out", str(tiny_model_dir)], "not empty"),
    ]
    for extra, message in cases:
        assert main(["models", "quantize", str(tiny_model_dir), *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert main(["models", "quantize", f"{tiny_model_dir}@int8"]) == 2
    assert "already a variant" in capsys.readouterr().err
    assert main(["models", "quantize", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_static_method_calibrates_on_images(tiny_model_dir, tmp_path):
    files = photos(tmp_path / "cal", 8)
    out = tmp_path / "static"
    meta = quantize.quantize_folder(
        open_folder(tiny_model_dir),
        out,
        base_id="tiny",
        method="static",
        calibration=files,
        measure_images=files,
    )
    assert meta["method"] == "static" and "calibrated (MinMax) on 8 images" in meta["activations"]
    assert meta["cost"]["image_cosine_mean"] > 0.9
    assert load_encoder(str(out)).encode_images([Image.open(files[0])]).shape == (1, 32)


def test_a_source_with_external_weights_quantises_to_a_complete_variant(
    tiny_model_dir, tmp_path, monkeypatch
):
    """Cached towers keep their weights in model.onnx.data; the float32 text tower copied into
    the variant must take its weights with it (it once came without them and did not load)."""
    from pixgrep.models import folder as folder_module

    monkeypatch.setattr(folder_module, "EXTERNAL_MIN_BYTES", 1)  # the tiny model is below the real cut
    source = tmp_path / "source"
    shutil.copytree(tiny_model_dir, source)
    folder_module.fast_loading(source)
    assert folder_module.external_data_path(source / "textual" / "model.onnx").is_file()
    out = tmp_path / "variant"
    quantize.quantize_folder(open_folder(source), out, base_id="src", measure=False)
    assert folder_module.external_data_path(out / "textual" / "model.onnx").is_file()
    expected = load_encoder(str(source)).encode_texts(TEXTS)
    np.testing.assert_array_equal(load_encoder(str(out)).encode_texts(TEXTS), expected)


# --- devices: no GPU in this project's CI, so CUDA is a stub -------------------------------------


def test_provider_choice():
    both = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert devices.choose_providers("auto", both, gpu=True) == both
    assert devices.choose_providers("auto", both, gpu=False) == ["CPUExecutionProvider"]
    assert devices.choose_providers("auto", ["CPUExecutionProvider"], gpu=True) == ["CPUExecutionProvider"]
    assert devices.choose_providers("cpu", both, gpu=True) == ["CPUExecutionProvider"]
    assert devices.choose_providers("cuda", both, gpu=True) == both
    with pytest.raises(PixgrepError, match="no GPU is visible"):
        devices.choose_providers("cuda", both, gpu=False)
    with pytest.raises(PixgrepError, match="onnxruntime-gpu is not installed"):
        devices.choose_providers("cuda", ["CPUExecutionProvider"], gpu=True)
    with pytest.raises(PixgrepError, match="unknown device"):
        devices.choose_providers("tpu", both, gpu=True)
    assert devices.batch_size(both) == 128 and devices.batch_size(["CPUExecutionProvider"]) == 32


def test_gpu_visibility_respects_cuda_visible_devices(monkeypatch):
    monkeypatch.setattr(devices.glob, "glob", lambda pattern: ["/dev/nvidia0"])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert devices.gpu_visible()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert not devices.gpu_visible()


class _StubCudaSession:
    """Stands in for an ORT session on a GPU machine: records the providers asked for, runs on the
    CPU, and reports CUDA as its provider (or not, to play a CUDA that failed to start)."""

    asked: list[list[str]] = []
    starts = True

    def __init__(self, path, options=None, providers=None):
        type(self).asked.append(list(providers or []))
        self._real = _REAL_SESSION(path, options, providers=["CPUExecutionProvider"])

    def get_providers(self):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"] if self.starts else ["CPUExecutionProvider"]

    def __getattr__(self, name):
        return getattr(self._real, name)


_REAL_SESSION = None


@pytest.fixture
def stub_gpu(monkeypatch):
    import onnxruntime as ort

    global _REAL_SESSION
    _REAL_SESSION = ort.InferenceSession
    _StubCudaSession.asked, _StubCudaSession.starts = [], True
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    monkeypatch.setattr(ort, "InferenceSession", _StubCudaSession)
    monkeypatch.setattr(devices, "gpu_visible", lambda: True)
    monkeypatch.setattr(devices, "_default", None)
    monkeypatch.delenv("PIXGREP_DEVICE", raising=False)
    return _StubCudaSession


def test_auto_takes_the_stubbed_gpu_with_big_batches(stub_gpu, tiny_model_dir):
    enc = load_encoder(str(tiny_model_dir))
    vectors = enc.encode_texts(TEXTS)
    assert stub_gpu.asked == [["CUDAExecutionProvider", "CPUExecutionProvider"]]
    assert enc.preferred_batch_size == 128 and enc.textual.gpu
    cpu = load_encoder(str(tiny_model_dir), device="cpu")
    np.testing.assert_allclose(cpu.encode_texts(TEXTS), vectors, atol=1e-6)
    assert stub_gpu.asked[-1] == ["CPUExecutionProvider"] and cpu.preferred_batch_size == 32


def test_cuda_that_does_not_start_is_an_error_not_a_silent_cpu_run(stub_gpu, tiny_model_dir):
    stub_gpu.starts = False
    with pytest.raises(PixgrepError, match="could not start"):
        load_encoder(str(tiny_model_dir), device="cuda").encode_texts(["x"])
    devices.set_default_device("cpu")
    assert load_encoder(str(tiny_model_dir)).providers == ["CPUExecutionProvider"]


def test_device_option_on_this_machine_without_cuda(tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(devices, "_default", None)
    photos(tmp_path / "pics", 2)
    base = [
        "index",
        str(tmp_path / "pics"),
        "--catalog",
        str(tmp_path / "c.db"),
        "--model",
        str(tiny_model_dir),
    ]
    code = main([*base, "--device", "cuda"])
    err = capsys.readouterr().err
    if (
        "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers()
        and devices.gpu_visible()
    ):
        pytest.skip("this machine has a GPU: the error path needs a CPU-only machine")
    assert code == 2 and "--device cuda:" in err and err.count("\n") == 1
    assert main([*base, "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["encoded"] == 2
    monkeypatch.setenv("PIXGREP_DEVICE", "gpu")
    monkeypatch.setattr(devices, "_default", None)
    assert main(["models", "list"]) == 0  # commands without a model ignore it
    assert main(base) == 2 and "PIXGREP_DEVICE must be one of auto, cpu, cuda" in capsys.readouterr().err
