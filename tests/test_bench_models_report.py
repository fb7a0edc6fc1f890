"""benchmarks/bench_models.py's report handling: costs written into a registry file (ratios to the
ViT-B-32 int8 of the same run) and the docs table. No timing: the reports are made up here."""

from __future__ import annotations

import importlib.util
import json
from importlib import resources
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_models.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_models", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(arch: str, precision: str, image_cpu: float, text_cpu: float) -> dict:
    return {
        "arch": arch,
        "precision": precision,
        "disk_bytes": 300_000_000,
        "image_load_s": 1.0,
        "image_ms_batch1": 3 * image_cpu,
        "image_cpu_ms_batch1": image_cpu,
        "image_ms_batch32": 3 * image_cpu,
        "image_cpu_ms_batch32": image_cpu,
        "image_peak_rss_mb": 500.0,
        "image_load_average": 12.0,
        "text_load_s": 2.0,
        "text_ms_per_query": 3 * text_cpu,
        "text_cpu_ms_per_query": text_cpu,
        "text_peak_rss_mb": 250.0,
        "text_load_average": 12.0,
    }


def _reports() -> list[dict]:
    first = [_row("ViT-B-32", "float32", 120, 50), _row("ViT-B-32", "int8", 40, 50)]
    first += [_row("ViT-B-16", "float32", 480, 50), _row("ViT-B-16", "int8", 160, 50)]
    second = [_row("ViT-B-32", "int8", 50, 45), _row("ViT-B-32", "float32", 150, 45)]
    second += [_row("MobileCLIP2-S0", "float32", 100, 140), _row("MobileCLIP2-S0", "int8", 100, 140)]
    return [
        {"date": "2026-12-07", "started": "13:26 UTC", "results": first},
        {"date": "2026-12-08", "started": "09:00 UTC", "results": second},
    ]


def _unmeasured_registry(tmp_path) -> Path:
    """The packaged registry with every cost emptied: the tests see only what the reports fill."""
    data = json.loads(resources.files("pixgrep.models").joinpath("registry.json").read_text())
    for entry in data["models"]:
        entry["cost"] = None
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(data))
    return path


def test_costs_go_to_every_row_of_a_measured_architecture(tmp_path):
    registry_json = _unmeasured_registry(tmp_path)
    _bench().fill_registry(_reports(), registry_json)
    rows = {e["name"]: e for e in json.loads(registry_json.read_text())["models"]}
    # each ratio is to the ViT-B-32 int8 of its own run: 160/40 and 100/50
    assert rows["ViT-B-16__openai"]["cost"] == {
        "image_rel": 4.0,
        "image_ms": 160.0,
        "text_ms": 50.0,
        "measured": "2026-12-07",
    }
    assert rows["ViT-B-16__laion400m_e32"]["cost"]["image_rel"] == 4.0
    assert rows["MobileCLIP2-S0__dfndr2b"]["cost"]["image_rel"] == 2.0  # an "export" row, by arch
    assert rows["ViT-B-32__openai"]["cost"]["measured"] == "2026-12-08"  # the later run wins
    assert rows["ViT-L-14__openai"]["cost"] is None and rows["pixgrep-mini"]["cost"] is None


def test_the_docs_table_has_a_line_per_run_and_precision():
    lines = _bench().markdown(_reports()).splitlines()
    assert len(lines) == 2 + 8 and lines[0].startswith("| run | architecture | precision |")
    assert lines[4].startswith("| 13:26 UTC | ViT-B-16 | float32 | 480 / 480 | 1440 / 1440 | 12.00 / 12.00 |")
    assert lines[8].startswith(
        "| 09:00 UTC | MobileCLIP2-S0 | float32 | 100 / 100 | 300 / 300 | 2.00 / 2.00 |"
    )


def _reports_with_shared_towers() -> list[dict]:
    """A third run: ViT-H-14, ViT-L-14, pixgrep-mini, and xlm-roberta-large-ViT-H-14's text tower."""
    text_only = _row("xlm-roberta-large-ViT-H-14", "float32", 0, 300)
    for key in [k for k in text_only if k.startswith("image_")]:
        del text_only[key]
    text_only["text_only"] = True
    third = [_row("ViT-B-32", "int8", 40, 50), _row("ViT-B-32", "float32", 120, 50)]
    third += [_row("ViT-H-14", "int8", 1000, 150), _row("ViT-H-14", "float32", 3000, 150), text_only]
    third += [_row("ViT-L-14", "int8", 400, 90), _row("ViT-L-14", "float32", 1200, 90)]
    third += [_row("pixgrep-mini", "int8", 30, 5), _row("pixgrep-mini", "float32", 30, 5)]
    return [*_reports(), {"date": "2026-12-09", "started": "15:00 UTC", "results": third}]


