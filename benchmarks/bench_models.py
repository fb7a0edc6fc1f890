"""Cost of registry architectures side by side: random weights (a forward pass costs the same
whatever the weights), exported to a model folder, in float32 and int8 (image tower quantised
dynamically, as `pixgrep models quantize` does by default).

    .venv/bin/python benchmarks/bench_models.py --arch ViT-B-32 --arch MobileCLIP2-S0 --json out.json
    .venv/bin/python benchmarks/bench_models.py            # every registry architecture (hours)
    .venv/bin/python benchmarks/bench_models.py --fill-registry out.json ...   # into registry.json; table

Per architecture and precision, each in a fresh process (so load times are from a cold
interpreter and peak RSS belongs to that run): image tower load time, image ms per image at batch
1 and 32 (preprocessed pixels; batch 32 is one timed call after a warm-up), text tower load time (session +
tokenizer), text ms per query (20 Flickr8k captions one by one), peak RSS of each process, disk
size of the folder, and the load average when each process ended. Every timing is taken twice:
wall-clock and the process's CPU time (all of ONNX Runtime's threads, counting the text tower's
spin-waiting). On a shared machine wall time measures the load as much as the model; CPU time
moves much less, so compare CPU times, and ratios between architectures measured close together:
--rounds N measures every folder once per round, interleaved, and reports the median. All exports
are made first, so timing never overlaps an export. Models with a Hugging Face tokenizer get one
trained here on Flickr8k captions (the cost of a lookup does not depend on it); NLLB / XLM-R text
towers need their transformers config (--text-config ARCH=DIR: a folder holding the config.json
of the hub model, e.g. saved with transformers' M2M100Config / XLMRobertaConfig).

For the largest towers (seconds per image here) --cold-b32 ARCH skips the batch-32 warm-up: the
batch-1 calls have warmed the session, and the one timed call of 32 images then also pays the
arena's growth, small beside its minutes. --text-only ARCH exports ARCH with a tiny image tower
and measures its text tower alone, for an architecture whose image tower is another's, measured
already (SHARED_TOWERS: which measurement each registry row takes its image and text cost from).
"pixgrep-mini" is measured on the folder pixgrep builds itself (no open_clip export).
Needs `pip install "pixgrep[export,quantize]"`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def _captions(n: int) -> list[str]:
    path = SHARED / "flickr8k" / "captions.tsv"
    if path.is_file():
        return [r.split("\t")[2] for r in path.read_text().splitlines()[1 : n + 1]]
    return [f"a photo of a {w} number {i}" for i, w in enumerate(["cat", "dog", "car"] * n)][:n]


# Registry architectures that cost what another measured architecture costs: (image tower from,
# text tower from). QuickGELU (x * sigmoid(1.702 x)) against GELU is one elementwise op per MLP
# either way; the XLM-R rows share ViT-H-14's, ViT-B-32's and ViT-B-16-plus-240's image tower
# configs, and M-CLIP's text tower is XLM-R large with mean pooling and a linear projection, as
# xlm-roberta-large-ViT-H-14's is (its projection to 512 / 640 instead of 1024: ~1M of 560M weights).
# NLLB-CLIP large's vision_cfg is ViT-SO400M-14-SigLIP-384's (timm vit_so400m_patch14_siglip_384,
# MAP pool, no projection); its text tower is measured alone (--text-only nllb-clip-large-siglip).
SHARED_TOWERS = {
    "vit-l-14-quickgelu": ("ViT-L-14", "ViT-L-14"),
    "vit-h-14-quickgelu": ("ViT-H-14", "ViT-H-14"),
    "xlm-roberta-large-vit-h-14": ("ViT-H-14", "xlm-roberta-large-ViT-H-14"),
    "xlm-roberta-large-vit-b-32": ("ViT-B-32", "xlm-roberta-large-ViT-H-14"),
    "xlm-roberta-large-vit-b-16plus": ("ViT-B-16-plus-240", "xlm-roberta-large-ViT-H-14"),
    "nllb-clip-large-siglip": ("ViT-SO400M-14-SigLIP-384", "nllb-clip-large-siglip"),
}
MINI = "pixgrep-mini"


def registry_archs() -> list[str]:
    """The architectures behind the registry's rows: open_clip's, and pixgrep-mini (rows in
    SHARED_TOWERS are measured through the architectures they name)."""
    import open_clip

    from pixgrep.models import registry

    archs = []
    for spec in registry.MODELS.values():
        arch = spec.arch or spec.name.split("__")[0]
        if spec.source == "build":
            found = MINI
        else:
            found = next((a for a in open_clip.list_models() if a.lower() == arch.lower()), None)
        if found and found.lower() not in SHARED_TOWERS and found not in archs:
            archs.append(found)
    return archs


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _tokenizer_folder(work: Path) -> Path:
    """A Unigram tokenizer (NFKC, Metaspace, </s> at the end) trained on captions."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    dest = work / "tokenizer"
    if (dest / "tokenizer.json").is_file():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=2000, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    tok.train_from_iterator(_captions(20000), trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tok.save(str(dest / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "<pad>", "eos_token": "</s>"}
    (dest / "tokenizer_config.json").write_text(json.dumps(config))
    return dest


# the image tower of a --text-only export: a forward pass of a few ms, never timed
TINY_VISION = {"image_size": 224, "layers": 1, "width": 64, "head_width": 64, "patch_size": 32}


def build(
    arch: str,
    work: Path,
    text_config: str | None,
    tokenizer: str | None = None,
    text_only: bool = False,
) -> tuple[Path, Path]:
    """(float32 folder, int8 folder) of `arch` with random weights, exported once into `work`
    (pixgrep-mini: the folder pixgrep builds, its own weights)."""
    f32, q8 = work / arch, work / f"{arch}@int8"
    if arch == MINI:
        from pixgrep.models import registry
        from pixgrep.models.hub import ensure_folder

        f32 = ensure_folder(registry.MODELS[MINI])
    elif not (f32 / "textual" / "model.onnx").is_file():  # never exported, or an export that failed
        import open_clip

        from pixgrep.lab.export import export_open_clip

        shutil.rmtree(f32, ignore_errors=True)
        config = open_clip.get_model_config(arch) or {}
        hf = config.get("text_cfg", {}).get("hf_tokenizer_name")
        if hf and not tokenizer:
            tokenizer = str(_tokenizer_folder(work))
        model_cfg = dict(json.loads(json.dumps(config)), vision_cfg=TINY_VISION) if text_only else None
        export_open_clip(arch, "none", f32, tokenizer=tokenizer, text_config=text_config, model_cfg=model_cfg)
    if not text_only and not (q8 / "config.json").is_file():
        # in a fresh process: the export's freed memory stays with this one, and quantising a
        # tower over 2 GB takes several times its size
        subprocess.run([sys.executable, __file__, "--quantize-worker", str(f32), str(q8), arch], check=True)
    return f32, q8


def quantize_worker(f32: str, q8: str, arch: str) -> None:
    from pixgrep.models.folder import open_folder
    from pixgrep.models.quantize import quantize_folder

    quantize_folder(open_folder(f32), Path(q8), base_id=arch, measure=False)


def _peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not getrusage's ru_maxrss: Linux keeps
    ru_maxrss across execve, so a worker would report its parent's peak (the torch export)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def _cost_per_item(
    fn, items: int, min_seconds: float, min_calls: int, warmup: bool = True
) -> tuple[float, float]:
    """(wall ms, CPU ms) per item over repeated calls of `fn`. CPU time is the process's, so it
    counts every ONNX Runtime thread; on a shared machine it moves much less than wall time."""
    if warmup:
        fn()  # ORT allocates its arenas on the first run
    calls, start, cpu = 0, time.perf_counter(), time.process_time()
    while calls < min_calls or time.perf_counter() - start < min_seconds:
        fn()
        calls += 1
    per = calls * items / 1000
    return (time.perf_counter() - start) / per, (time.process_time() - cpu) / per


def worker(mode: str, folder: str, b32_warmup: bool = True) -> dict:
    import numpy as np

    from pixgrep.models import load_encoder

    start = time.perf_counter()
    enc = load_encoder(folder)
    out: dict = {}
    if mode == "image":
        enc.visual  # noqa: B018
        out["image_load_s"] = time.perf_counter() - start
        h, w = enc.preprocess_cfg.size
        # batch 32 is bounded (warm-up + 1 timed call: 64 images) so the large towers stay affordable
        for batch, min_seconds, min_calls in ((1, 2.0, 3), (32, 0.0, 1)):
            pixels = np.random.default_rng(0).standard_normal((batch, 3, h, w)).astype(np.float32)
            warm = batch == 1 or b32_warmup
            wall, cpu = _cost_per_item(
                lambda p=pixels: enc.encode_pixels(p), batch, min_seconds, min_calls, warm
            )
            out[f"image_ms_batch{batch}"], out[f"image_cpu_ms_batch{batch}"] = wall, cpu
        out["image_peak_rss_mb"] = _peak_rss_mb()
        out["b32_warmup"] = b32_warmup
    else:
        enc.tokenize([""])  # the text session and the tokenizer
        out["text_load_s"] = time.perf_counter() - start
        captions = _captions(20)
        enc.encode_texts(captions[:1])
        t, cpu = time.perf_counter(), time.process_time()
        for text in captions:
            enc.encode_texts([text])
        out["text_ms_per_query"] = (time.perf_counter() - t) / len(captions) * 1000
        out["text_cpu_ms_per_query"] = (time.process_time() - cpu) / len(captions) * 1000
        out["text_peak_rss_mb"] = _peak_rss_mb()
    out[f"{mode}_load_average"] = os.getloadavg()[0]
    return out


def measure(folder: Path, text_only: bool = False, b32_warmup: bool = True) -> dict:
    row: dict = {"disk_bytes": _folder_bytes(folder)}
    if text_only:
        row["text_only"] = True
    for mode in ("text",) if text_only else ("image", "text"):
        run = subprocess.run(
            [sys.executable, __file__, "--worker", mode, str(folder)]
            + ([] if b32_warmup else ["--cold-b32-worker"]),
            capture_output=True,
            text=True,
            check=True,
        )
        row.update(json.loads(run.stdout.strip().splitlines()[-1]))
    return row


def _median_rows(rows: list[dict]) -> dict:
    """One row per (arch, precision): the median of every figure over the rounds."""
    import statistics

    merged = dict(rows[0])
    for key, value in rows[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            merged[key] = statistics.median(r[key] for r in rows)
    merged["rounds"] = len(rows)
    return merged


def _rows_with_ratios(reports: list[dict]) -> list[dict]:
    """Every report's rows, each with its image cost relative to the ViT-B-32 int8 measured in
    the same run (wall and CPU; None for a text-only row), and the run's start time."""
    out = []
    for report in reports:
        ref = next(r for r in report["results"] if r["arch"] == "ViT-B-32" and r["precision"] == "int8")
        for r in report["results"]:
            image = "image_cpu_ms_batch32" in r
            out.append(
                dict(
                    r,
                    started=report.get("started", report["date"]),
                    date=report["date"],
                    cpu_x=r["image_cpu_ms_batch32"] / ref["image_cpu_ms_batch32"] if image else None,
                    wall_x=r["image_ms_batch32"] / ref["image_ms_batch32"] if image else None,
                )
            )
    return out


def fill_registry(reports: list[dict], registry_json: Path) -> None:
    """Write each measured architecture's cost into the registry rows built on it (CPU time:
    image int8 batch 32 relative to ViT-B-32 int8 of the same run, text float32 per query); a
    later report wins for an architecture measured twice. A row in SHARED_TOWERS takes its image
    and its text cost from the architectures named there; the date is the later of the two."""
    rows = {(r["arch"].lower(), r["precision"]): r for r in _rows_with_ratios(reports)}
    data = json.loads(registry_json.read_text())
    for entry in data["models"]:
        arch = MINI if entry["source"] == "build" else (entry.get("arch") or entry["name"].split("__")[0])
        image_arch, text_arch = SHARED_TOWERS.get(arch.lower(), (arch, arch))
        int8, f32 = rows.get((image_arch.lower(), "int8")), rows.get((text_arch.lower(), "float32"))
        entry.setdefault("cost", None)  # every row has the field: null where never measured
        if int8 and f32 and int8["cpu_x"] is not None:
            entry["cost"] = {
                "image_rel": round(int8["cpu_x"], 2),
                "image_ms": round(int8["image_cpu_ms_batch32"], 1),
                "text_ms": round(f32["text_cpu_ms_per_query"], 1),
                "measured": max(int8["date"], f32["date"]),
            }
    registry_json.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def markdown(reports: list[dict]) -> str:
    """The cost table of docs/models.md: CPU and wall times, and ratios to ViT-B-32 int8. A
    text-only row has '-' for its image columns; "cold" marks a batch 32 timed without warm-up."""
    lines = [
        "| run | architecture | precision | image CPU ms b1 / b32 | image wall ms b1 / b32 "
        "| image x B-32 int8, CPU / wall (b32) | text CPU / wall ms per query | load s image / text "
        "| peak RSS MB image / text | disk MB | load average image / text |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in _rows_with_ratios(reports):
        if r["cpu_x"] is None:
            image = ["-", "-", "-"]
            load, rss, average = f"- / {r['text_load_s']:.1f}", f"- / {r['text_peak_rss_mb']:.0f}", "-"
            arch = f"{r['arch']} (text tower only)"
        else:
            cold = "" if r.get("b32_warmup", True) else " (cold)"
            image = [
                f"{r['image_cpu_ms_batch1']:.0f} / {r['image_cpu_ms_batch32']:.0f}{cold}",
                f"{r['image_ms_batch1']:.0f} / {r['image_ms_batch32']:.0f}",
                f"{r['cpu_x']:.2f} / {r['wall_x']:.2f}",
            ]
            load = f"{r['image_load_s']:.1f} / {r['text_load_s']:.1f}"
            rss = f"{r['image_peak_rss_mb']:.0f} / {r['text_peak_rss_mb']:.0f}"
            average = f"{r['image_load_average']:.1f}"
            arch = r["arch"]
        lines.append(
            f"| {r['started']} | {arch} | {r['precision']} | {image[0]} | {image[1]} | {image[2]} "
            f"| {r['text_cpu_ms_per_query']:.0f} / {r['text_ms_per_query']:.0f} "
            f"| {load} | {rss} | {r['disk_bytes'] / 1e6:.0f} "
            f"| {average} / {r['text_load_average']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--arch", action="append", help="open_clip architecture (repeat; default: the registry's)"
    )
    parser.add_argument(
        "--work", type=Path, default=Path("/tmp/pixgrep-bench-models"), help="exports kept here"
    )
    parser.add_argument("--text-config", action="append", default=[], metavar="ARCH=DIR")
    parser.add_argument(
        "--tokenizer",
        action="append",
        default=[],
        metavar="ARCH=DIR",
        help="tokenizer folder for ARCH (NLLB needs its language tokens; default: one trained here)",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="measure every folder this many times, interleaved"
    )
    parser.add_argument("--build-only", action="store_true", help="export and quantise, no timing")
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument(
        "--fill-registry",
        type=Path,
        nargs="+",
        metavar="REPORT",
        help="write the costs of --json reports into src/pixgrep/models/registry.json, print its "
        "table for docs/models.md, and stop",
    )
    parser.add_argument(
        "--cold-b32", action="append", default=[], metavar="ARCH", help="no batch-32 warm-up for ARCH"
    )
    parser.add_argument(
        "--text-only",
        action="append",
        default=[],
        metavar="ARCH",
        help="measure ARCH's text tower only (its image tower is another's: SHARED_TOWERS)",
    )
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--cold-b32-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quantize-worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quantize_worker:
        quantize_worker(*args.quantize_worker)
        return
    if args.worker:
        print(json.dumps(worker(*args.worker, b32_warmup=not args.cold_b32_worker)))
        return
    if args.fill_registry:
        reports = [json.loads(path.read_text()) for path in args.fill_registry]
        fill_registry(reports, ROOT / "src" / "pixgrep" / "models" / "registry.json")
        print(markdown(reports), end="")
        return
    text_configs = dict(item.split("=", 1) for item in args.text_config)
    tokenizers = dict(item.split("=", 1) for item in args.tokenizer)
    folders: list[tuple[str, str, Path, float]] = []
    for arch in args.arch or registry_archs():
        start = time.perf_counter()
        text_only = arch in args.text_only
        f32, q8 = build(arch, args.work, text_configs.get(arch), tokenizers.get(arch), text_only)
        build_s = round(time.perf_counter() - start, 1)
        print(json.dumps({"arch": arch, "build_s": build_s}), flush=True)
        folders.append((arch, "float32", f32, build_s))
        if not text_only:  # the text tower stays float32 in the int8 folder
            folders.append((arch, "int8", q8, build_s))
    if args.build_only:
        return
    started = time.strftime("%H:%M UTC", time.gmtime())
    # every folder once per round, so a change in the machine's load hits all of them alike
    runs: dict[tuple[str, str], list[dict]] = {}
    for _ in range(args.rounds):
        for arch, precision, folder, build_s in folders:
            cost = measure(folder, arch in args.text_only, arch not in args.cold_b32)
            row = {"arch": arch, "precision": precision, **cost, "build_s": build_s}
            runs.setdefault((arch, precision), []).append(row)
            print(json.dumps(row), flush=True)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "started": started,
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "results": [_median_rows(rows) for rows in runs.values()],
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
