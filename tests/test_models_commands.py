"""`pixgrep models list | info | export` through the real CLI entry point."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from pixgrep.cli import main
from pixgrep.models import registry


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXGREP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_list_json_shows_registry_and_cache_state(cache, capsys, tiny_model_dir):
    shutil.copytree(tiny_model_dir, cache / "models" / "ViT-B-32__openai")
    assert main(["models", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(registry.MODELS)
    default = rows[registry.DEFAULT_MODEL]
    assert default["default"] and default["dim"] == 512 and default["image_size"] == 224
    assert default["repo"] == "immich-app/ViT-B-32__laion2b-s34b-b79k" and default["cached"] is False
    cached = rows["ViT-B-32__openai"]
    assert cached["cached"] and cached["size_bytes"] > 1_000_000
    assert {"imagenet_top1", "flickr_t2i_r1", "coco_i2t_r1"} <= set(cached)


def test_list_table(cache, capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert f"{registry.DEFAULT_MODEL} *" in out and "pixgrep-mini" in out and "cached" in out


def test_list_shows_measured_cost_beside_quality(cache, capsys, monkeypatch):
    import dataclasses

    giant = "ViT-g-14__laion2b_s12b_b42k"  # every row is measured: show one that is not
    monkeypatch.setitem(registry.MODELS, giant, dataclasses.replace(registry.MODELS[giant], cost=None))
    assert main(["models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("img cost  img ms  txt ms")
    b32 = next(line for line in lines if line.startswith("ViT-B-32__openai "))
    assert re.search(r"  1\.0x +\d+ +\d+$", b32), b32  # the reference: ViT-B-32 int8 is 1.0x
    mini = next(line for line in lines if line.startswith("pixgrep-mini"))
    assert re.search(r"  0\.\dx +\d+ +\d+$", mini), mini  # measured on its own build: under 1x
    giant = next(line for line in lines if line.startswith("ViT-g-14__"))
    assert re.search(r"  - +- +-$", giant), giant  # not measured
    assert re.search(r"Cost: CPU time measured here \(\d{4}-\d\d-\d\d", "\n".join(lines))


def test_list_json_carries_the_cost_record(cache, capsys):
    assert main(["models", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    cost = rows["ViT-B-32__laion2b_s34b_b79k"]["cost"]
    assert set(cost) == {"image_rel", "image_ms", "text_ms", "measured"} and cost["image_rel"] == 1.0
    assert cost["image_ms"] > 0 and cost["text_ms"] > 0
    assert rows["pixgrep-mini"]["cost"]["image_rel"] < 1.0
    assert all(row["cost"] for row in rows.values())  # every registry row is measured (docs/models.md)
    giant, huge = rows["ViT-g-14__laion2b_s12b_b42k"], rows["ViT-H-14__laion2b_s32b_b79k"]
    assert giant["cost"]["image_rel"] > huge["cost"]["image_rel"]


def test_info_for_a_folder_and_for_a_name(capsys, tiny_model_dir, cache):
    from pixgrep.models import load_encoder

    assert main(["models", "info", str(tiny_model_dir), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model_id"] == load_encoder(str(tiny_model_dir)).model_id
    assert info["embed_dim"] == 32 and info["context_length"] == 77
    assert info["text_inputs"] == {"text": "tensor(int32) ['batch_size', 'sequence']"}
    assert "visual/model.onnx" in info["files"]
    assert main(["models", "info", "vit-b-32__openai"]) == 0
    out = capsys.readouterr().out
    assert "immich-app/ViT-B-32__openai" in out and "not cached" in out


@pytest.mark.torch
def test_export_cli_writes_a_loadable_folder(tmp_path, capsys, tiny_model_dir):
    from tiny_model import ARCH

    from pixgrep.models import load_encoder

    out = tmp_path / "exported"
    assert main(["models", "export", ARCH, "--pretrained", "none", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model_id"].startswith("exported@")
    enc = load_encoder(str(out))
    assert enc.encode_texts(["hello"]).shape == (1, 32)
    assert main(["models", "export", ARCH, "--pretrained", "none", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err


@pytest.mark.torch
def test_export_rejects_unknown_arch_and_tag(tmp_path, capsys):
    pytest.importorskip("open_clip")
    assert main(["models", "export", "ViT-Nope", "--pretrained", "none", "--out", str(tmp_path / "a")]) == 2
    assert "unknown open_clip architecture" in capsys.readouterr().err
    assert main(["models", "export", "ViT-B-32", "--pretrained", "bogus", "--out", str(tmp_path / "b")]) == 2
    assert "neither a pretrained tag" in capsys.readouterr().err


def test_download_command_fetches_into_the_cache(cache, capsys, monkeypatch, tiny_model_dir):
    import huggingface_hub

    monkeypatch.setattr(
        huggingface_hub,
        "snapshot_download",
        lambda **kw: shutil.copytree(tiny_model_dir, kw["local_dir"], dirs_exist_ok=True),
    )
    assert main(["models", "download", "vit-b-32__openai"]) == 0
    assert str(cache / "models" / "ViT-B-32__openai") in capsys.readouterr().out
    assert main(["models", "info", "ViT-B-32__openai", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["cached"] and info["model_id"] == "ViT-B-32__openai" and info["embed_dim"] == 32


def test_list_reads_pixgrep_mini_dims_from_its_built_folder(cache, capsys, monkeypatch, tiny_model_dir):
    from pixgrep.models import hub

    monkeypatch.setattr(hub, "_mini_key", lambda: "k1")
    shutil.copytree(tiny_model_dir, cache / "models" / "pixgrep-mini-k1")
    assert main(["models", "list", "--json"]) == 0
    mini = {r["name"]: r for r in json.loads(capsys.readouterr().out)}["pixgrep-mini"]
    assert mini["cached"] and mini["dim"] == 32 and mini["image_size"] == 48


def test_importing_the_models_cli_stays_light():
    """`pixgrep --help` and a text query start fast: no ORT, torch or tokenizers at import."""
    import subprocess
    import sys

    code = (
        "import sys, pixgrep.models, pixgrep.cli.models, pixgrep.models.registry, pixgrep.models.hub; "
        "print(sorted(m for m in ('onnxruntime', 'torch', 'tokenizers', 'open_clip', 'huggingface_hub') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
