"""Plain records passed between layers (catalog, search, API, CLI, server)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class ImageRecord:
    id: int
    path: str
    size: int
    mtime_ns: int
    content_hash: str
    width: int | None
    height: int | None
    format: str | None
    taken_at: str | None  # ISO 8601 capture time from EXIF, when the file has one
    error: str | None  # why the file could not be decoded; None when it was indexed


@dataclass(frozen=True)
class SearchResult:
    image_id: int
    path: str
    score: float  # cosine similarity of the (combined) query and the image, -1..1
    size: int
    width: int | None
    height: int | None
    taken_at: str | None
    # all-of search (--all): each part of the query and this image's cosine with it; else None
    parts: dict[str, float] | None = None
    # near-identical images folded into this one (same content, or image cosine above the
    # threshold of search/dedup.py), best-scored first; empty with dedup off
    duplicate_ids: tuple[int, ...] = ()
    duplicate_paths: tuple[str, ...] = field(default=())
    # the words of the query found in the picture's text, names or keywords (search/words.py),
    # and where: "text" (OCR), "name", "folder", "meta", "caption"; empty when none matched
    words: tuple[str, ...] = ()
    words_from: tuple[str, ...] = ()

    def to_json(self) -> dict:
        """path, score, size, width, height, taken_at; plus `parts` with --all and `duplicates`
        (paths) when near-identical images were folded into this one."""
        row = asdict(self)
        for key in ("image_id", "parts", "duplicate_ids", "duplicate_paths", "words", "words_from"):
            row.pop(key)
        if self.words:  # why it matched (search/words.py)
            row.update(words=list(self.words), words_from=list(self.words_from))
        row["score"] = round(self.score, 6)
        if self.parts is not None:
            row["parts"] = {text: round(score, 6) for text, score in self.parts.items()}
        if self.duplicate_paths:
            row["duplicates"] = list(self.duplicate_paths)
        return row


class SearchResults(list[SearchResult]):
    """A search's results, best first (a list), and the notes it has for the user (`notes`: e.g.
    a query text cut at the model's context length), which the CLI prints as warnings and the
    server returns beside the results."""

    def __init__(self, results: Iterable[SearchResult] = (), notes: Iterable[str] = ()):
        super().__init__(results)
        self.notes: tuple[str, ...] = tuple(notes)


@dataclass
class IndexSummary:
    found: int = 0  # image files seen under the roots
    encoded: int = 0  # files run through the image tower
    reused: int = 0  # new or moved files whose content already had a vector
    skipped: int = 0  # files that could not be decoded (one warning each)
    removed: int = 0  # catalog rows whose file is gone
    seconds: float = 0.0
    text: dict | None = None  # what OCR did (catalog/ocr_pass.py); None when the catalog reads no text

    def to_json(self) -> dict:
        row = asdict(self)
        if self.text is None:
            row.pop("text")
        row["seconds"] = round(self.seconds, 3)
        return row
