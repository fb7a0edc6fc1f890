"""A `pixgrep -n` text query answered by a running `pixgrep serve` of the same catalog and model.

A cold `pixgrep -n` pays for Python and numpy, ONNX Runtime, the text tower's session and the
index's memory map before it scores anything (0.8-1.0 s at 1M rows, docs/benchmarks.md); a server
already holds them all (about 21 ms a query at 1M). So `serve` leaves a note beside the catalog,
`<catalog>.serve.json` (where it listens, its process, its model, a random instance key), and
removes it when it stops; a second server of the catalog leaves a running server's note alone.
`pixgrep -n` with text-only terms reads the note and, when the process is alive, listens on a
loopback address and serves the model asked for, sends the query there. The answer counts only
if it carries the note's instance key (another program on a reused port does not); any doubt or
failure (no note, a dead process, a refusal, a timeout, a token the caller lacks) means the query
runs in this process as before. The answer is the one this process would give (the same engine on
the same catalog), scores as the server's JSON rounds them (6 decimals). `pixgrep -n --local`
skips the hand-off.

Only the standard library here, and http.client only once a note is found: every `pixgrep -n`
text query imports this module, with or without a server running.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pixgrep.records import SearchResult

NOTE_VERSION = 1
INSTANCE_HEADER = "x-pixgrep-instance"
TIMEOUT_S = 5.0  # the server may be busy (an index run); past this the CLI answers by itself
LOOPBACK = ("127.0.0.1", "::1", "localhost")
ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # a server on every address is reached locally


def note_path(catalog: str | os.PathLike) -> Path:
    real = Path(os.path.realpath(catalog))
    return real.with_name(real.name + ".serve.json")


def model_key(model: str | None) -> str:
    """What --model names, comparably: "" for the default, an absolute path for a folder."""
    if not model:
        return ""
    return os.path.realpath(model) if os.path.isdir(model) else model


# --- the server's side ---


@contextlib.contextmanager
def announced(
    catalog: str | os.PathLike, *, host: str, port: int, model: str | None, model_id: str, token: bool
) -> Iterator[str]:
    """Write the note for the life of the block (best effort: a read-only folder just means no
    hand-off) and yield the instance key the server must put on its answers."""
    import secrets

    key = secrets.token_hex(16)
    note = note_path(catalog)
    body = {
        "version": NOTE_VERSION,
        "pid": os.getpid(),
        "host": host,
        "port": port,
        "catalog": os.path.realpath(catalog),
        "model": model_key(model),
        "model_id": model_id,
        "token": token,
        "key": key,
    }
    from pixgrep.catalog.paths import writable

    written = False
    temporary = note.with_name(f"{note.name}.{os.getpid()}.tmp")
    if writable(note.parent):  # a folder made read-only is not written, even by root
        try:
            temporary.write_text(json.dumps(body))
            written = _claim(temporary, note)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                temporary.unlink()
    try:
        yield key
    finally:
        if written and _read(note).get("key") == key:  # a later server's note is left alone
            with contextlib.suppress(OSError):
                note.unlink()


def _claim(temporary: Path, note: Path) -> bool:
    """Put the note in place, unless another running server of the catalog has one there: that
    server keeps answering `pixgrep -n` (taking its note over, then removing it on the way out,
    left the first server, still running, unfound)."""
    try:
        os.link(temporary, note)  # only where there is no note: of two servers starting, one wins
        return True
    except OSError:  # a note is there (or no hard links on this file system): whose is it?
        pass
    pid = _read(note).get("pid")
    if pid != os.getpid() and _alive(pid):
        return False
    os.replace(temporary, note)  # a dead server's note; a reader sees the old or the new, never half
    return True


def read_note(catalog: str | os.PathLike) -> dict[str, Any]:
    """The catalog's note as written, or {} (none, unreadable, another version)."""
    return _read(note_path(catalog))


class InstanceHeader:
    """ASGI middleware: every response carries the server's instance key."""

    def __init__(self, app, key: str):
        self.app = app
        self.header = (INSTANCE_HEADER.encode(), key.encode())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_key(event):
            if event["type"] == "http.response.start":
                event["headers"] = [*event.get("headers", []), self.header]
            await send(event)

        return await self.app(scope, receive, send_with_key)


# --- the CLI's side ---


def _read(note: Path) -> dict[str, Any]:
    try:
        body = json.loads(note.read_text())
    except (OSError, ValueError):
        return {}
    return body if isinstance(body, dict) and body.get("version") == NOTE_VERSION else {}


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or another user's: not this user's server
        return False
    return True


def ask(
    catalog: str | os.PathLike, model: str | None, body: dict[str, Any]
) -> tuple[list[SearchResult], list[str]] | None:
    """POST /api/search `body` to this catalog's running server: its (results, warnings), or None
    when the query should run here instead (no usable server, or anything unexpected on the way)."""
    note = _read(note_path(catalog))
    host = ANY_ADDRESS.get(str(note.get("host")), note.get("host"))
    if not note or note.get("catalog") != os.path.realpath(catalog) or host not in LOOPBACK:
        return None
    port = note.get("port")
    if not isinstance(port, int) or not 0 < port < 65536:
        return None
    if model_key(model) not in (note.get("model"), note.get("model_id")) or not _alive(note.get("pid")):
        return None
    headers = {"Content-Type": "application/json"}
    if note.get("token"):
        token = os.environ.get("PIXGREP_TOKEN")
        if not token:
            return None
        headers["Authorization"] = f"Bearer {token}"
    try:  # ASCII: a folder name that is not UTF-8 travels as its \udcXX escapes, as the server's do
        payload = json.dumps(body).encode("ascii")
    except (TypeError, ValueError):
        return None
    import http.client

    connection = http.client.HTTPConnection(str(host), port, timeout=TIMEOUT_S)
    try:
        connection.request("POST", "/api/search", body=payload, headers=headers)
        response = connection.getresponse()
        data = response.read()
        if response.status != 200 or response.getheader(INSTANCE_HEADER) != note.get("key"):
            return None
        answer = json.loads(data.decode("utf-8"))
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        connection.close()
    return _results(answer)


def _results(answer: object) -> tuple[list[SearchResult], list[str]] | None:
    """The search records of a server's answer (server/querying.py result_json, read back), or None
    for an answer of another shape."""
    from pixgrep.records import SearchResult

    if not isinstance(answer, dict):
        return None
    try:
        results = [
            SearchResult(
                image_id=row["id"],
                path=row["path"],
                score=float(row["score"]),
                size=row["size"],
                width=row["width"],
                height=row["height"],
                taken_at=row["taken_at"],
                parts=row.get("parts"),
                duplicate_ids=tuple(copy["id"] for copy in row.get("duplicates", ())),
                duplicate_paths=tuple(copy["path"] for copy in row.get("duplicates", ())),
            )
            for row in answer["results"]
        ]
        return results, [str(note) for note in answer.get("warnings", ())]
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
