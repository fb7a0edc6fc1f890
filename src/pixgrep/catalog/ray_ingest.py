"""`pixgrep index --ray`: the model runs on a Ray cluster, the catalog stays on this machine.

    driver:   walk + diff against the catalog (ingest.plan_index: mounted folders and
              object-store prefixes), exactly as a local run; renames (a new path whose size and
              mtime match a row that is gone) are hashed here and reuse their vector: never sent
              to the cluster
    cluster:  a Ray Dataset of the remaining files -> map_batches over an actor pool of
              EncodeActor (the model folder's encoder from models/): prepare.prepare_file (read,
              hash, decode, preprocess, as a local run's pool threads), then encode
    driver:   batches stream back as Prepared records -> ingest.BatchWriter -> one SQLite
              transaction per batch

An interrupt or a lost node leaves every committed batch in the catalog; the next run's diff
skips them. Workers must see the files and the model folder at the same paths as the driver (a
shared mount), or read the files through pyarrow's filesystems (s3://, gs://).
"""

from __future__ import annotations

import math
import os
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from pixgrep.catalog.db import CatalogDB
from pixgrep.catalog.ingest import (
    MAX_ROWS_PER_BATCH,
    BatchWriter,
    IndexPlan,
    KnownVectors,
    Progress,
    Warn,
    default_warn,
    finish_index,
    plan_index,
    writing,
)
from pixgrep.catalog.prepare import (
    DRAFT_FACTOR,
    FileJob,
    Prepared,
    Skip,
    hash_bytes,
    prepare_file,
    read_and_hash,
)
from pixgrep.catalog.scan import FileEntry
from pixgrep.catalog.uri_scan import scan_uri
from pixgrep.errors import PixgrepError
from pixgrep.images.decode import ImageInfo
from pixgrep.images.storage import is_uri, object_store_env
from pixgrep.models.base import Encoder
from pixgrep.records import IndexSummary

__all__ = ["EncodeActor", "actor_plan", "connect", "hash_bytes", "index_roots_ray", "require_ray", "scan_uri"]

RAY_HINT = "indexing on Ray needs the ray extra: pip install 'pixgrep[ray]'"


def require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise PixgrepError(RAY_HINT) from None
    return ray


# -- on the workers ----------------------------------------------------------------------------


class EncodeActor:
    """One Ray actor: the model folder's encoder (models/, on the device models/devices.py picks
    for a worker), preparing (catalog/prepare.py) and encoding whole batches.

    Returns one row per input: the content hash, the header facts, the vector (zeros where the
    file was skipped) and the skip's reason and whether it is recorded, as the local pipeline's
    Prepared records have them. `threads` > 1 prepares in a pool (Pillow releases the GIL), so a
    GPU actor is not held back by one core's decoding. `storage_env`: the driver's object-store
    settings (images/storage.S3_ENV), so the actors read the objects the driver listed from the
    same endpoint, as the same user.
    """

    def __init__(
        self,
        model_folder: str,
        model_id: str,
        draft_size: int,
        use_gpu: bool = False,
        threads: int = 1,
        storage_env: dict[str, str] | None = None,
    ):
        from pixgrep.models.devices import worker_device
        from pixgrep.models.folder import open_folder
        from pixgrep.models.onnx_encoder import OnnxEncoder

        os.environ.update(storage_env or {})
        self.encoder = OnnxEncoder(
            open_folder(model_folder), model_id=model_id, device=worker_device(use_gpu)
        )
        self.draft_size = draft_size
        self.pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
        warnings.simplefilter("ignore", UserWarning)  # Pillow's noise; real failures come back as skips

    def _prepare(self, path: str, size: int, known_hash: str) -> Prepared:
        # Read whole: the same bytes are hashed and decoded, from a mount or an object store.
        job = FileJob(FileEntry(path, size, 0, False), known_hash or None)
        return prepare_file(job, self.encoder.preprocess_for_index, self.draft_size, read_whole=True)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["path"])
        args = (
            [str(p) for p in batch["path"]],
            [int(s) for s in batch["size"]],
            [str(h) for h in batch["hash"]],
        )
        prepared = list(self.pool.map(self._prepare, *args) if self.pool else map(self._prepare, *args))
        infos = [p.info for p in prepared]
        vectors = np.zeros((n, self.encoder.dim), np.float32)
        encoded = [i for i, p in enumerate(prepared) if p.pixels is not None]
        if encoded:
            pixels = [p.pixels for p in prepared if p.pixels is not None]
            vectors[encoded] = self.encoder.encode_pixels(np.stack(pixels))
        return {
            "path": np.array(args[0], dtype=object),
            "hash": np.array([p.content_hash or "" for p in prepared], dtype=object),
            "width": np.array([i.width if i else -1 for i in infos], np.int64),
            "height": np.array([i.height if i else -1 for i in infos], np.int64),
            "format": np.array([(i.format or "") if i else "" for i in infos], dtype=object),
            "taken_at": np.array([(i.taken_at or "") if i else "" for i in infos], dtype=object),
            "skip": np.array([p.skip.reason if p.skip else "" for p in prepared], dtype=object),
            "recorded": np.array([p.skip.recorded if p.skip else True for p in prepared], bool),
            "vector": vectors,
        }


