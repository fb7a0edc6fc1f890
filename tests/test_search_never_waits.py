"""A search that indexes first never waits for another index run of the catalog (of another
folder, maybe for hours): it searches what is already indexed and says why; `-n` never waits;
`pixgrep index` still waits, so no work is done twice."""

from __future__ import annotations

import subprocess
import sys

from reliability_kit import make_images, pixgrep

# Another index run, as the lock sees one: it holds the catalog's flock and wrote its pid there.
HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.pwrite(fd, b"4242", 0)
print("locked", flush=True)
time.sleep(120)
"""


def test_a_search_does_not_wait_for_another_index_run(tmp_path, tiny_model_dir):
    photos, more = tmp_path / "photos", tmp_path / "more"
    make_images(photos, 4)
    catalog = tmp_path / "c.db"
    common = ("--catalog", catalog, "--model", tiny_model_dir)
    assert pixgrep("index", photos, *common).returncode == 0
    make_images(more, 3)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, f"{catalog}.lock"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        searched = pixgrep("a photo", "--in", photos, "--in", more, "-f", *common, timeout=60)
        assert searched.returncode == 0, searched.stderr
        assert "another index run (pid 4242) is writing this catalog; searching what is already indexed" in (
            searched.stderr
        )
        assert sorted(searched.stdout.split()) == sorted(str(p) for p in photos.iterdir())  # not `more`
        listed = pixgrep("-n", "a photo", "--in", photos, "-f", *common, timeout=60)
        assert listed.returncode == 0 and len(listed.stdout.split()) == 4, listed.stderr
        try:  # an index run itself waits for the other one (and then does only what it left)
            pixgrep("index", more, *common, timeout=3)
            raise AssertionError("pixgrep index did not wait for the other index run")
        except subprocess.TimeoutExpired:
            pass
    finally:
        holder.kill()
        holder.wait()
    assert pixgrep("index", more, *common).returncode == 0
    after = pixgrep("-n", "a photo", "--in", more, "-f", *common)
    assert after.returncode == 0 and len(after.stdout.split()) == 3
