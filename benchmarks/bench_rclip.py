"""pixgrep and rclip 3.3 side by side, whole processes, interleaved, on one folder of photos.

rclip cannot reach its model hub here, so it is given ONNX towers through a small wrapper that
patches only its download functions (docs/benchmarks.md, "What rclip 3.3 is"): install it outside
the project first,

    pip download rclip==3.3.0 --no-deps -d /tmp/rclip-wheels
    pip install --no-deps --target /tmp/rclip-site /tmp/rclip-wheels/rclip-3.3.0-py3-none-any.whl pi-heif

then, for example (first index of 1000 Flickr8k test photos, then queries without indexing):

    .venv/bin/python benchmarks/bench_rclip.py --photos /tmp/bench-1000 --trials 2 \\
        --rclip-model /tmp/vitb32 --pixgrep-model /tmp/vitb32x --pixgrep-model /tmp/vitb32x-int8

Per trial and program (order alternating between trials), a fresh copy of the folder and an empty
catalog: `first` (index + search), `second` (nothing changed), then `query` runs with `-n`
(nothing indexed), each command timed as a whole process (wall and CPU of the child). Prints one
JSON line per measurement and a summary with medians and the ratio pixgrep / rclip.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUERY = "a dog running on the beach"

# The wrapper: rclip's own code, with its model download replaced by local files. rclip feeds
# {"input": array}; pixgrep's exports name their inputs image / text and take int32 ids.
WRAPPER = """
import os, sys
import numpy as np
sys.path.insert(0, os.environ["RCLIP_SITE"])
from rclip import model_download
from rclip.utils import preprocess
MODEL = os.environ["RCLIP_BENCH_MODEL"]
VOCAB = os.environ["RCLIP_VOCAB"]
_orig_load = model_download._load_onnx_session

class _Adapter:
    def __init__(self, session):
        self._s = session
        self._inp = session.get_inputs()[0]
    def get_inputs(self):
        return self._s.get_inputs()
    def run(self, outputs, feeds):
        x = feeds["input"]
        if self._inp.type == "tensor(int32)":
            x = x.astype(np.int32)
        return [self._s.run(None, {self._inp.name: x})[0]]

model_download.ensure_downloaded = lambda: model_download._import_onnxruntime() and None
model_download.download_tokenizer_vocab = lambda tqdm_class=None: VOCAB
model_download.download_visual_query_model = lambda tqdm_class=None: f"{MODEL}/visual/model.onnx"
model_download.download_textual_model = lambda tqdm_class=None: f"{MODEL}/textual/model.onnx"
model_download._load_onnx_session = lambda path: _Adapter(_orig_load(path))
preprocess.IMAGE_SIZE = int(os.environ.get("RCLIP_IMAGE_SIZE", "224"))
from rclip.main import main
main()
"""


def timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float, str]:
    """(wall s, child CPU s, first line of stdout) of one whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{cmd} failed ({done.returncode}): {done.stderr[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    top = done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""
    return round(wall, 3), round(cpu, 3), top


def programs(args: argparse.Namespace, work: Path) -> dict[str, tuple[list[str], dict]]:
    wrapper = work / "rclip_offline.py"
    wrapper.write_text(WRAPPER)
    import open_clip  # only for the path of its bundled BPE vocabulary (rclip's own tokenizer input)

    vocab = Path(open_clip.__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
    env = dict(
        os.environ, RCLIP_SITE=args.rclip_site, RCLIP_BENCH_MODEL=args.rclip_model, RCLIP_VOCAB=str(vocab)
    )
    found = {"rclip": ([sys.executable, str(wrapper), "-f"], env)}
    pixgrep = str(Path(sys.executable).with_name("pixgrep"))
    for model in args.pixgrep_model:
        found[f"pixgrep {Path(model).name}"] = ([pixgrep, "-f", "--model", model], dict(os.environ))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", required=True, help="folder of photos (copied per trial)")
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--queries", type=int, default=3, help="-n runs per trial and program")
    parser.add_argument("--rclip-site", default="/tmp/rclip-site")
    parser.add_argument("--rclip-model", required=True, help="model folder whose towers rclip runs")
    parser.add_argument("--pixgrep-model", action="append", required=True, help="repeatable")
    parser.add_argument("--no-first", action="store_true", help="skip first/second (queries only)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-rclip-"))
    runs: dict[str, dict[str, list]] = {}
    try:
        table = programs(args, work)
        names = list(table)
        for trial in range(args.trials):
            order = names if trial % 2 == 0 else names[::-1]
            for name in order:
                cmd, env = table[name]
                folder, data = (
                    work / f"photos-{trial}-{len(runs.get(name, {}))}",
                    work / f"data-{name}-{trial}",
                )
                shutil.copytree(args.photos, folder)
                data.mkdir()
                if name == "rclip":
                    env = dict(env, RCLIP_DATADIR=str(data))
                    full, query = [*cmd, QUERY], [*cmd, "-n", QUERY]
                else:
                    full = [*cmd, "--catalog", str(data / "catalog.db"), QUERY]
                    query = [*cmd, "--catalog", str(data / "catalog.db"), "-n", QUERY]
                steps = [] if args.no_first else [("first", full), ("second", full)]
                if args.no_first:
                    timed(full, folder, env)  # the index the queries need, not measured
                steps += [("query", query)] * args.queries
                for step, command in steps:
                    wall, cpu, top = timed(command, folder, env)
                    runs.setdefault(name, {}).setdefault(step, []).append(wall)
                    print(
                        json.dumps(
                            {
                                "trial": trial,
                                "program": name,
                                "step": step,
                                "wall_s": wall,
                                "cpu_s": cpu,
                                "top": Path(top).name,
                                "load": os.getloadavg()[0],
                            }
                        ),
                        flush=True,
                    )
                shutil.rmtree(folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {
        name: {step: statistics.median(v) for step, v in steps.items()} for name, steps in runs.items()
    }
    for name, steps in summary.items():
        if name != "rclip":
            steps["ratio_to_rclip"] = {
                s: round(v / summary["rclip"][s], 3) for s, v in steps.items() if s in summary["rclip"]
            }
    print(
        json.dumps({"summary": summary, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, indent=2)
    )


if __name__ == "__main__":
    main()
