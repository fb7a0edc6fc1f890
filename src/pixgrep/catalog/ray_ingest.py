"""`pixgrep index --ray`: the model runs on a Ray cluster, the catalog stays on this machine.

    driver:   walk + diff against the catalog (ingest.plan_index), exactly as a local run
              renames (a new path whose size and mtime match a row that is gone) are hashed here
              and reuse their vector: never sent to the cluster
    cluster:  a Ray Dataset of the remaining files -> map_batches over an actor pool of
              EncodeActor (one ONNX session each): read, hash, decode, preprocess, encode
    driver:   batches stream back -> ingest.BatchWriter -> one SQLite transaction per batch

An interrupt or a lost node leaves every committed batch in the catalog; the next run's diff
skips them. Workers must see the files and the model folder at the same paths as the driver (a
shared mount), or read the files through pyarrow's filesystems (s3://, gs://).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from pixgrep.catalog.db import CatalogDB
from pixgrep.catalog.ingest import (
    DRAFT_FACTOR,
    MAX_ROWS_PER_BATCH,
    BatchWriter,
    IndexPlan,
    Warn,
    _default_warn,
    _Job,
    _Progress,
    _Result,
    content_hash,
    finish_index,
    plan_index,
    writing,
)
from pixgrep.catalog.scan import FileEntry
from pixgrep.errors import PixgrepError
from pixgrep.images.decode import ImageDecodeError, ImageInfo, read_image_info
from pixgrep.images.storage import is_uri, object_store_env, read_bytes, resolve
from pixgrep.models.base import Encoder
from pixgrep.records import IndexSummary

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
    """One Ray actor: an ONNX session of the model folder, decoding and encoding whole batches.

    Returns one row per input: the content hash, the header facts, the vector (zeros where the
    file failed) and the error, like the local pipeline's results. `threads` > 1 decodes in a
    pool (Pillow releases the GIL), so a GPU actor is not held back by one core's decoding.
    `storage_env`: the driver's object-store settings (images/storage.S3_ENV), so the actors read
    the objects the driver listed from the same endpoint, as the same user.
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
        from pixgrep.models.folder import open_folder
        from pixgrep.models.onnx_encoder import OnnxEncoder

        os.environ.update(storage_env or {})

        self.encoder = OnnxEncoder(open_folder(model_folder), model_id=model_id)
        if use_gpu:
            _use_cuda(self.encoder)
        self.draft_size = draft_size
        self.pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
        warnings.simplefilter("ignore", UserWarning)  # Pillow's noise; real failures come back as errors

    def _prepare(
        self, path: str, size: int, known_hash: str
    ) -> tuple[str, ImageInfo | None, np.ndarray | None, str]:
        """(content hash, header facts, pixels, error) of one file; never raises."""
        from pixgrep.images.decode import decode_file

        info = None
        try:
            data = read_bytes(path)
            digest = known_hash or hash_bytes(data, size)
        except FileNotFoundError:
            return known_hash, None, None, "!vanished while indexing"  # "!": not recorded, retried next run
        except OSError as exc:
            return known_hash, None, None, f"!cannot read: {exc.strerror or exc}"
        try:
            image, info = decode_file(data, draft_size=self.draft_size)
            return digest, info, np.asarray(self.encoder.preprocess_for_index(image), dtype=np.float32), ""
        except ImageDecodeError as exc:
            return digest, None, None, str(exc)
        except Exception as exc:  # an odd mode that preprocess chokes on must not stop the run
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return digest, info, None, f"cannot prepare for the model: {reason}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["path"])
        args = (
            [str(p) for p in batch["path"]],
            [int(s) for s in batch["size"]],
            [str(h) for h in batch["hash"]],
        )
        prepared = list(self.pool.map(self._prepare, *args) if self.pool else map(self._prepare, *args))
        infos = [info if not error else None for _, info, _, error in prepared]
        vectors = np.zeros((n, self.encoder.dim), np.float32)
        encoded = [i for i, p in enumerate(prepared) if p[2] is not None]
        pixels = [p[2] for p in prepared if p[2] is not None]
        if pixels:
            vectors[encoded] = self.encoder.encode_pixels(np.stack(pixels))
        return {
            "path": np.array(args[0], dtype=object),
            "hash": np.array([p[0] for p in prepared], dtype=object),
            "width": np.array([i.width if i else -1 for i in infos], np.int64),
            "height": np.array([i.height if i else -1 for i in infos], np.int64),
            "format": np.array([(i.format or "") if i else "" for i in infos], dtype=object),
            "taken_at": np.array([(i.taken_at or "") if i else "" for i in infos], dtype=object),
            "error": np.array([p[3] for p in prepared], dtype=object),
            "vector": vectors,
        }


def hash_bytes(data: bytes, size: int) -> str:
    """ingest.content_hash over bytes already read (same digest for the same file)."""
    import hashlib

    from pixgrep.catalog.ingest import HEAD_BYTES, TAIL_BYTES

    digest = hashlib.blake2b(size.to_bytes(8, "little"), digest_size=16)
    if size <= HEAD_BYTES + TAIL_BYTES:
        digest.update(data)
    else:
        digest.update(data[:HEAD_BYTES])
        digest.update(data[size - TAIL_BYTES : size])
    return digest.hexdigest()


