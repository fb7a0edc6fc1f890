"""A local S3 server for tests: moto's, on 127.0.0.1 and a free port, with credentials of its own
set in this process's environment while it runs (pixgrep reads S3 through pyarrow with the
AWS_* variables, images/storage.py). Nothing is written outside the server's memory."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ports import free_port

# Variables of the machine's own environment that would point pixgrep somewhere else.
FOREIGN = ("AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN", "AWS_PROFILE")


@dataclass
class S3Server:
    endpoint: str
    filesystem: Any  # a pyarrow S3FileSystem that may create buckets

    def upload(self, files: Sequence[Path], prefix: str) -> list[str]:
        """Put `files` under s3://PREFIX/<name> (the bucket is PREFIX's first part); their URIs."""
        bucket = prefix.split("/", 1)[0]
        self.filesystem.create_dir(bucket)
        uris = []
        for path in files:
            key = f"{prefix.rstrip('/')}/{path.name}"
            with self.filesystem.open_output_stream(key) as out:
                out.write(path.read_bytes())
            uris.append(f"s3://{key}")
        return uris

    def delete(self, uri: str) -> None:
        self.filesystem.delete_file(uri.removeprefix("s3://"))


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server, and AWS_ENDPOINT_URL & co. pointing at it until the block ends."""
    pytest.importorskip("moto.server", reason="needs moto[server] (in the test extra)")
    from moto.server import ThreadedMotoServer
    from pyarrow import fs

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "pixgrep-test",
        "AWS_SECRET_ACCESS_KEY": "pixgrep-test",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",  # no instance-metadata probe for credentials
    }
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name in FOREIGN:
                patch.delenv(name, raising=False)
            for name, value in env.items():
                patch.setenv(name, value)
            patch.setattr(logging.getLogger("werkzeug"), "level", logging.WARNING)  # a line per request
            admin = fs.S3FileSystem(
                endpoint_override=endpoint,
                region="us-east-1",
                access_key="pixgrep-test",
                secret_key="pixgrep-test",
                allow_bucket_creation=True,
            )
            yield S3Server(endpoint, admin)
    finally:
        server.stop()
