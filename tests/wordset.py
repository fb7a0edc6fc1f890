"""A folder of pictures people search by their words, among ordinary photos (for the words tests
and for trying `pixgrep eval words` by hand):

  screenshots  notes, tickets and receipts rendered with Pillow in several fonts and sizes, on
               light and dark backgrounds; each has one key phrase
  signs        a sign with two or three words, rotated a few degrees, pasted on a real photo
  named        real photos with descriptive file names (passport_scan_2019.jpg, BoardingPass...)
  ordinary     real Flickr8k photos with their own (numeric) names; their first caption is a
               query that names no word written anywhere

`build(flickr_root, out)` writes the pictures to out/pictures and out/queries.tsv with the columns
kind, query, expected (a file name in pictures/); deterministic (fixed seed and lists).
    python tests/wordset.py ../shared/data/flickr8k /tmp/wordset
"""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSansCondensed.ttf",
    "DejaVuSerif-Bold.ttf",
)

# (key phrase, other lines): the key phrase's first two words differ from every other's.
SCREENSHOTS = (
    ("wifi password lighthouse42", ["Guest network: HarborView", "Ask the front desk for help"]),
    ("boarding pass gate B14", ["Passenger: J. Moreau", "Flight TP 1351 Lisbon", "Seat 22A  Group 3"]),
    ("invoice number 20817", ["Northwind Supplies Ltd", "Total due: 1,240.00 EUR", "Payment within 30 days"]),
    ("dentist appointment thursday", ["Dr. Okafor, 3rd floor", "Please arrive 10 minutes early"]),
    ("meeting notes quarterly roadmap", ["Attendees: Ana, Bo, Chen", "Action: ship the beta"]),
    ("train ticket coach 7", ["Amsterdam Centraal to Utrecht", "Valid on 14 May only"]),
    ("grocery list oat milk", ["eggs, spinach, lemons", "coffee beans"]),
    ("parking permit zone C", ["Vehicle: silver hatchback", "Expires 31 December"]),
    ("concert tickets row F", ["Blue Harbour Orchestra", "Doors open 19:30"]),
    ("library card renewal", ["Member 448120", "Return by the 12th"]),
    ("tax refund confirmation", ["Reference TR-55091", "Amount credited to your account"]),
    ("recipe banana bread", ["3 ripe bananas", "bake 60 minutes at 175 C"]),
    ("vaccination record certificate", ["Dose 2 of 2", "Clinic Rosenheim"]),
    ("password reset code 739184", ["Do not share this code", "It expires in 10 minutes"]),
    ("hotel reservation suite 1204", ["Check-in after 3 pm", "Breakfast included"]),
    ("electricity bill march", ["Meter 0045-7781", "Usage 312 kWh"]),
    ("gym membership platinum", ["Valid at all locations", "Member since 2021"]),
    ("flight delay notice", ["New departure 21:45", "We apologise for the inconvenience"]),
    ("shipping label fragile", ["Deliver to: 12 Elm Street", "Weight 4.2 kg"]),
    ("warranty expires 2027", ["Model WX-300 blender", "Keep this receipt"]),
)

SIGNS = (
    "BAKERY OPEN",
    "FERRY TERMINAL",
    "CITY LIBRARY",
    "NO PARKING",
    "FRESH FISH MARKET",
    "HOTEL PARADISO",
    "MUSEUM ENTRANCE",
    "PHARMACY",
    "BUS STOP",
    "ICE CREAM",
    "TRAIN STATION",
    "FLOWER SHOP",
)

# (file name, the words a person says): real photos under telling names.
NAMED = (
    ("passport_scan_2019.jpg", "passport scan"),
    ("SkiTripChamonix.jpg", "ski trip chamonix"),
    ("grandmas-birthday-cake.jpg", "grandmas birthday cake"),
    ("receiptHardwareStore.jpg", "receipt hardware store"),
    ("wedding_invitation_front.jpg", "wedding invitation"),
    ("car-insurance-claim-photo.jpg", "car insurance claim"),
    ("IMG_leaking_kitchen_pipe.jpg", "leaking kitchen pipe"),
    ("apartmentFloorPlan.jpg", "apartment floor plan"),
    ("new-sofa-measurements.jpg", "sofa measurements"),
    ("driving_licence_back.jpg", "driving licence"),
    ("holidayVillaPool2023.jpg", "holiday villa pool"),
    ("broken_bike_chain.jpg", "broken bike chain"),
)

