"""Composed image retrieval data sets in their published layouts: CIRR and FashionIQ.

CIRR (Liu et al., ICCV 2021), as distributed:
    captions/cap.rc2.{train,val,test1}.json  a list of {"pairid", "reference", "target_hard",
        "target_soft", "caption", "img_set": {"id", "members", ...}}; test1 has no target_hard
    image_splits/split.rc2.{split}.json      {"image name": "./relative/path.png", ...}
FashionIQ (Wu et al., CVPR 2021), as distributed:
    captions/cap.{dress,shirt,toptee}.{split}.json  a list of {"candidate", "target", "captions": [two]}
    image_splits/split.{category}.{split}.json      a list of image names (files NAME.png)

Both become a `CirSet`: triplets (reference, modification text, target), the gallery of the split's
images, and where each image file is under the images folder. File reading and checks only: no
model, no catalog. Mistakes a user can make are PixgrepErrors naming the file.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pixgrep.errors import PixgrepError
from pixgrep.textfiles import read_text

CirFormat = Literal["cirr", "fashioniq"]
FORMATS: tuple[CirFormat, ...] = ("cirr", "fashioniq")
_CIRR_NAME = re.compile(r"^cap\.rc2\.(?P<split>[^.]+)\.json$")
_FIQ_NAME = re.compile(r"^cap\.(?P<category>[^.]+)\.(?P<split>[^.]+)\.json$")
# FashionIQ names images without an extension; the published images are PNG
_FIQ_EXTENSIONS = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Triplet:
    reference: str  # image names, as the data set spells them (keys of `CirSet.paths`)
    text: str
    target: str | None  # None where the split hides its targets (CIRR test1)
    members: tuple[str, ...] | None = None  # CIRR's img_set.members (the reference among them)
    pair_id: int | None = None


@dataclass
class CirSet:
    format: CirFormat
    captions_file: Path
    split_file: Path
    triplets: list[Triplet]
    gallery: list[str]  # the split's images, in split-file order
    paths: dict[str, Path]  # image name -> file under the images folder

    def files(self) -> list[Path]:
        return [self.paths[name] for name in self.gallery]


def _load_json(path: Path, what: str) -> Any:
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PixgrepError(f"{what} {path}: invalid JSON ({exc.msg}, line {exc.lineno})") from None


def detect_format(entries: Any, path: Path) -> CirFormat:
    """CIRR or FashionIQ from the keys of the first entry."""
    if not isinstance(entries, list) or not entries:
        raise PixgrepError(f"captions file {path}: expected a non-empty JSON list of triplets")
    first = entries[0]
    if isinstance(first, dict) and "reference" in first and "caption" in first:
        return "cirr"
    if isinstance(first, dict) and "candidate" in first and "captions" in first:
        return "fashioniq"
    keys = sorted(first) if isinstance(first, dict) else type(first).__name__
    raise PixgrepError(
        f"captions file {path}: neither CIRR (reference, caption, target_hard) nor FashionIQ "
        f"(candidate, target, captions) entries; the first has {keys}"
    )


def default_split_file(captions_file: Path, fmt: CirFormat) -> Path:
    """The image split that the standard layout puts beside captions/: ../image_splits/..."""
    splits = captions_file.resolve().parent.parent / "image_splits"
    if fmt == "cirr":
        match = _CIRR_NAME.match(captions_file.name)
        if not match:
            raise PixgrepError(
                f"{captions_file.name} is not named cap.rc2.SPLIT.json: "
                "give the image split with --image-split"
            )
        return splits / f"split.rc2.{match['split']}.json"
    match = _FIQ_NAME.match(captions_file.name)
    if not match:
        raise PixgrepError(
            f"{captions_file.name} is not named cap.CATEGORY.SPLIT.json: "
            "give the image split with --image-split"
        )
    return splits / f"split.{match['category']}.{match['split']}.json"


def read_cir(
    captions_file: str | os.PathLike,
    images_dir: str | os.PathLike,
    split_file: str | os.PathLike | None = None,
    fmt: CirFormat | None = None,
    *,
    check_files: bool = True,
) -> CirSet:
    """Read one captions file and its image split; every image a triplet names must be in the split,
    and (with check_files) every split image must exist under `images_dir`."""
    captions_path = Path(captions_file)
    entries = _load_json(captions_path, "captions file")
    found = detect_format(entries, captions_path)
    if fmt is not None and fmt != found:
        raise PixgrepError(f"captions file {captions_path} is in {found} format, not {fmt}")
    split_path = Path(split_file) if split_file is not None else default_split_file(captions_path, found)
    if not split_path.is_file():
        raise PixgrepError(f"image split {split_path}: no such file (give it with --image-split)")
    root = Path(images_dir)
    if not root.is_dir():
        raise PixgrepError(f"images folder {root}: no such folder")
    split = _load_json(split_path, "image split")
    if found == "cirr":
        triplets = [_cirr_triplet(entry, captions_path, i) for i, entry in enumerate(entries)]
        paths = _cirr_paths(split, split_path, root)
    else:
        triplets = [_fiq_triplet(entry, captions_path, i) for i, entry in enumerate(entries)]
        paths = _fiq_paths(split, split_path, root, check_files)
    gallery = list(paths)
    for number, t in enumerate(triplets, start=1):
        for name in (t.reference, t.target, *(t.members or ())):
            if name is not None and name not in paths:
                raise PixgrepError(
                    f"captions file {captions_path}, triplet {number}: image {name!r} is not in {split_path}"
                )
    if check_files:
        missing = [name for name in gallery if not paths[name].is_file()]
        if missing:
            raise PixgrepError(
                f"{len(missing)} image(s) of {split_path.name} not found under {root}, "
                f"e.g. {paths[missing[0]]}"
            )
    return CirSet(found, captions_path, split_path, triplets, gallery, paths)


def _field(entry: Any, key: str, path: Path, number: int) -> Any:
    if not isinstance(entry, dict) or key not in entry:
        raise PixgrepError(f"captions file {path}, triplet {number + 1}: no {key!r}")
    return entry[key]


def _cirr_triplet(entry: Any, path: Path, number: int) -> Triplet:
    reference = str(_field(entry, "reference", path, number))
    caption = str(_field(entry, "caption", path, number)).strip()
    target = entry.get("target_hard")
    members = None
    img_set = entry.get("img_set")
    if isinstance(img_set, dict) and isinstance(img_set.get("members"), list):
        members = tuple(str(m) for m in img_set["members"])
    pair_id = entry.get("pairid")
    return Triplet(
        reference,
        caption,
        str(target) if target is not None else None,
        members,
        int(pair_id) if isinstance(pair_id, int) else None,
    )


def fashioniq_text(captions: list[str]) -> str:
    """FashionIQ's two relative captions as one modification text: "A and B" (trailing dots off)."""
    parts = [c.strip().strip(".?, ") for c in captions if c.strip().strip(".?, ")]
    return " and ".join(parts)


