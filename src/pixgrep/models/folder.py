"""A model folder on disk (docs/model-format.md): check it is complete, read its configs, name it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pixgrep.errors import PixgrepError

REQUIRED = (
    "config.json",
    "visual/model.onnx",
    "visual/preprocess_cfg.json",
    "textual/model.onnx",
    "textual/tokenizer.json",
)


@dataclass
class ModelFolder:
    path: Path
    config: dict = field(default_factory=dict)
    preprocess_cfg: dict = field(default_factory=dict)

    @property
    def visual_onnx(self) -> Path:
        return self.path / "visual" / "model.onnx"

    @property
    def textual_onnx(self) -> Path:
        return self.path / "textual" / "model.onnx"

    @property
    def tokenizer_json(self) -> Path:
        return self.path / "textual" / "tokenizer.json"

    @property
    def tokenizer_config(self) -> Path:
        return self.path / "textual" / "tokenizer_config.json"

    def fingerprint(self) -> str:
        """ "<folder name>@<8 hex>": hashed from config.json's bytes and the name and size of every
        file of visual/ and textual/ (ONNX graphs, external weights, tokenizer), so vectors stored
        in a catalog stay keyed to this exact model without reading hundreds of MB."""
        digest = hashlib.sha256((self.path / "config.json").read_bytes())
        for sub in ("visual", "textual"):
            for file in sorted((self.path / sub).rglob("*")):
                if file.is_file() and not file.name.startswith("."):
                    digest.update(
                        f"\0{file.relative_to(self.path).as_posix()}\0{file.stat().st_size}".encode()
                    )
        return f"{self.path.resolve().name}@{digest.hexdigest()[:8]}"


def open_folder(path: str | Path) -> ModelFolder:
    """Check that `path` is a complete model folder and read its JSON files; PixgrepError if not."""
    path = Path(path).expanduser()
    if not path.exists():
        raise PixgrepError(f"model folder {path} does not exist")
    if not path.is_dir():
        raise PixgrepError(f"{path} is not a model folder (a folder with config.json, visual/, textual/)")
    missing = [name for name in REQUIRED if not (path / name).is_file()]
    if missing:
        raise PixgrepError(
            f"model folder {path} is missing {', '.join(missing)} (layout: docs/model-format.md)"
        )
    return ModelFolder(
        path=path,
        config=_read_json(path / "config.json"),
        preprocess_cfg=_read_json(path / "visual" / "preprocess_cfg.json"),
    )


EXTERNAL_MIN_BYTES = 8 << 20  # graphs smaller than this load fast enough as they are


def external_data_path(onnx_path: Path) -> Path:
    return onnx_path.with_name(onnx_path.name + ".data")


def has_external_weights(onnx_path: Path) -> bool:
    """True when the graph file is small and its weights sit beside it in `<name>.data`."""
    try:
        return external_data_path(onnx_path).is_file() and onnx_path.stat().st_size < EXTERNAL_MIN_BYTES
    except OSError:
        return False


def move_weights_outside(onnx_path: Path) -> bool:
    """Rewrite a monolithic ONNX file as graph + external weights, in place; True when done.

    ONNX Runtime creates a session from that layout in well under half the time and memory
    (docs/ann.md: 638 -> 257 ms for a text tower), and the model is the same tensors byte for byte.
    Needs the `onnx` package (the export and mini extras have it); without it, or for small
    graphs, nothing changes. The weights file is renamed in first and the graph last: a crash in
    between leaves the old monolithic graph, which still loads (and is converted next time).

    A graph over 2 GB cannot be one file: torch's exporter (and Immich's exports of the large
    models) write it as a small graph with one weights file per tensor beside it. Those are
    gathered into the same one `<name>.data` file, and the per-tensor files removed after the
    graph that no longer names them is in place, so a folder is always graph + one weights file
    (copied whole by `copy_graph`, measured truly by its disk size).
    """
    if has_external_weights(onnx_path):
        return True
    try:
        scattered = _scattered_weights(onnx_path)
        if onnx_path.stat().st_size < EXTERNAL_MIN_BYTES and not scattered:
            return False
        import onnx
    except (OSError, ImportError):
        return False
    model = onnx.load(str(onnx_path))  # with every external tensor, wherever it is
    data = external_data_path(onnx_path)
    work = Path(tempfile.mkdtemp(dir=onnx_path.parent, prefix=".external-"))
    try:
        onnx.save_model(
            model,
            str(work / onnx_path.name),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data.name,
            size_threshold=1024,
        )
        del model
        mode = onnx_path.stat().st_mode & 0o777  # readable by whoever could read the graph
        os.chmod(work / data.name, mode)
        os.chmod(work / onnx_path.name, mode)
        os.replace(work / data.name, data)
        os.replace(work / onnx_path.name, onnx_path)
        for name in scattered:  # no longer named by the graph
            (onnx_path.parent / name).unlink(missing_ok=True)
    except OSError:
        return False
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return True


def _scattered_weights(onnx_path: Path) -> list[str]:
    """The external weights files a small graph names other than its own `<name>.data` (torch
    writes one per tensor for a graph over 2 GB); [] for a monolithic or an already tidy graph."""
    try:
        if onnx_path.stat().st_size >= EXTERNAL_MIN_BYTES or external_data_path(onnx_path).is_file():
            return []
        beside = sum(
            f.stat().st_size
            for f in onnx_path.parent.iterdir()
            if f.is_file() and f != onnx_path and f.suffix != ".json"
        )
        if beside < EXTERNAL_MIN_BYTES:  # no weights beside the graph: nothing to gather (no onnx import)
            return []
        import onnx
        from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data
    except (OSError, ImportError):
        return []
    try:
        graph = onnx.load(str(onnx_path), load_external_data=False)
    except Exception:  # not a graph onnx can read: left for ONNX Runtime to report
        return []
    own = external_data_path(onnx_path).name
    names = {ExternalDataInfo(t).location for t in _get_all_tensors(graph) if uses_external_data(t)}
    # Only plain names of files beside the graph: a downloaded graph must not name one elsewhere.
    return sorted(n for n in names if n != own and _plain_name(n))


def _plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\:\0")


def fast_loading(folder: Path) -> None:
    """Both towers of a folder pixgrep wrote or cached keep their weights outside the graph."""
    for tower in ("textual", "visual"):
        onnx_path = folder / tower / "model.onnx"
        if onnx_path.is_file():
            move_weights_outside(onnx_path)


def copy_graph(src: Path, dest: Path) -> None:
    """Copy an ONNX graph with its external weights file, if it has one."""
    shutil.copy2(src, dest)
    if external_data_path(src).is_file():
        shutil.copy2(external_data_path(src), external_data_path(dest))


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PixgrepError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise PixgrepError(f"{path} should hold a JSON object")
    return data
