"""A file's bytes from a local path or an object-store URI (s3://, gs://, ...), through pyarrow.

The one reader for catalog paths that may be URIs: the Ray workers (catalog/ray_ingest.py), the
server's thumbnails and files (server/images.py) and the terminal previews (cli/search.py). pyarrow
is imported only when a URI is read, so local paths need no extra.

Where and as whom S3 is read: the endpoint from AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (the
variables the AWS SDKs and CLI read: MinIO, Ceph, a test server), the region from AWS_REGION or
AWS_DEFAULT_REGION (else asked from the bucket on AWS, as pyarrow's from_uri does), the credentials
from the AWS SDK's usual chain (AWS_ACCESS_KEY_ID..., ~/.aws, the instance role). Every other scheme
(gs://, abfs://, hdfs://, file://) goes to pyarrow.fs.FileSystem.from_uri with pyarrow's own rules.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

# Schemes the server reads for a catalog row: object stores and cluster file systems. A `file://`
# (or pyarrow's `local://`) URI is a local path and gets the server's link guards; others, such as
# pyarrow's in-memory `mock://` or http://, are not served.
REMOTE_SCHEMES = frozenset({"s3", "gs", "gcs", "abfs", "abfss", "hdfs", "viewfs"})

# What says where and as whom S3 is read: the Ray driver hands these to its actors, so a cluster
# reads the objects the driver listed with the driver's settings.
S3_ENV = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_EC2_METADATA_DISABLED",
)

# Bounds on one S3 request (pyarrow's defaults retry a refused connection for 6 s).
S3_CONNECT_TIMEOUT_S = 5.0
S3_REQUEST_TIMEOUT_S = 20.0
S3_ATTEMPTS = 2

READ_THREADS = 8  # reads with a deadline run here; a hung one holds a thread, never a caller


class TooLarge(OSError):
    """The file or object is bigger than the caller's cap; nothing past the header was read."""


PYARROW_HINT = "reading URIs needs pyarrow: pip install 'pixgrep[parquet]'"


def _fs() -> Any:
    """pyarrow.fs, or OSError (a file that cannot be read here) when pyarrow is not installed."""
    try:
        from pyarrow import fs
    except ImportError:
        raise OSError(PYARROW_HINT) from None
    return fs


def is_uri(path: str | os.PathLike) -> bool:
    return "://" in os.fspath(path)


def scheme_of(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else ""


def object_store_env() -> dict[str, str]:
    """The S3 settings of this process's environment (names in S3_ENV that are set)."""
    return {name: os.environ[name] for name in S3_ENV if os.environ.get(name)}


def resolve(uri: str) -> tuple[Any, str]:
    """(pyarrow FileSystem, path inside it) for a URI; OSError for one pyarrow cannot open."""
    scheme, _, rest = uri.partition("://")
    if scheme.lower() == "s3":
        settings = _s3_settings()
        return _s3_filesystem(rest.split("/", 1)[0], *settings), rest
    try:
        return _from_uri(uri)
    except ValueError as exc:  # pyarrow's ArrowInvalid: an unknown scheme, an unparsable URI
        raise OSError(f"not a location pyarrow can open: {_first_line(exc)}") from None


def _from_uri(uri: str) -> tuple[Any, str]:
    """pyarrow's own dispatch (GcsFileSystem for gs://, ...); one seam, so tests can stand in a store."""
    return _fs().FileSystem.from_uri(uri)


def local_path(uri: str) -> str | None:
    """The local path a URI names when pyarrow reads it from this machine's disk (file://), else None."""
    if scheme_of(uri) not in ("file", "local"):
        return None
    try:
        fs = _fs()
        filesystem, inner = fs.FileSystem.from_uri(uri)
    except (OSError, ValueError):  # no pyarrow here, or a URI it cannot parse: not a local path
        return None
    return inner if isinstance(filesystem, fs.LocalFileSystem) else None


def read_bytes(path: str, *, max_bytes: int | None = None, timeout: float | None = None) -> bytes:
    """The whole file at a local path or URI.

    max_bytes: TooLarge (an OSError) for anything bigger, checked from the size before reading.
    timeout: TimeoutError (an OSError) when the read has not finished in that many seconds; the
    read goes on in a pool thread until the store gives up (S3: S3_REQUEST_TIMEOUT_S per try).
    A missing file or object raises FileNotFoundError; other failures OSError.
    """
    if timeout is None:
        return _read(path, max_bytes)
    future = _pool().submit(_read, path, max_bytes)
    try:
        return future.result(timeout)
    except TimeoutError:
        future.cancel()
        raise TimeoutError(f"no answer in {timeout:g} s") from None


def _read(path: str, max_bytes: int | None) -> bytes:
    if not is_uri(path):
        with open(path, "rb") as f:
            _check_size(os.fstat(f.fileno()).st_size, max_bytes)
            return f.read()
    filesystem, inner = resolve(path)
    with filesystem.open_input_file(inner) as f:
        _check_size(f.size(), max_bytes)
        return f.read()


def _check_size(size: int, max_bytes: int | None) -> None:
    if max_bytes is not None and size > max_bytes:
        raise TooLarge(f"{size:,} bytes is over the {max_bytes:,} byte cap")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _s3_settings() -> tuple[str | None, str | None, str | None]:
    env = os.environ
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
    return endpoint, region, env.get("AWS_ACCESS_KEY_ID")


@lru_cache(maxsize=64)
def _s3_filesystem(bucket: str, endpoint: str | None, region: str | None, key_id: str | None) -> Any:
    """One S3FileSystem per bucket and settings (key_id only keys the cache: the SDK reads the
    credentials itself), with bounded timeouts and retries."""
    fs = _fs()

    if not region and not endpoint and bucket:
        region = fs.resolve_s3_region(bucket)  # a bucket outside us-east-1 is only reached in its region
    return fs.S3FileSystem(
        endpoint_override=endpoint,
        region=region or "us-east-1",
        connect_timeout=S3_CONNECT_TIMEOUT_S,
        request_timeout=S3_REQUEST_TIMEOUT_S,
        retry_strategy=fs.AwsStandardS3RetryStrategy(max_attempts=S3_ATTEMPTS),
    )


_pool_lock = threading.Lock()
_read_pool: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _read_pool
    with _pool_lock:
        if _read_pool is None:
            _read_pool = ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="pixgrep-read")
        return _read_pool
