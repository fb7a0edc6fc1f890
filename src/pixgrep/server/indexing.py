"""One index run at a time in a background thread, with its progress readable by polling."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pixgrep.errors import PixgrepError
from pixgrep.models.base import Encoder
from pixgrep.records import IndexSummary

if TYPE_CHECKING:
    from pixgrep.api import Catalog


class IndexBusy(PixgrepError):
    """Another index run is still going."""


class IndexStopped(BaseException):
    """Raised from a run's progress callback when the server stops. A BaseException, like Ctrl-C,
    so that no `except Exception` on the way swallows it; it comes right after a batch's commit."""


class IndexRunner:
    def __init__(self, catalog_path: str | os.PathLike, encoder_source):
        self._catalog_path = catalog_path
        # A callable giving the shared encoder, so the model is loaded once for searches and runs.
        self._encoder_source = encoder_source
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._run = 0
        self._status: dict = {"state": "idle", "run": 0}

    def status(self) -> dict:
        with self._lock:
            return dict(self._status, summary=dict(self._status.get("summary") or {}) or None)

    def start(self, folder: str, ocr: bool | None = None) -> dict:
        from pixgrep.server.guards import check_folder_text

        check_folder_text(folder)
        path = Path(os.path.expanduser(folder))
        if not path.is_absolute():
            raise PixgrepError(f"folder must be an absolute path: {folder}")
        try:
            is_dir = path.is_dir()
        except OSError as exc:  # a name too long, a loop of links: the kernel's reason, one line
            raise PixgrepError(f"cannot use folder {folder}: {exc.strerror or exc}") from None
        if not is_dir:
            raise PixgrepError(f"not a folder: {folder}")
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise IndexBusy(f"an index run of {self._status['folder']} is still going")
            self._run += 1
            self._status = {
                "state": "running",
                "run": self._run,
                "folder": str(path),
                "started_at": time.time(),
                "finished_at": None,
                "summary": IndexSummary().to_json(),
                "error": None,
            }
            self._thread = threading.Thread(
                target=self._work, args=(path, self._run, ocr), name=f"pixgrep-index-{self._run}", daemon=True
            )
            self._thread.start()
        return self.status()

    def wait(self, timeout: float | None = None) -> dict:
        """Block until the current run ends (tests and shutdown)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.status()

    def stop(self) -> dict:
        """End the current run after its next commit and wait for it (server shutdown). What it
        committed stays, and the next run of the folder goes on from there. A run left running
        would be killed at interpreter exit inside ONNX Runtime, which aborts the process."""
        self._stopping.set()
        return self.wait()

    def _update(self, run: int, **fields) -> None:
        with self._lock:
            if self._status.get("run") == run:
                self._status.update(fields)

    def _work(self, folder: Path, run: int, ocr: bool | None = None) -> None:
        from pixgrep.api import open_catalog

        def progress(summary: IndexSummary) -> None:
            self._update(run, summary=summary.to_json())
            if self._stopping.is_set():
                raise IndexStopped

        try:
            encoder: Encoder = self._encoder_source()
            # Its own connection: searches keep answering from the shared one while this writes (WAL).
            with open_catalog(self._catalog_path, encoder=encoder) as catalog:
                summary = catalog.index([folder], progress=progress, ocr=ocr)
                self._update(run, summary=summary.to_json())
                _prepare_search(catalog)
            self._update(run, state="done", summary=summary.to_json(), finished_at=time.time())
        except IndexStopped:
            self._update(run, state="stopped", finished_at=time.time())
        except PixgrepError as exc:
            self._update(run, state="failed", error=str(exc), finished_at=time.time())
        except Exception as exc:  # a bug must end the run visibly, not kill the thread silently
            self._update(run, state="failed", error=f"internal error: {exc!r}", finished_at=time.time())


def _prepare_search(catalog: Catalog) -> None:
    """Rebuild the search matrix now, so the first search after the run does not pay for it."""
    try:
        catalog.prepare_search()
    except Exception:  # only an optimisation: the next search rebuilds it anyway
        pass
