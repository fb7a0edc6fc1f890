"""What every request shares: one catalog (one SQLite connection, guarded by a lock), one loaded
model, the access token, the thumbnail cache and the background index run."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from fastapi import Request

from pixgrep.api import Catalog
from pixgrep.server.indexing import IndexRunner
from pixgrep.server.thumbnails import ThumbnailCache

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # an uploaded query image; bigger bodies get 413
# Pixels of a query image (upload or URL), from its header before any decoding: a small file may
# declare a huge picture, and decoding 250 Mpx costs ~10 s of CPU and 1 GB per request.
MAX_UPLOAD_PIXELS = 64_000_000


@dataclass
class ServerState:
    catalog: Catalog
    model_name: str  # what the user asked for (registry name or folder), for /api/models
    token: str | None
    runner: IndexRunner
    max_upload: int = MAX_UPLOAD_BYTES
    max_pixels: int = MAX_UPLOAD_PIXELS
    allow_private_urls: bool = False  # fetch image URLs of loopback / private / link-local addresses
    # The catalog's connection is shared (check_same_thread=False), so one request at a time uses it.
    # Searches are short (a matrix product); index runs use their own connection and do not hold it.
    lock: threading.RLock = field(default_factory=threading.RLock)
    thumbs: ThumbnailCache = field(default_factory=ThumbnailCache)

    @property
    def model_id(self) -> str:
        return self.catalog.encoder.model_id

    def serves_model(self, name: str) -> bool:
        return name in (self.model_name, self.model_id)


def get_state(request: Request) -> ServerState:
    return request.app.state.pixgrep


def warm_up(state: ServerState) -> threading.Thread:
    """Load the text tower and the search matrix in the background, so the first search is quick."""

    def work() -> None:
        try:
            state.catalog.encoder.encode_texts(["a photo"])
            with state.lock:
                # Not the word index's relayout: minutes under the lock every request needs.
                state.catalog.prepare_search(open_graph=True, relayout_words=False)
        except Exception:  # only an optimisation: a real problem shows on the first request
            pass

    thread = threading.Thread(target=work, name="pixgrep-warm-up", daemon=True)
    thread.start()
    return thread
