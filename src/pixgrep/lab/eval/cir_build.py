"""Flickr8k-CIR: composed-retrieval triplets built from a captioned image split (docs/composed.md).

For each target image T of the split, the reference R is the other image of the same split whose
content words overlap T's most (Jaccard over the sets of lower-cased alphabetic words of all their
captions, minus STOPWORDS; ties go to the smaller file name). The modification text is the content
words absent from all of R's captions, taken from the caption of T that has the most of them (ties:
the earlier caption), in caption order, each word once. Triplets whose modification has fewer than 2
words are dropped. Written in CIRR's layout, so every CIRR tool reads it:

    OUT/captions/cap.rc2.NAME.json        [{"pairid", "reference", "target_hard", "target_soft",
                                            "caption"}]   (no img_set: there are no subsets)
    OUT/image_splits/split.rc2.NAME.json  {"image name": "./FILE.jpg"}  (names are file stems)

Deterministic: the same captions and split give byte-identical files.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixgrep.errors import PixgrepError

_WORD = re.compile(r"[a-z]+")
_COPY_SUFFIX = re.compile(r"^(.+\.[A-Za-z]{3,4})\.\d+$")  # the Flickr8k quirk key `X.jpg.1`
MIN_WORDS = 2

# English function words (and the letter fragments of "dog's", "don't"), written for this builder.
STOPWORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most
    my myself no nor not now of off on once only or other our ours ourselves out over own same she
    should so some such than that the their theirs them themselves then there these they this those
    through to too under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves s t d ll m re ve y o isn aren wasn weren don doesn didn
    another onto
    """.split()
)


def content_words(text: str) -> list[str]:
    """Lower-cased alphabetic words of `text` that are not stopwords, in order (repeats kept)."""
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


@dataclass(frozen=True)
class BuiltTriplet:
    reference: str  # file names
    target: str
    text: str


def captions_by_image(pairs: list[tuple[str, str]], split: list[str]) -> dict[str, list[str]]:
    """The split's images -> their captions in file order; a key `X.jpg.1` counts for X.jpg."""
    wanted = set(split)
    out: dict[str, list[str]] = {name: [] for name in split}
    for key, caption in pairs:
        if key not in wanted:
            match = _COPY_SUFFIX.match(key)
            if not (match and match.group(1) in wanted):
                continue
            key = match.group(1)
        out[key].append(caption)
    empty = [name for name, caps in out.items() if not caps]
    if empty:
        raise PixgrepError(f"{len(empty)} split image(s) have no caption, e.g. {empty[0]!r}")
    return out


def build_triplets(captions: dict[str, list[str]]) -> tuple[list[BuiltTriplet], int]:
    """(triplets in file-name order of the target, number dropped for a modification under 2 words)."""
    names = sorted(captions)
    if len(names) < 2:
        raise PixgrepError("a split needs at least two images to pair a reference with a target")
    word_sets = [set(w for c in captions[n] for w in content_words(c)) for n in names]
    vocab = {w: i for i, w in enumerate(sorted(set().union(*word_sets)))}
    # binary image x word matrix; intersections by one product, unions from the set sizes
    matrix = np.zeros((len(names), len(vocab)), np.float32)
    for row, words in enumerate(word_sets):
        matrix[row, [vocab[w] for w in words]] = 1.0
    sizes = matrix.sum(1)
    triplets, dropped = [], 0
    for start in range(0, len(names), 512):
        inter = matrix[start : start + 512] @ matrix.T  # exact: small integers in float32
        union = sizes[start : start + 512, None] + sizes[None, :] - inter
        jaccard = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        for offset, scores in enumerate(jaccard):
            t = start + offset
            scores[t] = -1.0  # never the image itself
            r = int(np.argmax(scores))  # first maximum = smallest file name (names are sorted)
            text = modification(captions[names[t]], word_sets[r])
            if len(text.split()) < MIN_WORDS:
                dropped += 1
                continue
            triplets.append(BuiltTriplet(names[r], names[t], text))
    return triplets, dropped


def modification(target_captions: list[str], reference_words: set[str]) -> str:
    """The content words absent from all of the reference's captions, taken from the target caption
    that has the most of them (the first such caption), in caption order, each word once."""
    best: list[str] = []
    for caption in target_captions:
        new = [w for w in dict.fromkeys(content_words(caption)) if w not in reference_words]
        if len(new) > len(best):
            best = new
    return " ".join(best)


def _stem(name: str) -> str:
    return Path(name).stem


def write_cirr(
    out: Path, split_name: str, triplets: list[BuiltTriplet], gallery: list[str]
) -> tuple[Path, Path]:
    """Write the two CIRR files (each written beside its place, then renamed)."""
    stems = {_stem(n) for n in gallery}
    if len(stems) != len(gallery):
        raise PixgrepError("two split images share a file stem; CIRR names images by stem")
    captions = [
        {
            "pairid": i,
            "reference": _stem(t.reference),
            "target_hard": _stem(t.target),
            "target_soft": {_stem(t.target): 1.0},
            "caption": t.text,
        }
        for i, t in enumerate(triplets)
    ]
    split = {_stem(n): f"./{n}" for n in sorted(gallery)}
    files = (
        out / "captions" / f"cap.rc2.{split_name}.json",
        out / "image_splits" / f"split.rc2.{split_name}.json",
    )
    for file, data in zip(files, (captions, split), strict=True):
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", "utf-8")
        tmp.replace(file)
    return files


def make_cir(captions_file: str | os.PathLike, split_file: str | os.PathLike, out: str | os.PathLike) -> dict:
    """Build and write one split; a summary dict for the CLI."""
    from pixgrep.lab.eval.datasets import read_captions, read_split

    split = read_split(split_file)
    by_image = captions_by_image(read_captions(captions_file), split)
    triplets, dropped = build_triplets(by_image)
    name = Path(split_file).stem
    captions_out, split_out = write_cirr(Path(out), name, triplets, split)
    return {
        "split": name,
        "images": len(split),
        "triplets": len(triplets),
        "dropped": dropped,
        "captions": str(captions_out),
        "image_split": str(split_out),
    }
