"""Cost of registry architectures side by side: random weights (a forward pass costs the same
whatever the weights), exported to a model folder, in float32 and int8 (image tower quantised
dynamically, as `pixgrep models quantize` does by default).

    .venv/bin/python benchmarks/bench_models.py --arch ViT-B-32 --arch MobileCLIP2-S0 --json out.json
    .venv/bin/python benchmarks/bench_models.py            # every registry architecture (hours)

Run it on an otherwise idle machine: the numbers are wall-clock times. Per architecture and
precision, each in a fresh process (so load times are from a cold
interpreter and peak RSS belongs to that run): image tower load time, image ms per image at batch
1 and 32 (preprocessed pixels), text tower load time (session + tokenizer), text ms per query (20
Flickr8k captions one by one), peak RSS of each process, and disk size of the folder. Models with
a Hugging Face tokenizer get one trained here on Flickr8k captions (the cost of a lookup does not
depend on it); NLLB / XLM-R text towers need their transformers config (--text-config ARCH=DIR).
Needs `pip install "pixgrep[export,quantize]"`.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
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


def registry_archs() -> list[str]:
    """The open_clip architectures behind the registry's rows (pixgrep-mini and M-CLIP excluded)."""
    import open_clip

    from pixgrep.models import registry

    archs = []
    for spec in registry.MODELS.values():
        arch = spec.arch or spec.name.split("__")[0]
        found = next((a for a in open_clip.list_models() if a.lower() == arch.lower()), None)
        if found and found not in archs:
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


def build(arch: str, work: Path, text_config: str | None) -> tuple[Path, Path]:
    """(float32 folder, int8 folder) of `arch` with random weights, exported once into `work`."""
    import open_clip

    from pixgrep.lab.export import export_open_clip
    from pixgrep.models.folder import open_folder
    from pixgrep.models.quantize import quantize_folder

    f32, q8 = work / arch, work / f"{arch}@int8"
    if not (f32 / "config.json").is_file():
        hf = (open_clip.get_model_config(arch) or {}).get("text_cfg", {}).get("hf_tokenizer_name")
        tokenizer = str(_tokenizer_folder(work)) if hf else None
        export_open_clip(arch, "none", f32, tokenizer=tokenizer, text_config=text_config)
    if not (q8 / "config.json").is_file():
        quantize_folder(open_folder(f32), q8, base_id=arch, measure=False)
    return f32, q8


def _peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not getrusage's ru_maxrss: Linux keeps
    ru_maxrss across execve, so a worker would report its parent's peak (the torch export)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def _ms_per_item(fn, items: int, min_seconds: float = 2.0, min_calls: int = 3) -> float:
    fn()  # warm-up: ORT allocates its arenas on the first run
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < min_seconds:
        fn()
        calls += 1
    return (time.perf_counter() - start) / (calls * items) * 1000


def worker(mode: str, folder: str) -> dict:
    import numpy as np

    from pixgrep.models import load_encoder

    start = time.perf_counter()
    enc = load_encoder(folder)
    out: dict = {}
    if mode == "image":
        enc.visual  # noqa: B018
        out["image_load_s"] = time.perf_counter() - start
        h, w = enc.preprocess_cfg.size
        for batch in (1, 32):
            pixels = np.random.default_rng(0).standard_normal((batch, 3, h, w)).astype(np.float32)
            out[f"image_ms_batch{batch}"] = _ms_per_item(lambda p=pixels: enc.encode_pixels(p), batch)
        out["image_peak_rss_mb"] = _peak_rss_mb()
    else:
        enc.tokenize([""])  # the text session and the tokenizer
        out["text_load_s"] = time.perf_counter() - start
        captions = _captions(20)
        enc.encode_texts(captions[:1])
        t = time.perf_counter()
        for text in captions:
            enc.encode_texts([text])
        out["text_ms_per_query"] = (time.perf_counter() - t) / len(captions) * 1000
        out["text_peak_rss_mb"] = _peak_rss_mb()
    return out


def measure(folder: Path) -> dict:
    row: dict = {"disk_bytes": _folder_bytes(folder)}
    for mode in ("image", "text"):
        run = subprocess.run(
            [sys.executable, __file__, "--worker", mode, str(folder)],
            capture_output=True,
            text=True,
            check=True,
        )
        row.update(json.loads(run.stdout.strip().splitlines()[-1]))
    return row


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
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return
    text_configs = dict(item.split("=", 1) for item in args.text_config)
    results = []
    for arch in args.arch or registry_archs():
        start = time.perf_counter()
        f32, q8 = build(arch, args.work, text_configs.get(arch))
        build_s = time.perf_counter() - start
        for precision, folder in (("float32", f32), ("int8", q8)):
            row = {"arch": arch, "precision": precision, **measure(folder)}
            row["build_s"] = round(build_s, 1)
            results.append(row)
            print(json.dumps(row), flush=True)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores",
        "results": results,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
