"""Words and meaning together: a plain text query is ranked by CLIP and by the word index
(catalog/words.py: text read in the picture, file and folder names, keywords, titles).

How (mode "auto", the default): the query's words (stop words left out) must all be found in an
image for it to be a word hit. With no word hit the results are exactly CLIP's. Otherwise the
word hits come first, ordered by reciprocal rank fusion of their CLIP rank and their word rank
(1/(RRF_K + rank) each), then every other image in CLIP's order. A query that names words on a
picture thus finds it first, and a query that names nothing written anywhere ranks as before.

Mode "only" (`--words`, or a query starting with `words:`) lists the word hits alone, best word
match first; "off" is CLIP alone. FTS5 syntax inside the text: "a quoted phrase", prefix*
(accents never matter: unicode61 remove_diacritics).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

import numpy as np

from pixgrep.catalog import words as index
from pixgrep.catalog.db import CatalogDB
from pixgrep.errors import PixgrepError
from pixgrep.records import SearchResult, SearchResults
from pixgrep.search.options import SearchOptions
from pixgrep.search.query import Term

if TYPE_CHECKING:
    from pixgrep.models.base import Encoder

MODES = ("auto", "only", "off")
PREFIX = "words:"
RRF_K = 60
CLIP_DEPTH = 200  # CLIP candidates fused with the word hits (more when the page asks for more)
MAX_HITS = 1000
# In auto mode, words this many images hold (a folder name such as "beach" in a big library) single
# no picture out: such a query ranks as CLIP alone, and never pays for ranking them all.
COMMON_FROM = 10_000
LOOSE_FROM = 6  # words this long may end misread in the loose tier
# The loose tier's prefixes are at most this long: the word index holds a prefix index for each
# length up to it, so each is one lookup, not a scan (catalog/words.py).
LOOSE_PREFIX_MAX = max(index.PREFIX_LENGTHS)
SQUASHED_FROM = 6  # a squashed query this long may match words OCR ran together
# Left out of the words an image must hold: said in a query, rarely written on the picture.
STOP_WORDS = frozenset(
    "a an the of on in at to for and or with by from is are was this that these those my our your "
    "some photo photos picture pictures image images".split()
)
_TOKEN = re.compile(r'"([^"]*)"|(\S+)')
_WORD = re.compile(r"\w+")

__all__ = ["MODES", "check_mode", "fts_query", "search_with_words"]


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise PixgrepError(f"unknown words mode {mode!r}; choose from {', '.join(MODES)}")
    return mode


def _quoted(word: str) -> str:
    return '"' + word.replace('"', '""') + '"'


def _unit(word: str, star: str) -> str:
    """One word of the FTS5 query; a German sharp s either way ("strasse" finds "Straße" and back:
    the index's tokenizer folds accents, not ß)."""
    folded = word.lower()  # not casefold(): that spells ß as ss itself
    other = folded.replace("ß", "ss") if "ß" in folded else folded.replace("ss", "ß")
    if other == folded:
        return _quoted(word) + star
    return f"({_quoted(word)}{star} OR {_quoted(other)}{star})"


def fts_query(text: str, *, keep_stop_words: bool = False, loose: bool = False) -> str | None:
    """The FTS5 query for a text: every word (AND), "phrases" kept together, word* as a prefix;
    None when nothing searchable is left. loose: each word of LOOSE_FROM letters or more is
    a prefix two letters shorter, and at most LOOSE_PREFIX_MAX letters (OCR misreads endings:
    "ENTRANG" for "ENTRANCE")."""
    units: list[str] = []
    for phrase, bare in _TOKEN.findall(text):
        if phrase:
            found = _WORD.findall(phrase)
            if found:
                units.append(_quoted(" ".join(found)))
            continue
        prefix = bare.endswith("*")
        found = _WORD.findall(bare)
        for n, word in enumerate(found):
            if not keep_stop_words and word.casefold() in STOP_WORDS and not prefix:
                continue
            star = "*" if prefix and n == len(found) - 1 else ""
            if loose and not star and len(word) >= LOOSE_FROM:
                word, star = word[: min(len(word) - 2, LOOSE_PREFIX_MAX)], "*"
            units.append(_unit(word, star))
    if not units and not keep_stop_words:
        return fts_query(text, keep_stop_words=True, loose=loose)  # "the who": search what was said
    # FTS5 takes "a" "b" as a AND b, but not next to a parenthesised group: there AND is written.
    return (" AND " if any(unit.startswith("(") for unit in units) else " ").join(units) or None


def word_text(terms: Sequence[Term], mode: str) -> tuple[str | None, str]:
    """(the text to look up, the mode) for a query: a `words:` text forces "only"; otherwise
    words are looked up only for a single text term."""
    texts = [str(t.value) for t in terms if t.kind == "text"]
    tagged = [text for text in texts if text.strip().lower().startswith(PREFIX)]
    if tagged:
        if len(terms) != 1:
            raise PixgrepError(f"a {PREFIX} query stands alone (no + or - terms with it)")
        if mode == "off":
            raise PixgrepError(f"a {PREFIX} query searches words, which --no-words (words=off) leaves out")
        return tagged[0].strip()[len(PREFIX) :], "only"
    if mode == "off" or len(terms) != 1 or terms[0].kind != "text" or terms[0].weight <= 0:
        return None, mode
    return texts[0], mode


def search_with_words(
    db: CatalogDB,
    encoder: Callable[[], Encoder],
    terms: Sequence[Term],
    options: SearchOptions,
    catalog_lock: AbstractContextManager | None = None,
) -> SearchResults:
    """The CLIP ranking (search/engine.py) fused with the word index as options.words says
    (module docstring). encoder: gives the model when it is needed (words alone never loads it).
    catalog_lock: held around this module's catalog reads and the word index's upkeep (a server's
    requests share one connection); the CLIP ranking takes it for its own reads."""
    from pixgrep.search.engine import search

    lock = catalog_lock or nullcontext()
    text, mode = word_text(terms, check_mode(options.words))
    query = fts_query(text) if text is not None else None
    if mode == "only" and query is None:
        what = f"in {text!r}" if text is not None else "(--words takes one text, no images or + and - terms)"
        raise PixgrepError(f"no words to search for {what}")
    at_least = None  # --words with a threshold: hits whose CLIP score reaches it, as they are counted
    if mode == "only" and options.threshold is not None and query and text is not None:
        model = encoder()
        vector = _query_vector(db, model, [dataclasses.replace(terms[0], value=text)], lock)
        at_least = (model.model_id, vector, options.threshold)
    with lock:
        hits = _hits(db, text, query, options, mode, at_least) if query and text is not None else []
    if mode == "only":
        return SearchResults(_words_only(db, hits, options, lock))
    if not hits:
        return search(db, encoder(), terms, options, catalog_lock)
    depth = max(CLIP_DEPTH, options.k + options.offset)
    clip = search(db, encoder(), terms, dataclasses.replace(options, k=depth, offset=0), catalog_lock)
    return SearchResults(_fused(db, encoder, terms, clip, hits, options, lock), clip.notes)


def _hits(
    db: CatalogDB, text: str, query: str, options: SearchOptions, mode: str, at_least: tuple | None = None
) -> list[index.WordHit]:
    """The word hits in the options' scope; a damaged word index is built again first (it is
    derived from the catalog) where the catalog can be written. at_least: (model id, query
    vector, threshold) that a hit's stored vector must reach."""
    try:
        return _tiers(db, text, query, options, mode, at_least)
    except index.WordIndexDamaged:
        if db.read_only:
            raise
        index.rebuild_damaged(db)
        return _tiers(db, text, query, options, mode, at_least)


def _tiers(
    db: CatalogDB, text: str, query: str, options: SearchOptions, mode: str, at_least: tuple | None
) -> list[index.WordHit]:
    """Word hits in two tiers: every word as said; else (none) the loose tier: the words run
    together inside one OCR line, or with misread endings (see fts_query). None in auto mode for
    words COMMON_FROM images hold. The scope applies before the count: `--words DSC` in one
    folder lists that folder's matches however many others the library holds."""
    index.sync(db)
    if mode == "auto" and index.matching_at_least(db, query, COMMON_FROM):
        return []
    scope = _Scope(db, options, at_least)
    limit = max(MAX_HITS, options.k + options.offset) if mode == "only" else MAX_HITS
    hits = index.match(db, query, limit, scope.accepted)
    if not hits:
        said = _WORD.findall(text)
        content = [w for w in said if w.casefold() not in STOP_WORDS] or said
        squashed = index.squash("".join(content))
        if len(content) >= 2 and len(squashed) >= SQUASHED_FROM:
            found = index.squashed_match(db, squashed, MAX_HITS)
            allowed = scope.accepted([hit.image_id for hit in found])
            hits = [hit for hit in found if hit.image_id in allowed]
        loose = fts_query(text, loose=True)
        if (
            loose
            and loose != query
            and not (mode == "auto" and index.matching_at_least(db, loose, COMMON_FROM))
        ):
            seen = {hit.image_id for hit in hits}
            hits += [hit for hit in index.match(db, loose, limit, scope.accepted) if hit.image_id not in seen]
    return hits


class _Scope:
    """Which images the options' scope lets through (search/scope.py, as the CLIP ranking applies it)."""

    def __init__(self, db: CatalogDB, options: SearchOptions, at_least: tuple | None = None):
        from pixgrep.search.scope import scope_for

        self.db = db
        self.scope = scope_for(db, options)
        self.at_least = at_least

    def accepted(self, ids: list[int]) -> set[int]:
        from pixgrep.search.filters import wallclock_seconds

        scope, prefixes = self.scope, self.scope.prefixes
        out = set()
        for image_id, record in self.db.images_by_id(ids).items():
            if record.error is not None or (scope.allowed is not None and image_id not in scope.allowed):
                continue
            if prefixes is not None and not any(record.path.startswith(p) for p in prefixes):
                continue
            if scope.after is not None or scope.before is not None:
                taken = wallclock_seconds(record.taken_at)
                if taken is None or (scope.after is not None and taken < scope.after):
                    continue
                if scope.before is not None and taken >= scope.before:
                    continue
            if not scope.exclusions.drops(image_id, record.path):
                out.add(image_id)
        if self.at_least is not None and out:
            model_id, vector, threshold = self.at_least
            scores = _stored_cosines(self.db, model_id, vector, list(out))
            out = {i for i in out if scores.get(i, -1.0) >= threshold}
        return out


def _cosines(
    db: CatalogDB, encoder: Encoder, terms: Sequence[Term], ids: list[int], lock: AbstractContextManager
) -> dict[int, float]:
    """CLIP scores of images outside CLIP's own candidates (their stored vectors)."""
    if not ids:
        return {}
    vector = _query_vector(db, encoder, terms, lock)
    with lock:
        return _stored_cosines(db, encoder.model_id, vector, ids)


def _query_vector(
    db: CatalogDB, encoder: Encoder, terms: Sequence[Term], lock: AbstractContextManager
) -> np.ndarray:
    from pixgrep.search.engine import plan_for
    from pixgrep.search.options import SearchOptions

    plan, _ = plan_for(db, encoder, terms, SearchOptions(), lock)  # the tower runs outside the lock
    return plan.vectors[0]


def _stored_cosines(db: CatalogDB, model_id: str, vector: np.ndarray, ids: list[int]) -> dict[int, float]:
    """Inside the caller's lock: the cosines of these images' stored vectors with `vector`."""
    out = {}
    for image_id, record in db.images_by_id(ids).items():
        row = db.vector_for_hash(record.content_hash, model_id)
        if row is not None:
            out[image_id] = float(np.dot(np.asarray(row, np.float32), vector))
    return out


def _result(record, score: float, hit: index.WordHit | None) -> SearchResult:
    return SearchResult(
        image_id=record.id,
        path=record.path,
        score=score,
        size=record.size,
        width=record.width,
        height=record.height,
        taken_at=record.taken_at,
        words=hit.words if hit else (),
        words_from=hit.sources if hit else (),
    )


def _fused(
    db: CatalogDB,
    encoder: Callable[[], Encoder],
    terms: Sequence[Term],
    clip: list[SearchResult],
    hits: list[index.WordHit],
    options: SearchOptions,
    lock: AbstractContextManager,
) -> list[SearchResult]:
    # Only CLIP's first CLIP_DEPTH ranks take part in the fusion, however deep the page: the
    # order of the word hits is then the same for every page (a depth that followed the page
    # moved hits between pages, showing some twice and others never).
    clip_rank: dict[int, int] = {}
    for rank, result in enumerate(clip[:CLIP_DEPTH]):
        for image_id in (result.image_id, *result.duplicate_ids):
            clip_rank.setdefault(image_id, rank)
    word_rank = {hit.image_id: rank for rank, hit in enumerate(hits)}
    by_id = {hit.image_id: hit for hit in hits}
    shown = {image_id for result in clip for image_id in (result.image_id, *result.duplicate_ids)}
    missing = [i for i in word_rank if i not in shown]

    def fused(image_id: int) -> float:
        return 1 / (RRF_K + clip_rank.get(image_id, CLIP_DEPTH)) + 1 / (RRF_K + word_rank[image_id])

    # A CLIP result (a group of near-duplicates) is a word hit when any of its images is; the
    # image whose words matched best then stands for the group (a screenshot among screenshots).
    leaders: dict[int, SearchResult] = {}
    for result in clip:
        matched = [i for i in (result.image_id, *result.duplicate_ids) if i in by_id]
        if matched:
            leaders[max(matched, key=fused)] = result
    swapped = [i for i, result in leaders.items() if i != result.image_id]
    cosines = _cosines(db, encoder(), terms, missing + swapped, lock)
    if options.threshold is not None:
        missing = [i for i in missing if cosines.get(i, -1.0) >= options.threshold]
    with lock:
        records = db.images_by_id(missing + swapped)
    groups: list[tuple[float, int, SearchResult]] = []  # fused score, word rank (ties), result
    for best, result in leaders.items():
        hit = by_id[best]
        if best != result.image_id and best in records:
            others = [
                (i, p) for i, p in zip(result.duplicate_ids, result.duplicate_paths, strict=True) if i != best
            ]
            led = _result(records[best], cosines.get(best, result.score), hit)
            result = dataclasses.replace(
                led,
                duplicate_ids=(result.image_id, *(i for i, _ in others)),
                duplicate_paths=(result.path, *(p for _, p in others)),
            )
        shown_as = dataclasses.replace(result, words=hit.words, words_from=hit.sources)
        groups.append((fused(best), word_rank[best], shown_as))
    for image_id in missing:
        if image_id in records:
            alone = _result(records[image_id], cosines.get(image_id, 0.0), by_id[image_id])
            groups.append((fused(image_id), word_rank[image_id], alone))
    groups.sort(key=lambda group: (-group[0], group[1]))
    first = [result for _, _, result in groups]
    rest = [result for result in clip if not result.words and result.image_id not in by_id]
    ranked = first + [r for r in rest if not any(i in by_id for i in r.duplicate_ids)]
    return ranked[options.offset : options.offset + options.k]


def _words_only(
    db: CatalogDB, hits: list[index.WordHit], options: SearchOptions, lock: AbstractContextManager
) -> list[SearchResult]:
    """Word hits alone, best word match first; the score is the match's share of the best one."""
    page = hits[options.offset : options.offset + options.k]
    with lock:
        records = db.images_by_id([hit.image_id for hit in page])
    best = hits[0].rank if hits else -1.0
    out = []
    for hit in page:
        if hit.image_id in records:
            # bm25 is negative, more negative is better: the best hit scores 1.
            score = hit.rank / best if best < 0 else 1.0
            out.append(_result(records[hit.image_id], round(score, 6), hit))
    return out
