"""Index runs under interference: two `pixgrep index` processes on one catalog, files deleted
while a run goes, a FIFO named as a query term."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from reliability_kit import cli_env, make_images, one_line_error, pixgrep

from pixgrep.catalog.db import CatalogDB

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def test_a_second_concurrent_index_run_waits_and_does_not_redo_the_work(tmp_path, tiny_model_dir):
    """Both runs are released at the same instant on the same folder and catalog. Whichever runs
    second finds the first one's vectors: together they encode every image once (timing-free)."""
    photos, catalog = tmp_path / "photos", tmp_path / "catalog.db"
    make_images(photos, 120, size=48)
    script = (
        "import sys, time\n"
        "from pixgrep.cli import main\n"
        "time.sleep(max(0.0, float(sys.argv[1]) - time.time()))\n"
        "sys.exit(main(sys.argv[2:]))\n"
    )
    go = time.time() + 4.0
    args = ["index", str(photos), "--catalog", str(catalog), "--model", str(tiny_model_dir), "--json"]
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(go), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    summaries = [json.loads(out) for out, _ in outputs]
    assert sum(s["encoded"] + s["reused"] for s in summaries) == 120, summaries
    waited = [err for _, err in outputs if "another index run" in err]
    assert len(waited) == 1 and "waiting for it to finish" in waited[0], outputs


def test_files_deleted_during_a_run_leave_the_catalog_at_its_end(tmp_path, fake_encoder):
    import pixgrep

    photos = tmp_path / "photos"
    files = make_images(photos, 12, size=32)
    catalog_path = tmp_path / "catalog.db"
    with pixgrep.open_catalog(catalog_path, encoder=fake_encoder) as catalog:
        catalog.index([photos])  # all 12 stored
        extra = make_images(photos / "new", 10, size=40)
        doomed = [files[0], extra[0]]  # one stored before this run, one this run commits first

        def delete_after_first_batch(summary) -> None:
            for path in doomed:
                if path.exists():
                    path.unlink()

        summary = catalog.index([photos], progress=delete_after_first_batch, batch_size=2)
    db = CatalogDB(catalog_path)
    left = set(db.images_under(str(photos)))
    db.close()
    assert summary.removed == 2, summary
    assert left == {str(p) for p in [*files, *extra] if p not in doomed}


def test_a_fifo_as_a_query_term_is_named_as_such(tmp_path, tiny_model_dir):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    done = pixgrep("-n", str(fifo), "--catalog", tmp_path / "c.db", "--model", tiny_model_dir, timeout=60)
    line = one_line_error(done)
    assert "named pipe (FIFO)" in line and "no such image file" not in line, line