# -- on the driver -----------------------------------------------------------------------------


def connect(address: str | None) -> bool:
    """ray.init for `address`: None starts a local instance; "auto", "ray://host:port" or a GCS
    "host:port" joins a running cluster. True when this call connected (and should disconnect)."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    import logging

    # Ray Data's progress lines and notices are not pixgrep's output; its errors still surface.
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    _check_reachable(address)
    # The driver's C++ core prints notices (constructor arguments kept for actor restarts, ...)
    # straight to stderr; failures that matter reach pixgrep as exceptions anyway.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    # A local instance, or a cluster on this machine's loopback, keeps the driver on loopback too:
    # Ray would otherwise register it under the machine's network address.
    local = address is None or address.split("://")[-1].split(":")[0] in ("127.0.0.1", "localhost")
    extra = {"_node_ip_address": "127.0.0.1"} if local else {}
    try:
        ray.init(
            address=address, log_to_driver=False, logging_level="ERROR", include_dashboard=False, **extra
        )
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = address or "a local instance"
        raise PixgrepError(f"cannot start or reach Ray ({where}): {str(exc).splitlines()[0]}") from None
    return True


def _check_reachable(address: str | None) -> None:
    """A GCS host:port that nothing listens on fails here, in a second: ray.init would retry for minutes."""
    if not address or "://" in address or address == "auto" or ":" not in address:
        return
    import socket

    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            return
    except ValueError:
        raise PixgrepError(f"--ray {address}: not HOST:PORT, 'auto' or ray://HOST:PORT") from None
    except OSError as exc:
        raise PixgrepError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


def actor_plan(ray: Any, requested: int | None = None) -> tuple[int, dict[str, float], bool, int]:
    """(actors, resources per actor, GPU?, decode threads per actor) from what the cluster offers:
    one actor per GPU when it has GPUs, with the cluster's cores shared out among them for
    decoding, else one per CPU core. Each CPU actor asks for half a core, so an actor of a lost node
    can restart on a surviving one instead of waiting for a core that never frees."""
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
    if gpus:
        share = max(1, cpus // gpus)
        return requested or gpus, {"num_gpus": 1, "num_cpus": share}, True, share
    if cpus < 1:
        raise PixgrepError("the Ray cluster offers no CPU or GPU to run the model on")
    return requested or cpus, {"num_cpus": 0.5}, False, 1


def _triage(plan: IndexPlan, jobs: Sequence[FileJob]) -> tuple[list[FileJob], list[FileJob]]:
    """Split the jobs into (rename candidates to hash here, jobs for the cluster).

    A rename keeps size and mtime: a new path whose (size, mtime) matches a row whose file is gone
    is hashed on the driver, and reuses the vector when the content matches. Files the catalog
    already has a hash for (a new model) go to the cluster with it. Object-store URIs always go
    to the cluster: a "rename" there is a copy with a new mtime, and reading them here is the I/O
    the cluster is for.
    """
    seen = {e.path for e in plan.entries}
    gone = {(r.size, r.mtime_ns) for p, r in plan.stored.items() if p not in seen and not os.path.lexists(p)}
    local, remote = [], []
    for job in jobs:
        candidate = (job.entry.size, job.entry.mtime_ns) in gone and not is_uri(job.entry.path)
        if job.content_hash is None and candidate:
            local.append(job)
        else:
            remote.append(job)
    return local, remote


def _hash_locally(job: FileJob, known: KnownVectors) -> Prepared | FileJob:
    """The reuse (or skip) record of a rename candidate whose content has a vector, else the job
    with its hash, for the cluster."""
    hashed = read_and_hash(job)
    if isinstance(hashed, Skip):
        return Prepared(job.entry, None, skip=hashed)
    digest = hashed[0]
    if digest not in known:
        return FileJob(job.entry, digest)
    # Only the header is read for a stored vector: no preprocess, no draft decode.
    return prepare_file(FileJob(job.entry, digest), _no_pixels, 0, has_vector=lambda _: True)


def _no_pixels(_image: Any) -> Any:
    raise AssertionError("a file whose vector is stored is never preprocessed")


def _results_of(
    batch: dict[str, np.ndarray], entries: dict[str, FileEntry]
) -> list[tuple[Prepared, np.ndarray]]:
    """The actors' columns back into Prepared records (the driver's FileEntry for each path)."""
    pairs = []
    for i, path in enumerate(batch["path"]):
        reason = str(batch["skip"][i])
        info = None
        if batch["width"][i] >= 0:
            info = ImageInfo(
                int(batch["width"][i]),
                int(batch["height"][i]),
                str(batch["format"][i]) or None,
                str(batch["taken_at"][i]) or None,
            )
        result = Prepared(
            entries[str(path)],
            str(batch["hash"][i]) or None,
            info=info,
            skip=Skip(reason, recorded=bool(batch["recorded"][i])) if reason else None,
        )
        pairs.append((result, np.asarray(batch["vector"][i], np.float32)))
    return pairs


def index_roots_ray(
    db: CatalogDB,
    encoder: Encoder,
    roots: Sequence[Path | str],
    *,
    address: str | None = None,
    exclude: Sequence[str] = (),
    include_hidden: bool = False,
    progress: bool | Callable[[IndexSummary], None] = False,
    batch_size: int = 32,
    actors: int | None = None,
    on_warning: Warn | None = None,
) -> IndexSummary:
    """index_roots with the model on a Ray cluster; the same catalog rows, the same summary."""
    folder = getattr(getattr(encoder, "folder", None), "path", None)
    if folder is None:
        raise PixgrepError("indexing on Ray needs a model folder (an ONNX model), not this encoder")
    ray = require_ray()
    started = time.monotonic()
    summary = IndexSummary()
    ticker = Progress(progress, summary)
    warn = ticker.warn(on_warning or default_warn)
    with writing(db, warn):
        return _index_on_ray(
            db,
            encoder,
            ray,
            str(folder),
            roots,
            address,
            exclude,
            include_hidden,
            batch_size,
            actors,
            summary,
            ticker,
            warn,
            started,
        )


def _index_on_ray(
    db: CatalogDB,
    encoder: Encoder,
    ray: Any,
    folder: str,
    roots: Sequence[Path | str],
    address: str | None,
    exclude: Sequence[str],
    include_hidden: bool,
    batch_size: int,
    actors: int | None,
    summary: IndexSummary,
    ticker: Progress,
    warn: Warn,
    started: float,
) -> IndexSummary:
    model = encoder.model_id
    # The walk (mounted folders) and listing (object-store prefixes) and the diff: a local run's.
    plan = plan_index(db, model, roots, summary, warn, exclude=exclude, include_hidden=include_hidden)
    known = plan.known
    writer = BatchWriter(db, model, summary, ticker, started, known.lock)
    ticker.start(len(plan.jobs))

    def commit(results: list[Prepared], vectors: dict[str, np.ndarray]) -> None:
        for r in results:
            ticker.step()
            if r.skip is not None:
                warn(r.entry.path, r.skip.reason)
        writer.commit(results, vectors)

    try:
        # 1. Renames: hashed here, never sent to the cluster.
        candidates, remote = _triage(plan, plan.jobs)
        reused: list[Prepared] = []
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="pixgrep-hash") as pool:
            for outcome in pool.map(lambda j: _hash_locally(j, known), candidates):
                if isinstance(outcome, FileJob):
                    remote.append(outcome)
                    continue
                reused.append(outcome)
                if len(reused) >= MAX_ROWS_PER_BATCH:
                    commit(reused, {})
                    reused = []
        if reused:
            commit(reused, {})

        # 2. Everything else through the cluster, committed batch by batch as results stream back.
        if remote:
            _run_on_cluster(ray, remote, folder, encoder, known, address, batch_size, actors, commit)
    except BaseException:
        ticker.abort()
        raise

    finish_index(db, plan, summary, writer.committed)
    walked = [f for f in plan.folders if not is_uri(f)]
    if walked:  # photo metadata (GPS, camera, keywords) from headers, as a local run does
        from pixgrep.catalog.metadata import refresh_under

        refresh_under(db, walked, on_warning=warn)
    summary.seconds = time.monotonic() - started
    ticker.refresh()
    ticker.close()
    return summary


def _run_on_cluster(
    ray: Any,
    jobs: list[FileJob],
    folder: str,
    encoder: Encoder,
    known: KnownVectors,
    address: str | None,
    batch_size: int,
    actors: int | None,
    commit: Callable[[list[Prepared], dict[str, np.ndarray]], None],
) -> None:
    connected = connect(address)
    try:
        _stream(ray, jobs, folder, encoder, known, batch_size, actors, commit)
    finally:
        if connected:
            ray.shutdown()


def _stream(
    ray: Any,
    jobs: list[FileJob],
    folder: str,
    encoder: Encoder,
    known: KnownVectors,
    batch_size: int,
    actors: int | None,
    commit: Callable[[list[Prepared], dict[str, np.ndarray]], None],
) -> None:
    count, resources, gpu, threads = actor_plan(ray, actors)
    entries = {job.entry.path: job.entry for job in jobs}
    items = [{"path": j.entry.path, "size": j.entry.size, "hash": j.content_hash or ""} for j in jobs]
    # About one block per batch (capped): small blocks spread over the actors and lose little when a
    # node goes; the cap keeps the driver's bookkeeping small on millions of files.
    blocks = max(count, min(math.ceil(len(items) / batch_size), 50 * count))
    dataset = ray.data.from_items(items, override_num_blocks=min(blocks, len(items)))
    draft = DRAFT_FACTOR * max(encoder.image_size)
    encoded = dataset.map_batches(
        EncodeActor,
        fn_constructor_kwargs={
            "model_folder": folder,
            "model_id": encoder.model_id,
            "draft_size": draft,
            "use_gpu": gpu,
            "threads": threads,
            # Only a run that reads object storage hands the driver's settings to the actors.
            "storage_env": object_store_env() if any(is_uri(path) for path in entries) else {},
        },
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=count),  # Ray Data spreads the actors over the nodes
        **resources,
    )
    batches = iter(encoded.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2))
    try:
        _consume(batches, entries, known, commit)
    finally:
        _stop_streaming(batches)


def _stop_streaming(batches: Any, timeout: float = 30.0) -> None:
    """Stop Ray Data's threads before the caller's ray.shutdown().

    An interrupt raised in the loop body (a commit, mostly) leaves the batch generator suspended, its
    executor and prefetch threads still calling into Ray; a call into a shut-down Ray ends the
    process at once with status 1, or starts a local Ray instance. Closing the generator shuts the
    executor down, but neither waits long for those threads (2 s for the executor, not at all for
    the prefetch workers): join them here, bounded. Ray Data's process-wide pollers never end and
    touch no Ray state, so only the per-iteration threads are waited for.
    """
    batches.close()
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        # Known by class and name (Ray Data's internals, as of Ray 2.60): a Ray that renames them
        # is only not waited for, as before.
        if type(thread).__name__ == "StreamingExecutor" or thread.name == "iter_threaded":
            thread.join(max(0.0, deadline - time.monotonic()))


def _consume(
    batches: Any,
    entries: dict[str, FileEntry],
    known: KnownVectors,
    commit: Callable[[list[Prepared], dict[str, np.ndarray]], None],
) -> None:
    """Commit the actors' batches as they stream back (a retried block's rows only once)."""
    done: set[str] = set()
    pending: set[str] = set()
    for batch in batches:
        results: list[Prepared] = []
        vectors: dict[str, np.ndarray] = {}
        pairs = _results_of(batch, entries)
        known.learn(r.content_hash for r, _ in pairs if r.skip is None and r.content_hash)  # one query
        for result, vector in pairs:
            if result.entry.path in done:  # a retried block delivered twice: stored already
                continue
            done.add(result.entry.path)
            digest = result.content_hash
            if result.skip is None and digest is not None and digest not in known and digest not in pending:
                vectors[digest] = vector
                pending.add(digest)
            results.append(result)
        commit(results, vectors)
        known.update(vectors)
        pending.clear()
