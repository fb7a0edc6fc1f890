"""`pixgrep -p`: inline terminal images (Kitty graphics protocol, iTerm2 inline images)."""

from __future__ import annotations

import base64
import io
import re

import pytest
from PIL import Image

from pixgrep.errors import PixgrepError
from pixgrep.search.preview import preview


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "wide.jpg"
    Image.new("RGB", (900, 600), (30, 140, 90)).save(path)
    return str(path)


def decode_png(payload: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(payload)))


def test_kitty_protocol_in_chunks(photo, monkeypatch):
    for name in ("TERM_PROGRAM", "LC_TERMINAL", "TMUX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm-kitty")
    text = preview(photo, 120)
    chunks = re.findall(r"\033_G([^;]*);([^\033]*)\033\\", text)
    assert chunks and text.endswith("\n")
    assert chunks[0][0].startswith("a=T,f=100")
    assert [keys.split("m=")[1] for keys, _ in chunks] == ["1"] * (len(chunks) - 1) + ["0"]
    assert all(len(data) <= 4096 for _, data in chunks)
    image = decode_png("".join(data for _, data in chunks))
    assert image.size == (180, 120)  # scaled to the preview height, aspect kept


def test_iterm_protocol(photo, monkeypatch):
    monkeypatch.delenv("TMUX", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("TERM_PROGRAM", "iTerm.app")
    text = preview(photo, 100)
    match = re.fullmatch(r"\033\]1337;File=inline=1;size=(\d+);preserveAspectRatio=1:([^\a]*)\a\n", text)
    assert match
    assert decode_png(match.group(2)).size == (150, 100)


def test_inside_tmux_the_sequence_is_wrapped(photo, monkeypatch):
    monkeypatch.setenv("TMUX", "/tmp/tmux-0/default,1,0")
    monkeypatch.delenv("TERM_PROGRAM", raising=False)
    monkeypatch.delenv("LC_TERMINAL", raising=False)
    text = preview(photo, 50)
    assert text.startswith("\033Ptmux;\033\033_G")


def test_small_image_is_not_enlarged(tmp_path, monkeypatch):
    monkeypatch.delenv("TMUX", raising=False)
    monkeypatch.setenv("TERM_PROGRAM", "WezTerm")
    path = tmp_path / "small.png"
    Image.new("RGB", (40, 30), (1, 2, 3)).save(path)
    payload = preview(str(path), 400).split(":", 1)[1].rstrip("\a\n")
    assert decode_png(payload).size == (40, 30)


def test_unreadable_file_is_a_pixgrep_error(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    with pytest.raises(PixgrepError):
        preview(str(bad), 100)
