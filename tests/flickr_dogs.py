"""Flickr8k photos of dogs, decided by their captions (for tests that need a real subject)."""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

DOG = re.compile(r"\b(dogs?|pupp(y|ies))\b", re.IGNORECASE)


def dog_caption_counts(root: Path) -> tuple[Counter, Counter]:
    """(captions per image, captions mentioning a dog per image) from Flickr8k's captions.tsv."""
    total: Counter = Counter()
    dogs: Counter = Counter()
    with open(root / "captions.tsv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            total[row["image"]] += 1
            dogs[row["image"]] += bool(DOG.search(row["caption"]))
    return total, dogs


def is_dog(name: str, counts: tuple[Counter, Counter]) -> bool:
    """A photo is of a dog when most of its captions say so."""
    total, dogs = counts
    return 2 * dogs[name] > total[name]


def certain_dogs(root: Path, split: str = "test") -> list[str]:
    """Photos of the split (file order) whose every caption mentions a dog."""
    total, dogs = dog_caption_counts(root)
    names = (root / f"{split}.txt").read_text().split()
    return [name for name in names if total[name] and dogs[name] == total[name]]
