"""Benchmark inputs: caption files (TSV, COCO JSON, Karpathy JSON), split lists, class folders.

Everything here is pure file reading and checking; no model, no catalog. Errors a user can cause
(missing file, captions that name no image, a split image without captions) are PixgrepErrors.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from pixgrep.catalog.scan import is_image_file, list_images
from pixgrep.errors import PixgrepError
from pixgrep.textfiles import read_text

_TOKEN_SUFFIX = re.compile(r"#\d+$")  # Flickr8k.token.txt: `1000268201_693b08cb0e.jpg#0`
_COPY_SUFFIX = re.compile(r"^(.+\.[A-Za-z]{3,4})\.\d+$")  # the Flickr8k quirk key `X.jpg.1`


# -- captions ----------------------------------------------------------------------------------


def read_captions(path: str | os.PathLike) -> list[tuple[str, str]]:
    """(image name, caption) pairs in file order, from a TSV or a JSON file.

    TSV: `image<TAB>caption` lines, or a header row naming the columns (`image`, `caption`,
    any others ignored, e.g. `image  index  caption`); `name.jpg#N` keys (Flickr8k.token.txt)
    are accepted. JSON: COCO captions (`images` with `id`/`file_name`, `annotations` with
    `image_id`/`caption`) or Karpathy splits (`images` with `filename` and `sentences`).
    """
    path = Path(path)
    text = read_text(path, "captions file")
    stripped = text.lstrip()
    pairs = _captions_json(path, text) if stripped.startswith(("{", "[")) else _captions_tsv(path, text)
    if not pairs:
        raise PixgrepError(f"captions file {path} has no captions")
    return pairs


def _captions_tsv(path: Path, text: str) -> list[tuple[str, str]]:
    lines = text.splitlines()
    image_col, caption_col, start = 0, -1, 0
    if lines:
        head = [c.strip().lower() for c in lines[0].split("\t")]
        if "image" in head and "caption" in head:
            image_col, caption_col, start = head.index("image"), head.index("caption"), 1
    pairs = []
    for number, line in enumerate(lines[start:], start=start + 1):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) < 2 or max(image_col, caption_col) >= len(cells):
            raise PixgrepError(
                f"captions file {path}, line {number}: expected `image<TAB>caption`, got {line[:60]!r}"
            )
        image = _TOKEN_SUFFIX.sub("", cells[image_col].strip())
        caption = cells[caption_col].strip()
        if image and caption:
            pairs.append((image, caption))
    return pairs


def _captions_json(path: Path, text: str) -> list[tuple[str, str]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PixgrepError(f"captions file {path}: invalid JSON ({exc.msg}, line {exc.lineno})") from None
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise PixgrepError(f"captions file {path}: JSON needs an `images` list (COCO or Karpathy form)")
    try:
        if isinstance(data.get("annotations"), list):  # COCO
            names = {img["id"]: img["file_name"] for img in images}
            pairs = []
            for ann in data["annotations"]:
                if ann["image_id"] not in names:
                    raise PixgrepError(
                        f"captions file {path}: annotation for image id {ann['image_id']!r} "
                        "that is not in `images`"
                    )
                pairs.append((names[ann["image_id"]], str(ann["caption"]).strip()))
            return pairs
        pairs = []  # Karpathy: {"images": [{"filepath"?, "filename", "sentences": [{"raw"}]}]}
        for img in images:
            name = img["filename"]
            if img.get("filepath"):
                name = f"{img['filepath']}/{name}"
            pairs.extend((name, str(s["raw"]).strip()) for s in img["sentences"])
        return pairs
    except (KeyError, TypeError) as exc:
        raise PixgrepError(f"captions file {path}: JSON entry without the key {exc}") from None


def read_split(path: str | os.PathLike) -> list[str]:
    """Image names, one per line (Flickr8k's train/dev/test.txt), duplicates dropped, order kept."""
    path = Path(path)
    names = [line.strip() for line in read_text(path, "split file").splitlines() if line.strip()]
    if not names:
        raise PixgrepError(f"split file {path} lists no images")
    return list(dict.fromkeys(names))


@dataclass
class CaptionSet:
    """Images (paths) and their captions; caption_image[j] indexes images."""

    images: list[Path]
    captions: list[str]
    caption_image: list[int]
    remapped: list[str] = field(default_factory=list)  # caption keys that named no file, mapped
    skipped: list[str] = field(default_factory=list)  # caption keys naming no file: not evaluated


def build_caption_set(
    images_dir: str | os.PathLike,
    pairs: list[tuple[str, str]],
    split: list[str] | None = None,
) -> CaptionSet:
    """Match captions to image files under images_dir.

    Without a split, every image a caption names is evaluated; captions under a key that names no
    file are skipped and counted (Flickr8k's own `2258277193_586949ec62.jpg.1` names no image),
    unless that is most of them (the wrong folder, most likely: an error). With a split, its images
    are evaluated (each must exist and have a caption) and other captions are ignored.
    A key such as `X.jpg.1` that names no file but whose `X.jpg` does is read as `X.jpg`
    (the count is reported).
    """
    root = Path(images_dir)
    if not root.is_dir():
        raise PixgrepError(f"images folder {root}: no such folder")
    exists_cache: dict[str, bool] = {}

    def exists(name: str) -> bool:
        if name not in exists_cache:
            exists_cache[name] = (root / name).is_file()
        return exists_cache[name]

    wanted = set(split) if split is not None else None

    def known(name: str) -> bool:
        return name in wanted if wanted is not None else exists(name)

    remapped: list[str] = []
    resolved: list[tuple[str, str]] = []
    unknown: list[str] = []
    for key, caption in pairs:
        name = key
        if not known(key):
            match = _COPY_SUFFIX.match(key)
            if match and known(match.group(1)):
                name = match.group(1)
                remapped.append(key)
            elif wanted is not None:
                continue  # a caption for an image outside the split
            else:
                unknown.append(key)
                continue
        resolved.append((name, caption))
    skipped = list(dict.fromkeys(unknown))
    named = len(skipped) + len({name for name, _ in resolved})
    if skipped and 2 * len(skipped) >= named:
        raise PixgrepError(
            f"captions name {len(skipped)} of {named} image(s) not found in {root}, e.g. {skipped[0]!r}: "
            "is that the images folder? (use --split to evaluate a subset)"
        )
    order = split if split is not None else list(dict.fromkeys(name for name, _ in resolved))
    if split is not None:
        missing = [name for name in split if not exists(name)]
        if missing:
            raise PixgrepError(f"{len(missing)} split image(s) not found in {root}, e.g. {missing[0]!r}")
    index = {name: i for i, name in enumerate(order)}
    caption_image = [index[name] for name, _ in resolved]
    uncaptioned = sorted(set(range(len(order))) - set(caption_image))
    if uncaptioned:
        raise PixgrepError(
            f"{len(uncaptioned)} image(s) have no caption in the captions file, "
            f"e.g. {order[uncaptioned[0]]!r}"
        )
    return CaptionSet(
        images=[root / name for name in order],
        captions=[caption for _, caption in resolved],
        caption_image=caption_image,
        remapped=remapped,
        skipped=skipped,
    )


# -- class folders -----------------------------------------------------------------------------


@dataclass
class ClassSet:
    images: list[Path]
    labels: list[int]  # index into class_names, one per image
    class_names: list[str]


def _class_name(text: str) -> str:
    return " ".join(text.replace("_", " ").split())


def read_class_folder(folder: str | os.PathLike) -> ClassSet:
    """Class sub-folders (`DIR/cat/*.jpg`: class `cat`, images at any depth below), or, when DIR
    has no sub-folders with images, files named `ID_class_name.ext` (`n01440764_tench.jpg`: class
    `tench`). Underscores become spaces. Images whose class names are equal form one class
    (the ImageNet sample has two `crane`s and two `maillot`s: 998 classes), because a text prompt
    cannot tell them apart. Classes and images are sorted, so the result is deterministic."""
    root = Path(folder)
    if not root.is_dir():
        raise PixgrepError(f"{root}: no such folder")
    by_class: dict[str, list[Path]] = {}
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for sub in subdirs:
        files = list_images(sub)
        if files:
            by_class.setdefault(_class_name(sub.name), []).extend(files)
    if not by_class:
        for path in sorted(p for p in root.iterdir() if p.is_file() and is_image_file(p)):
            ident, sep, rest = path.stem.partition("_")
            if not sep or not ident or not _class_name(rest):
                raise PixgrepError(
                    f"{path.name} is not named ID_class_name{path.suffix}, and {root} has no class "
                    "sub-folders"
                )
            by_class.setdefault(_class_name(rest), []).append(path)
    if not by_class:
        raise PixgrepError(f"{root} has no images (class sub-folders or ID_class_name.jpg files)")
    if len(by_class) < 2:
        raise PixgrepError(f"{root} has only one class ({next(iter(by_class))!r}); need at least two")
    class_names = sorted(by_class)
    images, labels = [], []
    for label, name in enumerate(class_names):
        for path in sorted(by_class[name]):
            images.append(path)
            labels.append(label)
    return ClassSet(images=images, labels=labels, class_names=class_names)


def read_labels(text: str | None = None, file: str | os.PathLike | None = None) -> list[str]:
    """Labels from "cat, dog" or a file (one per line, # comments); stripped, duplicates dropped."""
    if file is not None:
        lines = read_text(Path(file), "labels file").splitlines()
        raw = [line for line in lines if not line.lstrip().startswith("#")]
    else:
        raw = (text or "").split(",")
    labels = list(dict.fromkeys(" ".join(r.split()) for r in raw if r.strip()))
    if not labels:
        raise PixgrepError('no labels given (--labels "cat, dog" or --labels-file FILE)')
    return labels
