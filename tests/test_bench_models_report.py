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


def test_costs_go_to_every_row_of_a_measured_architecture(tmp_path):
    registry_json = tmp_path / "registry.json"
    registry_json.write_text(resources.files("pixgrep.models").joinpath("registry.json").read_text())
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
