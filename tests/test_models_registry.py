"""The registry as data (registry.json -> ModelSpec), the docs table, and what a --model value names."""

from __future__ import annotations

import json
import re
import shutil
from importlib import resources
from pathlib import Path

import pytest

from pixgrep.cli import main
from pixgrep.errors import PixgrepError
from pixgrep.models import hub, load_encoder, registry
from pixgrep.models.reference import resolve_model

DOCS = Path(__file__).resolve().parents[1] / "docs" / "models.md"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXGREP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _data() -> dict:
    return json.loads(resources.files("pixgrep.models").joinpath("registry.json").read_text())


def test_the_registry_is_the_json_file_field_by_field():
    data = _data()
    assert registry.DEFAULT_MODEL == data["default"]
    assert [spec.as_dict() for spec in registry.MODELS.values()] == data["models"]


def test_docs_table_is_the_registry():
    text = DOCS.read_text()
    table = re.search(r"<!-- registry-table[^>]*-->\n(.*?)<!-- /registry-table -->", text, re.S)
    assert table, "docs/models.md lost its registry-table markers"
    assert table.group(1) == registry.markdown_table(), (
        "docs/models.md is out of date: paste the output of `python -m pixgrep.models.registry`"
    )
    assert (
        "| **ViT-B-32__laion2b_s34b_b79k** (default) | 512 | 224 | en | 66.56 | 84.10 / 66.78 |"
        in table.group(1)
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["models"][0].update(dims=512), "unknown fields"),
        (lambda d: d["models"][0].pop("image_size"), "missing"),
        (lambda d: d["models"].append(dict(d["models"][0])), "twice"),
        (lambda d: d["models"][0].update(repo=None), "needs a repo"),
        (lambda d: d.update(default="nope"), "default 'nope'"),
        (lambda d: d["models"][0].update(cost={"image_rel": 1.0}), "bad cost"),
    ],
)
def test_a_malformed_registry_is_refused_naming_the_entry(change, message):
    data = _data()
    change(data)
    with pytest.raises(ValueError, match=message):
        registry.parse_registry(data)


def test_references_registry_names():
    assert resolve_model(None).spec == registry.MODELS[registry.DEFAULT_MODEL]
    assert resolve_model("vit-b-32__openai").spec.name == "ViT-B-32__openai"
    assert resolve_model("ViT-B-32__laion2b-s34b-b79k").spec.name == "ViT-B-32__laion2b_s34b_b79k"
    with pytest.raises(PixgrepError, match="unknown model 'ViT-B-32-laion2b'; did you mean"):
        resolve_model("ViT-B-32-laion2b")


def test_references_hub_repositories():
    listed = resolve_model("hf:immich-app/ViT-B-32__openai").spec
    assert listed == registry.MODELS["ViT-B-32__openai"]  # same entry, same model id
    other = resolve_model("hf:someone/my-clip.v2").spec
    assert other.name == "hf:someone/my-clip.v2" and other.repo == "someone/my-clip.v2"
    assert other.source == "hub" and resolve_model("hf:someone/my-clip.v2").folder is None
    for bad in ("hf:", "hf:no-owner", "hf:a/b/c", "hf:../x", "hf:a/ b"):
        with pytest.raises(PixgrepError, match="hf:OWNER/REPO"):
            resolve_model(bad)


def test_references_folders(tmp_path, monkeypatch):
    for value in ("./b32", "~/models/b32", "models/b32", str(tmp_path / "b32")):
        resolved = resolve_model(value)
        assert resolved.spec is None and resolved.folder == Path(value).expanduser()
    assert resolve_model(tmp_path).folder == tmp_path  # a Path is always a folder
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mymodel").mkdir()
    (tmp_path / "pixgrep-mini").mkdir()
    assert resolve_model("mymodel").folder == Path("mymodel")  # an existing folder
    assert resolve_model("pixgrep-mini").spec.name == "pixgrep-mini"  # an exact name wins
    assert resolve_model("./pixgrep-mini").folder == Path("pixgrep-mini")


