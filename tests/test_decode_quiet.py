"""Decoding odd files says nothing on stderr by itself: libtiff's C-level messages ("Using code not
yet in table.") and Pillow's UserWarnings are silenced; a file that cannot be read is reported by
the caller as one line. Run in a child process, whose stderr is the thing checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import shared_data
from PIL import Image

CHILD = r"""
import sys, warnings
from PIL import Image
from pixgrep.images.decode import ImageDecodeError, decode_file
failed = []
for path in sys.argv[1:]:
    try:
        image, _ = decode_file(path)
        image.convert("RGB")  # what preprocessing does: Pillow warns on palettes with byte transparency
    except ImageDecodeError:
        failed.append(path)
print("\n".join(failed))
"""


def corrupt_lzw_tiff(path: Path) -> Path:
    """An LZW TIFF with damaged strip data: libtiff itself prints "Using code not yet in table"."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path, compression="tiff_lzw")
    data = bytearray(path.read_bytes())
    for i in range(200, 2000, 7):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    return path


def palette_with_byte_transparency(path: Path) -> Path:
    image = Image.new("P", (16, 16))
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.save(path, transparency=bytes([0, 255] + [255] * 254))
    return path


def decode_in_child(paths: list[Path]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-W", "default", "-c", CHILD, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_damaged_tiff_and_palette_png_decode_without_stderr_noise(tmp_path):
    tiff = corrupt_lzw_tiff(tmp_path / "damaged.tif")
    png = palette_with_byte_transparency(tmp_path / "palette.png")
    proc = decode_in_child([tiff, png])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(tiff)]  # the damaged one fails as a decode error
    assert proc.stderr == ""


def test_the_odd_images_decode_without_stderr_noise():
    odd = sorted(p for p in shared_data("odd-images").iterdir() if p.suffix != ".txt")
    proc = decode_in_child(odd)
    assert proc.returncode == 0, proc.stderr
    assert "Using code" not in proc.stderr and "UserWarning" not in proc.stderr
    assert proc.stderr == ""
