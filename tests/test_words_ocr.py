"""The OCR engine itself (RapidOCR, the ocr extra): it reads rendered text with its boxes, finds
small text through the half-size first look, skips a picture without text, and survives odd
sizes."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw, ImageFont

pytest.importorskip("rapidocr_onnxruntime", reason="reading text needs pip install 'pixgrep[ocr]'")

from pixgrep.images.ocr import TextReader  # noqa: E402


@pytest.fixture(scope="module")
def reader() -> TextReader:
    return TextReader(threads=1)


def note(lines: list[str], size: int, canvas=(800, 400)) -> Image.Image:
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        pytest.skip("needs the DejaVu fonts (Debian fonts-dejavu-core)")
    image = Image.new("RGB", canvas, "white")
    draw = ImageDraw.Draw(image)
    for n, text in enumerate(lines):
        draw.text((40, 40 + n * size * 2), text, fill="black", font=font)
    return image


def test_rendered_text_is_read_with_boxes_in_the_files_pixels(reader):
    page = reader.read(note(["WiFi password: lighthouse42", "Boarding pass Gate B14"], 28))
    assert [line.text for line in page.lines] == ["WiFi password: lighthouse42", "Boarding pass Gate B14"]
    assert not page.text_free and all(line.confidence > 0.8 for line in page.lines)
    (x0, y0), _, (x2, y2), _ = page.lines[0].box
    assert 30 <= x0 <= 50 and 30 <= y0 <= 50 and x2 > 300 and y2 < 90
    doubled = reader.read(note(["WiFi password: lighthouse42"], 28), full_size=(1600, 800))
    assert doubled.lines[0].box[0][0] >= 60  # boxes scaled to the file's own size


def test_small_text_passes_the_first_look(reader):
    page = reader.read(note(["Item 1 coffee beans 4.50", "Item 2 oat milk 2.10"], 11, (960, 720)))
    assert any("coffee" in line.text for line in page.lines)


def test_a_picture_without_text_is_skipped_as_text_free(reader):
    gradient = Image.linear_gradient("L").resize((400, 300)).convert("RGB")
    page = reader.read(gradient)
    assert page.lines == [] and page.text_free


@pytest.mark.parametrize("size", [(1, 1), (5, 300), (3000, 20)])
def test_odd_sizes_are_read_without_error(reader, size):
    page = reader.read(Image.new("RGB", size, "white"))
    assert page.lines == []
