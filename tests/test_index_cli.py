"""End to end: the real `pixgrep index` / `pixgrep stats` commands in a subprocess, with the tiny
random-weight model from the exporter (`tiny_model_dir`) and a catalog in a temporary folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data
from PIL import Image
from reliability_kit import start_interruptible_cli

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def pixgrep(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("PIXGREP_CATALOG", None)
    done = subprocess.run(
        [sys.executable, "-m", "pixgrep.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def index_json(catalog: Path, model: Path, *args: str) -> dict:
    done = pixgrep("index", *args, "--catalog", str(catalog), "--model", str(model), "--json")
    return json.loads(done.stdout)


def make_images(folder: Path, count: int, size: int = 96) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(count)
    for i in range(count):
        block = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        Image.fromarray(block).resize((size, size), Image.Resampling.BILINEAR).save(folder / f"{i:04}.png")


def catalog_rows(catalog: Path) -> dict[str, tuple]:
    conn = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True)
    try:
        return {
            row[0]: row[1:]
            for row in conn.execute(
                "SELECT path, content_hash, size, width, height, format, error FROM images"
            )
        }
    finally:
        conn.close()


def catalog_vectors(catalog: Path) -> dict[str, np.ndarray]:
    conn = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT content_hash, vector FROM embeddings")
        return {digest: np.frombuffer(blob, "<f2") for digest, blob in rows}
    finally:
        conn.close()


def test_second_run_encodes_nothing_and_rename_reuses(tmp_path, tiny_model_dir):
    photos, catalog = tmp_path / "photos", tmp_path / "catalog.db"
    make_images(photos, 12)
    first = index_json(catalog, tiny_model_dir, str(photos))
    assert set(first) == {"found", "encoded", "reused", "skipped", "removed", "seconds"}
    assert (first["found"], first["encoded"], first["reused"], first["skipped"]) == (12, 12, 0, 0)
    second = index_json(catalog, tiny_model_dir, str(photos))
    assert (second["found"], second["encoded"], second["reused"], second["removed"]) == (12, 0, 0, 0)

    before = catalog_rows(catalog)
    (photos / "0003.png").rename(photos / "renamed.png")
    third = index_json(catalog, tiny_model_dir, str(photos))
    assert (third["encoded"], third["reused"], third["removed"]) == (0, 1, 1)
    after = catalog_rows(catalog)
    assert after[str(photos / "renamed.png")] == before[str(photos / "0003.png")]

    stats = json.loads(pixgrep("stats", "--catalog", str(catalog), "--json").stdout)
    assert stats["images"] == 12 and stats["errors"] == 0 and list(stats["vectors"].values()) == [12]
    text = pixgrep("stats", "--catalog", str(catalog)).stdout
    assert str(catalog) in text and "12" in text


def test_every_odd_file_is_indexed_or_warned_once(tmp_path, tiny_model_dir):
    root = tmp_path / "odd"
    shutil.copytree(shared_data("odd-images"), root)
    done = pixgrep(
        "index", str(root), "--catalog", str(tmp_path / "c.db"), "--model", str(tiny_model_dir), "--json"
    )
    summary = json.loads(done.stdout)
    lines = done.stderr.splitlines()
    assert "Traceback" not in done.stderr
    assert all(line.startswith(f"pixgrep: warning: {root}/") for line in lines), lines
    assert len(lines) == len(set(lines)) == summary["skipped"] >= 4
    assert summary["encoded"] + summary["reused"] + summary["skipped"] == summary["found"]
    assert summary["found"] == len([p for p in root.iterdir() if p.suffix != ".txt"])
    again = pixgrep(
        "index", str(root), "--catalog", str(tmp_path / "c.db"), "--model", str(tiny_model_dir), "--json"
    )
    assert again.stderr == "" and json.loads(again.stdout)["encoded"] == 0  # known-bad: not retried


def start_index_and_wait_for_commits(photos: Path, catalog: Path, model: Path, rows: int) -> subprocess.Popen:
    """Start `pixgrep index` with tiny batches; return once `rows` image rows are committed, the run
    still going. On a loaded machine this process may not get to look before the run ends (CI saw
    it once: 400 images in 4 s): then the run is started again on a new catalog, up to 3 times."""
    command = ["index", photos, "--catalog", catalog, "--model", model, "--batch-size", 2, "--json"]
    for _ in range(3):
        for leftover in (catalog, Path(f"{catalog}-wal"), Path(f"{catalog}-shm")):
            leftover.unlink(missing_ok=True)
        proc = start_interruptible_cli(*command)
        deadline = time.monotonic() + 120
        committed = 0
        while committed < rows and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
            if catalog.exists():
                try:
                    committed = len(catalog_rows(catalog))
                except sqlite3.Error:  # the schema is not there yet
                    committed = 0
        if proc.poll() is None or time.monotonic() >= deadline:
            return proc  # mid-run (or stuck: the caller's checks say so)
        ended = proc.communicate()
    pytest.fail(f"the index run ended 3 times before {rows} rows were seen: {proc.returncode} {ended}")


def test_sigint_mid_index_then_resume_gives_the_same_catalog(tmp_path, tiny_model_dir):
    photos = tmp_path / "many"
    make_images(photos, 400, size=256)
    interrupted, reference = tmp_path / "interrupted.db", tmp_path / "reference.db"
    proc = start_index_and_wait_for_commits(photos, interrupted, tiny_model_dir, 20)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert err.strip() == "pixgrep: interrupted; the catalog is consistent, run again to resume"
    assert out == ""
    stored = catalog_rows(interrupted)
    vectors = catalog_vectors(interrupted)
    assert 20 <= len(stored) < 400  # interrupted after some batches, before the end
    assert {row[0] for row in stored.values()} == set(vectors)  # every stored row has its vector

    resumed = index_json(interrupted, tiny_model_dir, str(photos), "--batch-size", "2")
    assert resumed["encoded"] == 400 - len(stored)  # nothing stored before the interrupt is re-encoded
    index_json(reference, tiny_model_dir, str(photos), "--batch-size", "16")
    assert catalog_rows(interrupted) == catalog_rows(reference)
    got, want = catalog_vectors(interrupted), catalog_vectors(reference)
    assert set(got) == set(want)
    for digest, vector in want.items():  # batches differ, so allow float16 rounding
        assert np.allclose(got[digest].astype(np.float32), vector.astype(np.float32), atol=2e-3)


def test_kill_9_mid_index_leaves_a_sound_catalog_that_resumes(tmp_path, tiny_model_dir):
    photos = tmp_path / "many"
    make_images(photos, 300, size=256)
    catalog = tmp_path / "killed.db"
    proc = start_index_and_wait_for_commits(photos, catalog, tiny_model_dir, 20)
    proc.kill()  # no handler, no cleanup: only SQLite's own commit protocol stands between
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    conn = sqlite3.connect(catalog)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    stored, vectors = catalog_rows(catalog), catalog_vectors(catalog)
    assert 20 <= len(stored) < 300 and {row[0] for row in stored.values()} == set(vectors)
    resumed = index_json(catalog, tiny_model_dir, str(photos))
    assert resumed["encoded"] == 300 - len(stored)
    assert len(catalog_rows(catalog)) == 300


def test_missing_folder_is_one_line_and_exit_2(tmp_path, tiny_model_dir):
    done = pixgrep(
        "index",
        str(tmp_path / "nope"),
        "--catalog",
        str(tmp_path / "c.db"),
        "--model",
        str(tiny_model_dir),
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == f"pixgrep: error: no such folder or file: {tmp_path / 'nope'}\n"
    assert not (tmp_path / "c.db").exists()


def test_unreadable_catalog_is_one_line_exit_2_and_untouched(tmp_path, tiny_model_dir):
    photos = tmp_path / "photos"
    make_images(photos, 2)
    catalog = tmp_path / "catalog.db"
    garbage = b"this is not an sqlite database at all\n" * 100
    catalog.write_bytes(garbage)
    for args in (["index", str(photos), "--model", str(tiny_model_dir)], ["stats"]):
        done = pixgrep(*args, "--catalog", str(catalog), check=False)
        assert done.returncode == 2
        assert done.stderr.startswith(f"pixgrep: error: cannot open catalog {catalog}")
        assert len(done.stderr.splitlines()) == 1 and done.stdout == ""
        assert catalog.read_bytes() == garbage
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog.db", "photos"]


def test_catalog_from_the_environment(tmp_path, tiny_model_dir):
    photos, catalog = tmp_path / "photos", tmp_path / "env.db"
    make_images(photos, 3)
    env = {**os.environ, "PIXGREP_CATALOG": str(catalog), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pixgrep.cli", "index", str(photos), "--model", str(tiny_model_dir), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert len(catalog_rows(catalog)) == 3
