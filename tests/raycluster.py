"""A real multi-node Ray cluster on this machine, for tests and benchmarks/bench_ray.py.

Every node is a `ray start --block` process of its own (so stopping or killing one node touches
only the processes it started, never another user's Ray), all ports are picked free and set
explicitly, outside Ray's default worker port range 10002-19999, and the session files live in a
temporary folder of ours. The head offers no CPU: the model runs only on the worker nodes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


# Every port and worker-port range handed out in this process: Ray refuses a node whose ports
# overlap (one node's node-manager port inside another's worker range, for instance).
_TAKEN: set[int] = set()
WORKER_PORTS = 200  # ports in each node's worker range


def _clashes(port: int) -> bool:
    return 10002 <= port <= 19999 or port in _TAKEN


def _free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not _clashes(port):
            _TAKEN.add(port)
            return port


def _free_range(size: int) -> int:
    """The first port of `size` consecutive ports that clash with nothing handed out so far."""
    while True:
        low = _free_port()
        span = range(low + 1, low + size)
        if low + size <= 65000 and not any(_clashes(p) for p in span):
            _TAKEN.update(span)
            return low


class Node:
    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        self.log = log
        self.process = subprocess.Popen(
            [RAY, "start", "--block", "--disable-usage-stats", *args],
            env=env,
            stdout=open(log, "wb"),  # noqa: SIM115 (closed with the process)
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: raylet, workers, agents
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the node's whole process group (raylet, its workers and agents)."""
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        if self.process.poll() is None:
            # SIGTERM to `ray start --block` alone: it then stops the node's processes itself, in
            # about 2 s (the same signal to its whole group made the head wait out the grace every
            # time). The grace is short: the cluster is thrown away, and a head that lost a worker
            # in test_ray_index still hung past 20 s (2026-12-01).
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.process.wait(timeout=10)
        self.kill(signal.SIGKILL)  # anything of the group still alive


class Cluster:
    """A head (no CPUs) plus `workers` nodes of one CPU each; `address` is the GCS host:port."""

    def __init__(self, workers: int = 2, env: dict[str, str] | None = None):
        self.temp = Path(tempfile.mkdtemp(prefix="pxray-", dir="/tmp"))  # short: unix socket paths
        # Token authentication off, whatever ~/.ray holds: Ray (2.60 here) turns it on for a head
        # started while ~/.ray/auth_token exists (any local ray.init() on this machine writes one),
        # but a client given an explicit address (pixgrep's drivers, wait_for_nodes) never sends
        # the token, so nothing could connect to the cluster.
        self.env = {**os.environ, **(env or {}), "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[Node] = []
        head = [
            "--head",
            "--node-ip-address",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--num-cpus",
            "0",
            "--include-dashboard",
            "false",
            "--temp-dir",
            str(self.temp),
            *self._ports(),
        ]
        self.nodes.append(Node(head, self.env, self.temp / "head.log"))
        try:
            self.wait_for_nodes(1)
            for _ in range(workers):
                self.add_worker()
        except BaseException:
            self.stop()  # a fixture whose setup fails is never torn down: no nodes left running
            raise

    def _ports(self) -> list[str]:
        low = _free_range(WORKER_PORTS)  # first, so the single ports below are picked outside it
        return [
            "--node-manager-port",
            str(_free_port()),
            "--object-manager-port",
            str(_free_port()),
            "--metrics-export-port",
            str(_free_port()),
            "--dashboard-agent-listen-port",
            str(_free_port()),
            "--dashboard-agent-grpc-port",
            str(_free_port()),
            "--runtime-env-agent-port",
            str(_free_port()),
            "--min-worker-port",
            str(low),
            "--max-worker-port",
            str(low + WORKER_PORTS - 1),
        ]

    def add_worker(self) -> Node:
        args = [
            "--address",
            self.address,
            "--num-cpus",
            "1",
            "--node-ip-address",
            "127.0.0.1",
            "--temp-dir",
            str(self.temp),
            *self._ports(),
        ]
        node = Node(args, self.env, self.temp / f"worker-{len(self.nodes)}.log")
        self.nodes.append(node)
        self.wait_for_nodes(len(self.nodes))
        return node

    @property
    def workers(self) -> list[Node]:
        return self.nodes[1:]

    def wait_for_nodes(self, alive: int, timeout: float = 90) -> None:
        """Until the GCS lists `alive` live nodes (asked through the `ray` CLI, not this process)."""
        deadline = time.monotonic() + timeout
        script = (
            "import ray,sys; ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False);"
            "print(sum(n['Alive'] for n in ray.nodes()))"
        )
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.process.poll() is not None:
                    raise RuntimeError(f"ray node exited: {node.log.read_text()[-2000:]}")
            done = subprocess.run(
                [sys.executable, "-c", script, self.address], capture_output=True, text=True, env=self.env
            )
            if done.returncode == 0 and done.stdout.strip().splitlines()[-1:] == [str(alive)]:
                return
            time.sleep(1)
        raise RuntimeError(f"the Ray cluster did not reach {alive} nodes in {timeout} s")

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()
        shutil.rmtree(self.temp, ignore_errors=True)
