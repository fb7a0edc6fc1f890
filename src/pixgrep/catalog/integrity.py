"""The stamp that spares a catalog pixgrep left clean a full read before the next write.

`<catalog>.checked` holds the size and modification time of the catalog file and its -wal as
pixgrep last left them: at a clean close, after a full check that passed, or after a commit of a
connection that is still open (then naming it). CatalogDB.check_integrity compares it with the
files as they are now; docs/reliability.md says what is checked when.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["first_problem", "left_size", "matches", "write_stamp"]


def stamp_of(catalog: Path, writer: str = "") -> str:
    parts = []
    for path in (catalog, Path(f"{catalog}-wal")):
        try:
            st = path.stat()
        except OSError:
            st = None
        # An empty -wal (any connection opens one) holds nothing: the same as none.
        parts.append(f"{st.st_mtime_ns}:{st.st_size}" if st is not None and st.st_size else "-")
    if writer:
        parts.append(f"open by {writer}")
    return " ".join(parts)


def matches(catalog: Path, writer: str) -> bool:
    """The files are as a clean close left them, or as this writer's last commit did."""
    try:
        stamp = Path(f"{catalog}.checked").read_text()
    except (OSError, ValueError):  # gone, unreadable, or not text: the full check runs
        return False
    return stamp in (stamp_of(catalog), stamp_of(catalog, writer))


def left_size(catalog: Path) -> int | None:
    """The size of the catalog file as pixgrep last left it (None without a readable stamp)."""
    try:
        first = Path(f"{catalog}.checked").read_text().split(" ", 1)[0]
        return int(first.split(":")[1]) if first != "-" else None
    except (OSError, ValueError, IndexError):
        return None


def write_stamp(catalog: Path, writer: str = "") -> None:
    try:
        Path(f"{catalog}.checked").write_text(stamp_of(catalog, writer))
    except OSError:  # only saves the next run a read
        pass


def first_problem(problems: list[str]) -> str:
    """The first line of PRAGMA quick_check's answer that says something (it names the database
    on a line of its own: "*** in database main ***")."""
    lines = [line.strip() for line in "\n".join(problems).splitlines() if not line.startswith("***")]
    return next((line for line in lines if line), "?")
