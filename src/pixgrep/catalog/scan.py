"""Walk folders with os.scandir and list the image files to index, with their size and mtime.

Skipped by default: hidden files and folders (a name starting with "."), the junk folders in
JUNK_DIRS (version control, dependency trees, caches, NAS and OS thumbnail stores, trash), symbolic
links to folders (they can loop), and files whose extension no image reader claims. `exclude` globs
match a file or folder by its name, its path relative to the root, or its absolute path.

Always skipped: a link to a file whose real path lies outside every folder of the walk. Nothing of
such a file (its vector, its EXIF and GPS, its name) enters the catalog, just as the server never
serves its bytes: a link dropped into a shared folder cannot pull in a file from elsewhere.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pixgrep.errors import PixgrepError
from pixgrep.images.formats import RAW_EXTENSIONS, image_extensions

# Folders that hold no user photos, or only copies of them (thumbnail caches would be found twice).
JUNK_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "node_modules",
        "__pycache__",
        ".venv",
        "venv",
        ".tox",
        ".cache",
        "@eaDir",  # Synology thumbnail store
        "#recycle",
        "#snapshot",  # Synology / QNAP
        ".thumbnails",
        ".thumb",
        "$RECYCLE.BIN",
        "System Volume Information",  # Windows drives
        ".Trash",
        ".Trashes",
        ".Spotlight-V100",
        ".fseventsd",
        ".DocumentRevisions-V100",  # macOS
        "lost+found",
    }
)


@dataclass(frozen=True)
class FileEntry:
    path: str  # absolute
    size: int
    mtime_ns: int
    raw: bool  # a camera RAW file (needs the `raw` extra)


def excluded(name: str, root: str, path: str, patterns: Sequence[str]) -> bool:
    """Does a glob match this file or folder by its name, its path below `root`, or its absolute path?"""
    if not patterns:
        return False
    rel = os.path.relpath(path, root)
    return any(fnmatch.fnmatch(text, pat) for pat in patterns for text in (name, rel, path))


def scan(
    roots: Sequence[str],
    *,
    exclude: Sequence[str] = (),
    include_hidden: bool = False,
    on_warning: Callable[[str, str], None] | None = None,
) -> Iterator[FileEntry]:
    """Image files under `roots` (absolute folder paths, or files named one by one), each once, in
    a stable order. A file named as a root is taken as given: hidden-file and exclude rules are for
    what a walk finds."""
    known = image_extensions()
    seen: set[str] = set()
    patterns = [p.rstrip("/") for p in exclude if p.strip()]
    # Real paths of the folders walked (a root may itself be reached through a link).
    real_roots = [os.path.join(os.path.realpath(r), "") for r in roots if os.path.isdir(r)]
    for root in roots:
        if not os.path.isdir(root):
            named = _named_file(root, known, on_warning)
            if named is not None and named.path not in seen:
                seen.add(named.path)
                yield named
            continue
        stack = [root]
        while stack:
            folder = stack.pop()
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                reason = exc.strerror or str(exc)
                if folder == root:
                    raise PixgrepError(f"cannot read folder {root}: {reason}") from None
                if on_warning:
                    on_warning(folder, f"cannot read folder: {reason}")
                continue
            subfolders = []
            for entry in entries:
                name = entry.name
                if name.startswith(".") and not include_hidden:
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if name in JUNK_DIRS or excluded(name, root, entry.path, patterns):
                            continue
                        subfolders.append(entry.path)
                        continue
                    ext = os.path.splitext(name)[1].lower()
                    raw = ext in RAW_EXTENSIONS
                    if not (raw or ext in known) or excluded(name, root, entry.path, patterns):
                        continue
                    if not entry.is_file():  # follows a link to a file; a dangling link is dropped
                        continue
                    if entry.is_symlink() and not _inside(os.path.realpath(entry.path), real_roots):
                        continue  # a link out of the indexed folders (module docstring)
                    stat = entry.stat()
                except OSError as exc:
                    if on_warning:
                        on_warning(entry.path, f"cannot read: {exc.strerror or exc}")
                    continue
                if entry.path in seen:  # nested or repeated roots
                    continue
                seen.add(entry.path)
                yield FileEntry(entry.path, stat.st_size, stat.st_mtime_ns, raw)
            stack.extend(reversed(subfolders))  # depth first, in name order


def _inside(real: str, real_roots: Sequence[str]) -> bool:
    return any(real.startswith(root) for root in real_roots)


def _named_file(
    path: str, known: frozenset[str], on_warning: Callable[[str, str], None] | None
) -> FileEntry | None:
    ext = os.path.splitext(path)[1].lower()
    raw = ext in RAW_EXTENSIONS
    if not (raw or ext in known):
        if on_warning:
            on_warning(path, "not an image file type pixgrep reads")
        return None
    try:
        stat = os.stat(path)
    except OSError as exc:
        if on_warning:
            on_warning(path, f"cannot read: {exc.strerror or exc}")
        return None
    return FileEntry(path, stat.st_size, stat.st_mtime_ns, raw)


def list_images(folder: Path) -> list[Path]:
    """Image files under `folder` as indexing walks it (same extensions, hidden and junk folders
    such as .thumbnails or @eaDir left out), sorted; camera RAW files are left out."""
    return sorted(Path(entry.path) for entry in scan([str(folder.resolve())]) if not entry.raw)


def is_image_file(path: Path) -> bool:
    """What indexing counts as an image (same extensions), so every listed file gets a vector."""
    return path.suffix.lower() in image_extensions() and not path.name.startswith(".")
