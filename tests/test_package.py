"""The package's face: `help(pixgrep)` shows the API, and the command starts without numpy."""

from __future__ import annotations

import pydoc
import subprocess
import sys

import pixgrep


def test_help_lists_the_api():
    text = pydoc.render_doc(pixgrep, renderer=pydoc.plaintext)
    for name in ("class Catalog", "open_catalog(", "class SearchResult", "class PixgrepError"):
        assert name in text, name
    assert {"Catalog", "open_catalog", "SearchResult", "PixgrepError"} <= set(dir(pixgrep))


def test_the_command_imports_neither_numpy_nor_logging_before_it_runs():
    code = (
        "import sys, pixgrep, pixgrep.cli; pixgrep.cli.build_parser(); "
        "print(sorted(m for m in ('numpy', 'logging', 'PIL', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
