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


@pytest.fixture
def cli_logging():
    """Library log records shown as the command shows them (`pixgrep: warning: ...` on stderr)."""
    from pixgrep.cli.logs import configure_logging, remove_logging

    handler = configure_logging(verbose=False)
    yield
    remove_logging(handler)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A reduced open_clip ViT (48 px, 2+2 layers, embed 32), random weights from a fixed seed,
    exported once per session to the pixgrep model folder format. Use with `--model <dir>`.

    Building it needs torch and open_clip. Without them (the torch-free CI run) the build a full
    run left in $PIXGREP_TEST_CACHE is reused; with PIXGREP_TEST_REUSE_ONLY=1 its absence fails
    the test instead of skipping it, so CI cannot pass by skipping."""
    import os

    import tiny_model

    base = os.environ.get("PIXGREP_TEST_CACHE")
    if tiny_model.can_build():
        return tiny_model.build(Path(base) if base else tmp_path_factory.mktemp("models"))
    cached = tiny_model.last_build(Path(base)) if base else None
    if cached is None:
        reason = "the tiny test model is built with torch + open_clip (pixgrep[export]), not installed here, "
        reason += "and $PIXGREP_TEST_CACHE holds no build of it from a full run"
        if os.environ.get("PIXGREP_TEST_REUSE_ONLY") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return cached


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium for one browser test module (browserfixtures.py); every test opens its own
    context in it, so no cache, cookie or storage passes between tests. Not one per session: while
    Playwright's sync API is started it marks an asyncio loop as running in the main thread, so any
    later test calling asyncio.run() there would fail."""
    import browserfixtures

    with browserfixtures.launch() as chromium:
        yield chromium


@pytest.fixture
def page(browser):
    """A 1280x900 page in a fresh context; the test fails if the page raised a JavaScript error."""
    import browserfixtures

    context, page, errors = browserfixtures.new_page(browser)
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