def test_an_unlisted_hub_repository_downloads_into_its_own_cache_folder(cache, monkeypatch, tiny_model_dir):
    import huggingface_hub

    calls = []

    def fake_download(**kwargs):
        calls.append(kwargs["repo_id"])
        shutil.copytree(tiny_model_dir, kwargs["local_dir"], dirs_exist_ok=True)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    enc = load_encoder("hf:someone/my-clip")
    assert enc.model_id == "hf:someone/my-clip" and calls == ["someone/my-clip"]
    assert (cache / "models" / "hf--someone--my-clip" / "config.json").is_file()
    assert hub.is_cached(resolve_model("hf:someone/my-clip").spec)
    load_encoder("hf:someone/my-clip")
    assert calls == ["someone/my-clip"]  # cached


def test_models_download_refuses_a_folder(capsys, tmp_path):
    assert main(["models", "download", str(tmp_path)]) == 2
    assert "nothing to download" in capsys.readouterr().err


def test_models_info_for_an_uncached_hub_repository(cache, capsys):
    assert main(["models", "info", "hf:someone/my-clip", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "hf:someone/my-clip" and info["cached"] is False and info["dim"] is None


def test_multilingual_and_siglip2_rows_with_published_figures_only():
    siglip2 = registry.get_spec("ViT-B-16-SigLIP2__webli")
    assert (
        siglip2.languages.startswith("multilingual") and siglip2.imagenet_top1 is None
    )  # no open_clip figure
    nllb = registry.get_spec("nllb-clip-base-siglip__mrl")
    assert nllb.repo == "immich-app/nllb-clip-base-siglip__mrl" and nllb.xm3600_t2i_r1 == 55.39
    default = registry.MODELS[registry.DEFAULT_MODEL]
    assert default.languages == "en" and default.xm3600_t2i_r1 < nllb.xm3600_t2i_r1
    exported = [s for s in registry.MODELS.values() if s.source == "export"]
    assert {s.arch for s in exported} >= {"MobileCLIP2-S0", "MobileCLIP2-B"}
    assert all(s.pretrained and s.repo is None for s in exported)


@pytest.mark.parametrize(
    "change",
    [
        lambda e: e.update(source="export", repo=None),
        lambda e: e.update(arch="ViT-B-32", pretrained="openai"),
    ],
)
def test_an_exported_entry_needs_arch_and_pretrained_and_only_it(change):
    data = _data()
    change(data["models"][0])
    with pytest.raises(ValueError, match="needs arch and pretrained"):
        registry.parse_registry(data)


def test_an_exported_registry_model_is_exported_by_download_into_the_cache_once(cache, monkeypatch):
    from pixgrep.lab import export
    from pixgrep.models import folder as model_folder

    calls = []

    def fake_export(arch, pretrained, out, **kwargs):
        calls.append((arch, pretrained))
        shutil.copytree(Path(tiny), out, dirs_exist_ok=True)
        return out

    spec = registry.get_spec("MobileCLIP2-S0__dfndr2b")
    tiny = hub.models_dir().parent / "src"
    (tiny / "visual").mkdir(parents=True)
    (tiny / "config.json").write_text("{}")
    monkeypatch.setattr(export, "export_open_clip", fake_export)
    monkeypatch.setattr(model_folder, "open_folder", lambda path: None)  # the stand-in has no towers
    # The runtime never exports: a search with it names the one command that does.
    with pytest.raises(PixgrepError, match="pixgrep models download MobileCLIP2-S0__dfndr2b"):
        hub.ensure_folder(spec)
    assert calls == []
    assert main(["models", "download", "MobileCLIP2-S0__dfndr2b"]) == 0
    folder = hub.ensure_folder(spec)
    assert calls == [("MobileCLIP2-S0", "dfndr2b")] and (folder / "config.json").is_file()
    assert main(["models", "download", "MobileCLIP2-S0__dfndr2b"]) == 0 and len(calls) == 1