SIGN_COLOURS = (("#1f3d7a", "white"), ("#f2d024", "black"), ("#b0201a", "white"), ("white", "#222222"))


def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(name, size)


def screenshot(key: str, lines: list[str], n: int) -> Image.Image:
    rng = random.Random(n)
    dark = n % 4 == 3
    background, ink = (
        ("#1e1e1e", "#f0f0f0") if dark else (rng.choice(["white", "#f4f4f4", "#fffbe8"]), "#111111")
    )
    image = Image.new("RGB", (rng.choice([720, 800, 900]), rng.choice([420, 480, 520])), background)
    draw = ImageDraw.Draw(image)
    font_name = FONTS[n % len(FONTS)]
    size = (20, 24, 28, 34)[n % 4]
    order = [*lines]
    order.insert(rng.randrange(len(lines) + 1), key)
    y = rng.randrange(24, 60)
    for text in order:
        big = text == key
        font = _font(font_name, size + (6 if big else 0))
        draw.text(
            (rng.randrange(24, 60), y), text.upper() if big and n % 5 == 0 else text, fill=ink, font=font
        )
        y += int((size + 6) * 1.8)
    return image


def sign(photo: Image.Image, text: str, n: int) -> Image.Image:
    rng = random.Random(100 + n)
    base = photo.convert("RGB").resize((512, 512), Image.Resampling.BICUBIC)
    fill, ink = SIGN_COLOURS[n % len(SIGN_COLOURS)]
    font = _font(FONTS[(n + 1) % len(FONTS)], rng.choice([34, 40, 46]))
    left, top, right, bottom = font.getbbox(text)
    pad = 18
    board = Image.new("RGBA", (right - left + 2 * pad, bottom - top + 2 * pad), fill)
    ImageDraw.Draw(board).text((pad - left, pad - top), text, fill=ink, font=font)
    board = board.rotate(rng.uniform(-7, 7), expand=True, resample=Image.Resampling.BICUBIC)
    x = rng.randrange(10, max(11, 512 - board.width - 10))
    y = rng.randrange(10, max(11, 512 - board.height - 10))
    base.paste(board, (x, y), board)
    return base


def build(flickr_root: Path, out: Path, ordinary: int = 100) -> Path:
    """Write out/pictures and out/queries.tsv (see module docstring); returns the tsv path."""
    pictures = out / "pictures"
    pictures.mkdir(parents=True, exist_ok=True)
    names = (flickr_root / "test.txt").read_text().split()
    captions: dict[str, str] = {}
    with open(flickr_root / "captions.tsv", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            captions.setdefault(row["image"], row["caption"])
    rows: list[tuple[str, str, str]] = []
    for n, (key, lines) in enumerate(SCREENSHOTS):
        name = f"Screenshot {n + 1:03d}.png"
        screenshot(key, list(lines), n).save(pictures / name)
        rows.append(("screenshot", key, name))
        rows.append(("screenshot-start", " ".join(key.split()[:2]), name))
    used = ordinary  # the first `ordinary` test photos stay ordinary; the others come after them
    for n, text in enumerate(SIGNS):
        name = f"IMG_{4100 + n}.jpg"
        sign(Image.open(flickr_root / "images" / names[used + n]), text, n).save(pictures / name, quality=90)
        rows.append(("sign", text.lower(), name))
    used += len(SIGNS)
    for n, (name, words) in enumerate(NAMED):
        Image.open(flickr_root / "images" / names[used + n]).save(pictures / name, quality=90)
        rows.append(("named", words, name))
    for name in names[:ordinary]:
        (pictures / name).write_bytes((flickr_root / "images" / name).read_bytes())
        rows.append(("caption", captions[name].strip().rstrip(" ."), name))
    table = out / "queries.tsv"
    with open(table, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["kind", "query", "expected"])
        writer.writerows(rows)
    return table


if __name__ == "__main__":
    print(build(Path(sys.argv[1]), Path(sys.argv[2])))
