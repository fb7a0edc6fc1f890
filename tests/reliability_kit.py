"""Helpers for the fault and bad-input tests (tests/test_reliability_*.py): the real `pixgrep`
command in a subprocess, a real `pixgrep serve` on a free local port, and odd test files."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from ports import free_port


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_interruptible_cli(*args: object) -> subprocess.Popen:
    """`python -m pixgrep.cli ARGS` running in the background (pipes, text, one BLAS thread, no
    $PIXGREP_CATALOG) for a test to signal. It starts with SIGINT at its default: a shell starts
    background jobs with SIGINT ignored, children inherit that, and a Python started so never
    raises KeyboardInterrupt (CI's torch-free run, .ci/core, is such a job)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PIXGREP_CATALOG", None)
    command = [sys.executable, "-m", "pixgrep.cli", *map(str, args)]
    pipe = subprocess.PIPE
    return subprocess.Popen(command, env=env, stdout=pipe, stderr=pipe, text=True, preexec_fn=_default_sigint)


# File names as old disks, camera cards and network shares hold them: not UTF-8.
ODD_NAMES = (
    b"caf\xe9.jpg",  # Latin-1
    "\u65e5\u672c\u306e\u5199\u771f".encode("shift_jis") + b".jpg",  # Shift-JIS
    b"bad\xff\xfe\x80.png",  # bytes no encoding produces
)


def cli_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("PIXGREP_CATALOG", "PIXGREP_TOKEN", "PIXGREP_MODEL")
    }
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    return env


def pixgrep(*args: str | bytes | os.PathLike, timeout: float = 300, text: bool = True, **kwargs):
    """Run `python -m pixgrep.cli ARGS` and return the CompletedProcess (never raises on status)."""
    return subprocess.run(
        [sys.executable, "-m", "pixgrep.cli", *map(os.fsdecode, args)],
        capture_output=True,
        text=text,
        errors="surrogateescape" if text else None,  # output may name files that are not UTF-8
        env=kwargs.pop("env", None) or cli_env(),
        timeout=timeout,
        **kwargs,
    )


def run_cli(*args: object, check_rc: int | None = 0, cwd=None, timeout: float = 600):
    """`python -m pixgrep.cli ARGS` with this environment (warnings off, one BLAS thread);
    asserts the exit status unless check_rc is None."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-m", "pixgrep.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
    )
    if check_rc is not None:
        assert done.returncode == check_rc, done.stderr + done.stdout
    return done


def one_line_error(
    done: subprocess.CompletedProcess, *needles: str, status: int = 2, alone: bool = False
) -> str:
    """The run failed with exactly one `pixgrep: error:` line (holding every needle) and no
    traceback; alone: and nothing else on stderr. Returns the line."""
    stderr = done.stderr if isinstance(done.stderr, str) else done.stderr.decode("utf-8", "replace")
    assert done.returncode == status, (done.returncode, stderr)
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("pixgrep: error:")]
    assert len(errors) == 1, stderr
    assert not alone or stderr.strip() == errors[0], stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def make_image(path: str | bytes | os.PathLike, seed: int, size: int = 64) -> None:
    rng = np.random.default_rng(seed)
    block = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    image = Image.fromarray(block).resize((size, size), Image.Resampling.BILINEAR)
    name = os.fsencode(path)
    image.save(os.fsdecode(path), "PNG" if name.lower().endswith(b".png") else "JPEG")


def make_images(folder: Path, count: int, size: int = 64) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / f"{i:04}.png" for i in range(count)]
    for i, path in enumerate(files):
        make_image(path, 1000 + i, size)
    return files


def start_server(
    *args: str | os.PathLike, env: dict[str, str] | None = None, keep_stdout: bool = False
) -> tuple[subprocess.Popen, str]:
    """`pixgrep serve ARGS` on a free local port, once it answers; stop() gives back its output
    (stdout only with keep_stdout: the server prints little there, so the pipe never fills)."""
    import httpx

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pixgrep.cli", "serve", "--port", str(port), *map(str, args)],
        stdout=subprocess.PIPE if keep_stdout else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env or cli_env(),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url + "/indices-list", timeout=2)
            return process, url
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"server did not start: {process.stderr.read()}") from None
            time.sleep(0.1)


def stop(process: subprocess.Popen) -> tuple[str, str]:
    """Stop the server; returns what it wrote on stdout (with keep_stdout) and on stderr."""
    process.terminate()
    try:
        out, err = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate(timeout=5)
    return out or "", err or ""


def wait_for_index(http, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while (status := http.get("/api/index").json())["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    return status


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make a file or folder read-only for the duration. File modes do not bind root, so as root
    the path is bind-mounted read-only onto itself (as read-only media would be)."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    if not (_mount("--bind", str(path), str(path)) and _mount("-o", "remount,bind,ro", str(path))):
        subprocess.run(["umount", str(path)], capture_output=True)
        pytest.skip("running as root without the right to mount: cannot make a path read-only")
    try:
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


@contextlib.contextmanager
def small_disk(folder: Path, size_kb: int) -> Iterator[dict]:
    """A folder on a disk of `size_kb` KB: a tmpfs where this user may mount one (root); else a
    file size limit for the subprocess (writes past it fail with EFBIG, a "disk I/O error" to
    SQLite instead of "disk is full"). Yields the subprocess keywords to use."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0 and _mount("-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder)):
        try:
            yield {}
        finally:
            subprocess.run(["umount", str(folder)], check=True)
        return
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size_kb * 1024, size_kb * 1024))

    yield {"preexec_fn": limit}


class DripServer:
    """A local HTTP peer that answers one byte per second: after the headers (drip_headers=False)
    or from the status line on (drip_headers=True). Each connection gets its own thread."""

    def __init__(self, drip_headers: bool = False):
        import threading

        self.drip_headers = drip_headers
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/slow.jpg"
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while not self.closed:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n"
        try:
            conn.recv(65536)
            if not self.drip_headers:
                conn.sendall(head)
                head = b""
            for byte in head + b"\xff" * 100000:
                if self.closed:
                    break
                conn.sendall(bytes([byte]))
                time.sleep(1.0)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.closed = True
        self.listener.close()