def test_shared_towers_and_pixgrep_mini_are_filled(tmp_path):
    """QuickGELU rows cost their GELU arch; the XLM-R rows take the image tower of the ViT with
    the same config and the text tower of xlm-roberta-large-ViT-H-14 (measured text-only)."""
    registry_json = _unmeasured_registry(tmp_path)
    _bench().fill_registry(_reports_with_shared_towers(), registry_json)
    rows = {e["name"]: e["cost"] for e in json.loads(registry_json.read_text())["models"]}
    assert rows["ViT-L-14-quickgelu__dfn2b"] == rows["ViT-L-14__openai"]
    assert rows["ViT-L-14__openai"]["image_rel"] == 10.0
    assert rows["ViT-H-14-quickgelu__dfn5b"]["image_ms"] == 1000.0
    xlmr_h = rows["XLM-Roberta-Large-ViT-H-14__frozen_laion5b_s13b_b90k"]
    assert (xlmr_h["image_rel"], xlmr_h["text_ms"]) == (25.0, 300.0)
    # M-CLIP: ViT-B-32's image tower (the latest run's), XLM-R large's text tower
    assert rows["XLM-Roberta-Large-Vit-B-32"] == {
        "image_rel": 1.0,
        "image_ms": 40.0,
        "text_ms": 300.0,
        "measured": "2026-12-09",
    }
    assert rows["XLM-Roberta-Large-Vit-B-16Plus"] is None  # ViT-B-16-plus-240 not in these reports
    assert rows["pixgrep-mini"] == {
        "image_rel": 0.75,
        "image_ms": 30.0,
        "text_ms": 5.0,
        "measured": "2026-12-09",
    }
    assert rows["ViT-g-14__laion2b_s12b_b42k"] is None


def test_nllb_clip_large_takes_the_so400m_patch14_image_tower(tmp_path):
    """NLLB-CLIP large's vision_cfg is ViT-SO400M-14-SigLIP-384's; its text tower is timed alone."""
    text_only = _row("nllb-clip-large-siglip", "float32", 0, 2000)
    for key in [k for k in text_only if k.startswith("image_")]:
        del text_only[key]
    text_only["text_only"] = True
    fourth = [_row("ViT-B-32", "int8", 40, 50), _row("ViT-B-32", "float32", 120, 50), text_only]
    fifth = [_row("ViT-B-32", "int8", 50, 50), _row("ViT-SO400M-14-SigLIP-384", "int8", 4000, 900)]
    fifth += [_row("ViT-SO400M-14-SigLIP-384", "float32", 10000, 900)]
    reports = [
        *_reports(),
        {"date": "2026-12-09", "started": "16:49 UTC", "results": fourth},
        {"date": "2026-12-10", "started": "17:30 UTC", "results": fifth},
    ]
    registry_json = _unmeasured_registry(tmp_path)
    _bench().fill_registry(reports, registry_json)
    rows = {e["name"]: e["cost"] for e in json.loads(registry_json.read_text())["models"]}
    expected = {"image_rel": 80.0, "image_ms": 4000.0, "text_ms": 2000.0, "measured": "2026-12-10"}
    assert rows["nllb-clip-large-siglip__mrl"] == rows["nllb-clip-large-siglip__v1"] == expected


def test_a_text_only_row_and_a_cold_batch_in_the_docs_table():
    reports = _reports_with_shared_towers()
    reports[-1]["results"][2]["b32_warmup"] = False  # ViT-H-14 int8
    lines = _bench().markdown(reports).splitlines()
    xlmr = next(line for line in lines if "xlm-roberta-large-ViT-H-14" in line)
    assert xlmr.startswith(
        "| 15:00 UTC | xlm-roberta-large-ViT-H-14 (text tower only) | float32 | - | - | - | 300 / 900 |"
    )
    assert any(line.startswith("| 15:00 UTC | ViT-H-14 | int8 | 1000 / 1000 (cold) |") for line in lines)
