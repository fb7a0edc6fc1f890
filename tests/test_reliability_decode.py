"""Huge pictures: reduced while (JPEG) or right after (PNG) decoding, decodes in flight bounded by
pixels. The memory this saves is measured in benchmarks/bench_decode_memory.py (docs/reliability.md);
these tests check the behaviour that saves it."""

from __future__ import annotations

import threading
import time

import pytest
from PIL import Image

from pixgrep.images import decode
from pixgrep.images.decode import BIG_IMAGE_SIDE, BIG_PIXELS, PixelBudget, decode_file, open_image


@pytest.fixture(scope="module")
def big_files(tmp_path_factory):
    """A PNG and a JPEG just over BIG_PIXELS (8200 x 5000 = 41 Mpx), plus a 12 Mpx photo."""
    folder = tmp_path_factory.mktemp("big")
    image = Image.new("RGB", (8200, 5000), (30, 120, 200))
    image.paste((250, 200, 10), (1000, 1000, 5000, 4000))
    image.save(folder / "big.png", compress_level=1)
    image.save(folder / "big.jpg", quality=80)
    image.resize((4000, 3000)).save(folder / "photo.png", compress_level=1)
    return folder


@pytest.mark.parametrize("name", ["big.png", "big.jpg"])
def test_a_huge_picture_is_reduced_and_keeps_its_full_size_facts(big_files, name):
    image, info = decode_file(big_files / name)
    assert (info.width, info.height) == (8200, 5000)  # what the catalog stores: the real size
    assert BIG_IMAGE_SIDE <= min(image.size) < 2 * BIG_IMAGE_SIDE, image.size
    assert image.size[0] / image.size[1] == pytest.approx(8200 / 5000, rel=0.01)
    colour = image.getpixel((image.size[0] // 2, image.size[1] // 2))
    assert max(abs(a - b) for a, b in zip(colour, (250, 200, 10), strict=True)) < 8  # still the picture


def test_a_caller_that_asks_for_a_size_gets_it(big_files):
    assert 256 <= min(open_image(big_files / "big.png", draft_size=256).size) < 512


def test_ordinary_pictures_decode_at_full_size_as_before(big_files):
    assert 4000 * 3000 < BIG_PIXELS
    assert open_image(big_files / "photo.png").size == (4000, 3000)


def test_the_pixel_budget_never_lets_decodes_exceed_it():
    budget = PixelBudget(100)
    held, peak, lock = [0], [0], threading.Lock()

    def work(pixels: int) -> None:
        with budget.hold(pixels):
            with lock:
                held[0] += min(pixels, 100)
                peak[0] = max(peak[0], held[0])
            time.sleep(0.02)
            with lock:
                held[0] -= min(pixels, 100)

    threads = [threading.Thread(target=work, args=(p,)) for p in (60, 60, 30, 250, 10, 90, 45, 45)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert peak[0] <= 100 and budget.free == 100  # a 250-pixel decode ran alone, nothing leaked


def test_big_decodes_in_threads_hold_the_shared_budget(big_files, monkeypatch):
    """Two threads decoding 41 Mpx files at once: the process-wide budget of one pixel more than
    a file lets only one decode hold pixels at a time."""
    budget = PixelBudget(8200 * 5000 + 1)
    monkeypatch.setattr(decode, "DECODE_BUDGET", budget)
    lowest = [budget.total]

    real_decoded = decode._decoded

    def watched(*args, **kwargs):
        lowest[0] = min(lowest[0], budget.free)
        return real_decoded(*args, **kwargs)

    monkeypatch.setattr(decode, "_decoded", watched)
    threads = [threading.Thread(target=open_image, args=(big_files / n,)) for n in ("big.png", "big.png")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert lowest[0] == 1 and budget.free == budget.total
