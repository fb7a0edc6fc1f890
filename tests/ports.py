"""A free local port for a test server (the one helper: serverkit, reliability_kit and
objectstore re-export it).

The port is picked and released before the server binds it, so two test runs on one machine
could, rarely, pick the same one. CI runs the torch-free run beside the full one, so it gives the
torch-free run a range of its own in $PIXGREP_TEST_PORTS ("LOW-HIGH", below the kernel's ephemeral
range, which the full run's `bind(0)` ports come from): the two runs never share a port."""

from __future__ import annotations

import os
import random
import socket


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    reserved = os.environ.get("PIXGREP_TEST_PORTS")
    if not reserved:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    low, high = (int(part) for part in reserved.split("-"))
    for port in random.Random().sample(range(low, high + 1), min(200, high + 1 - low)):
        if _bindable(port):
            return port
    raise RuntimeError(f"no free port in $PIXGREP_TEST_PORTS={reserved}")
