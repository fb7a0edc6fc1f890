"""List the image files below an object-store prefix (s3://, gs://, file://) as the local walk
(catalog/scan.py) lists a folder: the same FileEntry rows, the same skipping rules."""

from __future__ import annotations

import os
from collections.abc import Sequence

from pixgrep.catalog.scan import FileEntry
from pixgrep.errors import PixgrepError
from pixgrep.images.storage import resolve


def scan_uri(root: str, *, exclude: Sequence[str] = (), include_hidden: bool = False) -> list[FileEntry]:
    """The image files below an object-store prefix (or one object), listed through pyarrow's
    filesystems, as FileEntry rows whose path is the object's URI. The same rules as the local walk:
    image extensions only, hidden names skipped unless asked, exclude globs."""
    from pyarrow import fs

    from pixgrep.catalog.scan import excluded
    from pixgrep.images.formats import image_extensions

    root = root.rstrip("/")
    try:
        filesystem, inner = resolve(root)
        top = filesystem.get_file_info(inner)
        if top.type == fs.FileType.NotFound:
            raise PixgrepError(f"no such folder or file: {root}")
        if top.type == fs.FileType.File:
            infos = [top]
        else:
            infos = filesystem.get_file_info(fs.FileSelector(inner, recursive=True))
    except (OSError, ValueError) as exc:  # pyarrow's errors for bad URIs, credentials, networks
        raise PixgrepError(f"cannot list {root}: {str(exc).splitlines()[0]}") from None
    known = image_extensions()
    patterns = [p.rstrip("/") for p in exclude if p.strip()]
    entries = []
    for info in sorted(infos, key=lambda i: i.path):
        if info.type != fs.FileType.File or os.path.splitext(info.path)[1].lower() not in known:
            continue
        below = info.path[len(inner) :].strip("/").split("/") if info is not top else [info.base_name]
        if not include_hidden and any(part.startswith(".") for part in below):
            continue
        if any(excluded(part, inner, info.path, patterns) for part in below):
            continue
        # The root as the user wrote it plus the part below it: the URI keeps its host or account.
        uri = root if info is top else root + info.path[len(inner.rstrip("/")) :]
        entries.append(FileEntry(uri, int(info.size), int(info.mtime_ns or 0), False))
    return entries
