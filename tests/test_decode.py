"""Decoding: orientation, JPEG draft, pixel cap, first frame, odd modes, RAW without rawpy, HEIC."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data
from PIL import Image

from pixgrep.images.decode import ImageDecodeError, decode_file, is_raw, open_image, read_image_info


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def test_exif_orientation_is_applied_for_all_eight_values():
    folder = shared_data("exif-samples") / "jpg" / "orientation"
    for kind, size in (("landscape", (600, 450)), ("portrait", (450, 600))):
        upright = pixels(open_image(folder / f"{kind}_1.jpg"))
        for value in range(2, 9):
            image, info = decode_file(folder / f"{kind}_{value}.jpg")
            assert image.size == size and (info.width, info.height) == size, (kind, value)
            # the same scene after the turn (JPEG noise only); unturned differs by > 50 on average
            assert np.abs(pixels(image) - upright).mean() < 25, (kind, value)


def test_jpeg_draft_decodes_smaller_but_reports_the_full_size(tmp_path: Path):
    rng = np.random.default_rng(0)
    big = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).resize((4000, 3000))
    path = tmp_path / "big.jpg"
    big.save(path, quality=90)
    image, info = decode_file(path, draft_size=448)
    assert (info.width, info.height, info.format) == (4000, 3000, "JPEG")
    assert image.size == (1000, 750)  # libjpeg's 1/4 scale: the smallest with both sides >= 448
    assert decode_file(path)[0].size == (4000, 3000)  # no draft unless asked
    png = tmp_path / "big.png"
    big.save(png)
    assert decode_file(png, draft_size=448)[0].size == (4000, 3000)  # draft is for JPEG only


def test_pixel_cap_refuses_decompression_bombs_from_the_header():
    odd = shared_data("odd-images")
    for name in ("decompression_bomb.gif", "bmp_b_reallybig.bmp"):
        with pytest.raises(ImageDecodeError, match="decompression bomb.*pixel cap"):
            open_image(odd / name)


def test_first_frame_of_animations():
    path = shared_data("odd-images") / "iss634.gif"
    with Image.open(path) as anim:
        assert anim.n_frames > 1
        first = pixels(anim)
        anim.seek(3)
        later = pixels(anim)
    decoded = pixels(open_image(path))
    assert np.abs(decoded - first).mean() == 0
    assert np.abs(later - first).mean() > 0  # so the check above can tell frames apart


def test_16bit_and_lab_become_plain_8bit_rgb():
    odd = shared_data("odd-images")
    grey = open_image(odd / "hopper_16bit.pgm")
    assert grey.mode == "L" and 30 < np.asarray(grey).mean() < 200  # not clipped to white
    lab = pixels(open_image(odd / "hopper.Lab.tif"))
    rgb = pixels(open_image(odd / "hopper.tif"))
    assert np.abs(lab - rgb).mean() < 6  # the same picture, converted through a colour profile


def test_every_odd_file_decodes_or_fails_with_a_short_reason():
    odd = shared_data("odd-images")
    outcomes = {}
    for path in sorted(odd.iterdir()):
        try:
            image, info = decode_file(path, draft_size=448)
            image.convert("RGB")
            assert info.width > 0 and info.height > 0
            assert read_image_info(path) == info
            outcomes[path.name] = "ok"
        except ImageDecodeError as exc:
            assert "\n" not in str(exc) and len(str(exc)) < 120
            outcomes[path.name] = str(exc)
    assert outcomes["empty.jpg"] == outcomes["not_an_image.jpg"] == "not an image pixgrep can read"
    assert outcomes["truncated_jpeg.jpg"].startswith("cannot decode")
    for name in ("hopper.psd", "hopper.avif", "pil_sample_cmyk.jpg", "tiff_strip_cmyk_jpeg.tif", "p_16.png"):
        assert outcomes[name] == "ok", name


def test_decode_from_bytes_and_missing_file(tmp_path: Path):
    path = tmp_path / "x.png"
    Image.new("RGB", (5, 7), "red").save(path)
    assert open_image(path.read_bytes()).size == (5, 7)
    with pytest.raises(ImageDecodeError, match="no such file"):
        open_image(tmp_path / "missing.png")


def test_heic_decodes_with_its_capture_time():
    path = shared_data("exif-samples") / "heic" / "IMG_5195.HEIC"
    image, info = decode_file(path)
    assert info.format == "HEIF" and image.size == (info.width, info.height)
    assert info.taken_at == "2021-04-11T15:47:53-05:00"


def test_raw_without_rawpy_is_a_clear_decode_error(tmp_path: Path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rawpy", None)  # as if the raw extra were not installed
    path = tmp_path / "IMG_0001.CR2"
    path.write_bytes(b"II*\x00 not really a raw file")
    assert is_raw(path) and not is_raw(tmp_path / "a.jpg")
    with pytest.raises(ImageDecodeError, match=r"pixgrep\[raw\]"):
        decode_file(path)


class _FakeRaw:
    """Just enough of rawpy's RawPy for decode.py: sizes, an embedded JPEG preview, a develop."""

    def __init__(self, preview: bytes | None, flip: int):
        from types import SimpleNamespace

        self.sizes = SimpleNamespace(width=6000, height=4000, flip=flip)
        self.preview = preview

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def extract_thumb(self):
        from types import SimpleNamespace

        if self.preview is None:
            raise RuntimeError("no thumbnail")
        return SimpleNamespace(format="jpeg", data=self.preview)

    def postprocess(self, **options):
        assert options.get("half_size") is True
        return np.full((2000, 3000, 3), 128, np.uint8)


def _fake_rawpy(preview: bytes | None, flip: int):
    from types import SimpleNamespace

    return SimpleNamespace(
        imread=lambda path: _FakeRaw(preview, flip), ThumbFormat=SimpleNamespace(JPEG="jpeg")
    )


def test_raw_uses_a_big_enough_preview_and_applies_the_flip(tmp_path: Path, monkeypatch):
    buffer = tmp_path / "preview.jpg"
    Image.new("RGB", (1500, 1000), "blue").save(buffer)
    monkeypatch.setitem(sys.modules, "rawpy", _fake_rawpy(buffer.read_bytes(), flip=6))
    path = tmp_path / "DSC_0001.NEF"
    path.write_bytes(b"not parsed by the fake")
    image, info = decode_file(path, draft_size=448)
    assert (info.width, info.height, info.format) == (4000, 6000, "RAW")  # portrait after the flip
    assert image.size[0] < image.size[1] and min(image.size) >= 448  # preview, drafted and turned
    assert read_image_info(path) == info


def test_raw_without_a_preview_is_developed_at_half_size(tmp_path: Path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rawpy", _fake_rawpy(None, flip=0))
    path = tmp_path / "IMG_0002.CR2"
    path.write_bytes(b"not parsed by the fake")
    image, info = decode_file(path, draft_size=448)
    assert image.size == (3000, 2000) and (info.width, info.height) == (6000, 4000)
