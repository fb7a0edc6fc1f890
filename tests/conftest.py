"""Shared fixtures. Real data lives in ../shared/data beside the project; tests skip without it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).parent))  # for `from fakes import FakeEncoder`


def shared_data(name: str) -> Path:
    """Path to a folder of ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"needs ../shared/data/{name} (real test data beside the project), absent here")
    return path


@pytest.fixture
def fake_encoder():
    from fakes import FakeEncoder

    return FakeEncoder()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A reduced open_clip ViT (48 px, 2+2 layers, embed 32), random weights from a fixed seed,
    exported once per session to the pixgrep model folder format. Use with `--model <dir>`."""
    import os

    from tiny_model import build

    base = os.environ.get("PIXGREP_TEST_CACHE")
    return build(Path(base) if base else tmp_path_factory.mktemp("models"))
