"""Show a result image inline in the terminal (`pixgrep -p`), as rclip's --preview does.

Two escape-code protocols cover the terminals that draw images: iTerm2's inline images (iTerm2,
WezTerm, Konsole, mintty) and the Kitty graphics protocol (Kitty, Ghostty, Konsole). Inside tmux
the sequence is wrapped in tmux's passthrough. Other terminals print nothing useful: use
`pixgrep -f QUERY | xargs ...` with an image viewer instead.
"""

from __future__ import annotations

import base64
import io
import os

ITERM_PROGRAMS = ("iTerm.app", "WezTerm", "mintty")


def protocol() -> str:
    """'iterm' or 'kitty', from the environment the terminal sets."""
    if os.environ.get("TERM_PROGRAM") in ITERM_PROGRAMS or os.environ.get("LC_TERMINAL") == "iTerm2":
        return "iterm"
    return "kitty"


def _tmux_wrap(sequence: str) -> str:
    if os.environ.get("TMUX") or os.environ.get("TERM", "").startswith(("tmux", "screen")):
        return "\033Ptmux;" + sequence.replace("\033", "\033\033") + "\033\\"
    return sequence


def png_thumbnail(path: str, height_px: int) -> bytes:
    """The image scaled to at most `height_px` tall, as PNG bytes (PixgrepError if unreadable)."""
    from PIL import Image

    from pixgrep.images.decode import open_image

    image = open_image(path, draft_size=height_px)
    if image.height > height_px:
        width = max(1, round(image.width * height_px / image.height))
        image = image.resize((width, height_px), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def preview(path: str, height_px: int) -> str:
    """The escape sequence (and newline) that draws `path` below the current line."""
    payload = base64.b64encode(png_thumbnail(path, height_px)).decode("ascii")
    if protocol() == "iterm":
        size = len(payload) * 3 // 4
        return _tmux_wrap(f"\033]1337;File=inline=1;size={size};preserveAspectRatio=1:{payload}\a") + "\n"
    parts = []
    for start in range(0, len(payload), 4096):
        more = int(start + 4096 < len(payload))
        keys = f"a=T,f=100,q=2,m={more}" if start == 0 else f"q=2,m={more}"
        parts.append(_tmux_wrap(f"\033_G{keys};{payload[start : start + 4096]}\033\\"))
    return "".join(parts) + "\n"