def _fiq_triplet(entry: Any, path: Path, number: int) -> Triplet:
    candidate = str(_field(entry, "candidate", path, number))
    captions = _field(entry, "captions", path, number)
    if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
        raise PixgrepError(f"captions file {path}, triplet {number + 1}: 'captions' must be a list of texts")
    target = entry.get("target")
    return Triplet(candidate, fashioniq_text(captions), str(target) if target is not None else None)


def _cirr_paths(split: Any, path: Path, root: Path) -> dict[str, Path]:
    if not isinstance(split, dict) or not split:
        raise PixgrepError(f"image split {path}: expected a JSON object of image name -> relative path")
    return {str(name): root / str(rel) for name, rel in split.items()}


def _fiq_paths(split: Any, path: Path, root: Path, check_files: bool) -> dict[str, Path]:
    if not isinstance(split, list) or not split:
        raise PixgrepError(f"image split {path}: expected a JSON list of image names")
    paths = {}
    for name in map(str, split):
        candidates = [root / f"{name}{ext}" for ext in _FIQ_EXTENSIONS]
        paths[name] = next((c for c in candidates if not check_files or c.is_file()), candidates[0])
    return paths


def split_files(data_dir: Path, fmt: CirFormat | None = None) -> dict[str, Path]:
    """Captions files of a data set folder by split name ('train', 'val', 'dev', 'test1', ...).
    FashionIQ's three categories of one split are returned as one entry per file, 'train.dress'."""
    captions = data_dir / "captions"
    if not captions.is_dir():
        raise PixgrepError(f"{data_dir} has no captions/ folder (CIRR or FashionIQ layout)")
    out: dict[str, Path] = {}
    for file in sorted(captions.glob("cap.*.json")):
        cirr = _CIRR_NAME.match(file.name)
        fiq = _FIQ_NAME.match(file.name)
        if cirr and fmt in (None, "cirr"):
            out[cirr["split"]] = file
        elif fiq and not cirr and fmt in (None, "fashioniq"):
            out[f"{fiq['split']}.{fiq['category']}"] = file
    if not out:
        raise PixgrepError(f"{captions} holds no cap.rc2.SPLIT.json or cap.CATEGORY.SPLIT.json files")
    return out