def _use_cuda(encoder: Any) -> None:
    """Create the image tower's session with the CUDA provider (onnxruntime-gpu), CPU as fallback."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return
    tower = encoder.visual  # builds the CPU session, then swaps in a CUDA one for the same graph
    tower.session = ort.InferenceSession(
        str(encoder.folder.visual_onnx), providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
    )


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


def _plan_uris(
    db: CatalogDB,
    model: str,
    roots: Sequence[str],
    summary: IndexSummary,
    exclude: Sequence[str],
    hidden: bool,
) -> IndexPlan:
    """plan_index for object-store roots: the same diff, against rows stored under the URI prefix."""
    entries: list[FileEntry] = []
    stored = {}
    for root in roots:
        entries += scan_uri(root, exclude=exclude, include_hidden=hidden)
        stored.update(db.images_under(root.rstrip("/")))
        stored.update(db.images_by_path([root.rstrip("/")]))
    summary.found += len(entries)
    known = db.hashes_with_vectors(model)
    jobs = []
    for entry in entries:
        row = stored.get(entry.path)
        if row is not None and row.size == entry.size and row.mtime_ns == entry.mtime_ns:
            if row.error is not None:
                summary.skipped += 1
                continue
            if row.content_hash in known:
                continue
            jobs.append(_Job(entry, row.content_hash))
        else:
            jobs.append(_Job(entry, None))
    return IndexPlan(list(roots), entries, stored, known, jobs)


def _triage(plan: IndexPlan, jobs: Sequence[_Job]) -> tuple[list[_Job], list[_Job]]:
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


def _hash_locally(job: _Job, known: set[str]) -> tuple[_Result | None, _Job]:
    """A reuse result for a rename candidate whose content has a vector, else the job (with its hash)."""
    entry = job.entry
    try:
        digest = content_hash(entry.path, entry.size)
    except FileNotFoundError:
        return _Result(entry, None, error="vanished while indexing", record=False), job
    except OSError as exc:
        return _Result(entry, None, error=f"cannot read: {exc.strerror or exc}", record=False), job
    if digest not in known:
        return None, _Job(entry, digest)
    try:
        return _Result(entry, digest, info=read_image_info(entry.path)), job
    except ImageDecodeError:
        return _Result(entry, digest), job


def _results_of(
    batch: dict[str, np.ndarray], entries: dict[str, FileEntry]
) -> list[tuple[_Result, np.ndarray]]:
    pairs = []
    for i, path in enumerate(batch["path"]):
        error = str(batch["error"][i]) or None
        record = not (error or "").startswith("!")
        info = None
        if batch["width"][i] >= 0:
            info = ImageInfo(
                int(batch["width"][i]),
                int(batch["height"][i]),
                str(batch["format"][i]) or None,
                str(batch["taken_at"][i]) or None,
            )
        result = _Result(
            entries[str(path)],
            str(batch["hash"][i]) or None,
            info=info,
            error=error.lstrip("!") if error else None,
            record=record,
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
    ticker = _Progress(progress, summary)
    warn = ticker.warn(on_warning or _default_warn)
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
    ticker: _Progress,
    warn: Warn,
    started: float,
) -> IndexSummary:
    model = encoder.model_id
    local = [Path(r) for r in roots if not is_uri(r)]
    uris = [str(r) for r in roots if is_uri(r)]
    plan = _plan_uris(db, model, uris, summary, exclude, include_hidden)
    if local:  # the walk of mounted folders is a local run's, exactly
        mounted = plan_index(db, model, local, summary, warn, exclude=exclude, include_hidden=include_hidden)
        plan = IndexPlan(
            mounted.folders + plan.folders,
            plan.entries + mounted.entries,
            {**plan.stored, **mounted.stored},
            mounted.known,
            plan.jobs + mounted.jobs,
        )
        summary.found = len(plan.entries)
    writer = BatchWriter(db, model, summary, ticker, started)
    known = plan.known
    ticker.start(len(plan.jobs))

    def commit(results: list[_Result], vectors: dict[str, np.ndarray]) -> None:
        for r in results:
            ticker.step()
            if r.error is not None:
                warn(r.entry.path, r.error)
        writer.commit(results, vectors)

    try:
        # 1. Renames: hashed here, never sent to the cluster.
        candidates, remote = _triage(plan, plan.jobs)
        reused: list[_Result] = []
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="pixgrep-hash") as pool:
            for result, job in pool.map(lambda j: _hash_locally(j, known), candidates):
                if result is None:
                    remote.append(job)
                    continue
                reused.append(result)
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
    jobs: list[_Job],
    folder: str,
    encoder: Encoder,
    known: set[str],
    address: str | None,
    batch_size: int,
    actors: int | None,
    commit: Callable[[list[_Result], dict[str, np.ndarray]], None],
) -> None:
    connected = connect(address)
    try:
        _stream(ray, jobs, folder, encoder, known, batch_size, actors, commit)
    finally:
        if connected:
            ray.shutdown()


def _stream(
    ray: Any,
    jobs: list[_Job],
    folder: str,
    encoder: Encoder,
    known: set[str],
    batch_size: int,
    actors: int | None,
    commit: Callable[[list[_Result], dict[str, np.ndarray]], None],
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
    done: set[str] = set()
    pending: set[str] = set()
    for batch in encoded.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2):
        results: list[_Result] = []
        vectors: dict[str, np.ndarray] = {}
        for result, vector in _results_of(batch, entries):
            if result.entry.path in done:  # a retried block delivered twice: stored already
                continue
            done.add(result.entry.path)
            digest = result.content_hash
            if result.error is None and digest is not None and digest not in known and digest not in pending:
                vectors[digest] = vector
                pending.add(digest)
            results.append(result)
        commit(results, vectors)
        known.update(vectors)
        pending.clear()
