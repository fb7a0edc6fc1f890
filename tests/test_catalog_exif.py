"""Capture time from EXIF, on hand-made values and on real camera files."""

from __future__ import annotations

import pytest
from conftest import shared_data

from pixgrep.images.decode import read_image_info
from pixgrep.images.exif import parse_exif_datetime


@pytest.mark.parametrize(
    ("value", "offset", "expected"),
    [
        ("2008:05:30 15:56:01", None, "2008-05-30T15:56:01"),
        (b"2008:05:30 15:56:01\x00", None, "2008-05-30T15:56:01"),
        ("2021:04:11 15:47:53", "-05:00", "2021-04-11T15:47:53-05:00"),
        ("2021:04:11 15:47:53", "+0100", "2021-04-11T15:47:53+01:00"),
        ("2021:04:11 15:47:53", "garbage", "2021-04-11T15:47:53"),
        ("2014-09-21 16:00", None, "2014-09-21T16:00:00"),
        ("0000:00:00 00:00:00", None, None),
        ("    :  :     :  :  ", None, None),
        ("2008:13:45 10:00:00", None, None),
        ("", None, None),
        (None, None, None),
        (12345, None, None),
    ],
)
def test_parse_exif_datetime(value, offset, expected):
    assert parse_exif_datetime(value, offset) == expected


def taken(path) -> str | None:
    # Through pixgrep's own decoder, which registers the HEIC opener itself: with a bare
    # Image.open this passed only after some other test had registered it.
    return read_image_info(path).taken_at


def test_capture_times_of_real_camera_files():
    data = shared_data("exif-samples")
    expected = {
        "jpg/Canon_40D.jpg": "2008-05-30T15:56:01",  # DateTimeOriginal, not the later DateTime
        "jpg/exif-org/kodak-dc210.jpg": "2000-10-26T16:46:51",  # DateTimeOriginal only
        "jpg/mobile/HMD_Nokia_8.3_5G.jpg": "2022-08-14T14:12:31+03:00",  # with OffsetTimeOriginal
        "heic/mobile/iphone_13_pro_max.HEIC": "2022-02-16T12:55:41+01:00",
        "jpg/Canon_40D_photoshop_import.jpg": "2008-07-31T10:05:49",  # IFD0 DateTime fallback
        "jpg/orientation/landscape_1.jpg": None,
        "jpg/exif-org/olympus-d320l.jpg": None,
    }
    for name, when in expected.items():
        assert taken(data / name) == when, name


def test_broken_exif_never_raises():
    data = shared_data("exif-samples") / "jpg"
    files = sorted((data / "tests").glob("*.jp*g")) + sorted((data / "invalid").glob("*.jpg"))
    assert len(files) > 10
    results = [taken(path) for path in files]
    assert all(r is None or (len(r) >= 19 and r[4] == "-" and r[10] == "T") for r in results)
    assert sum(r is not None for r in results) >= 8
