"""The ONNX Runtime encoder: a model folder -> `Encoder` (base.py). No torch at run time.

Each tower's session is created on first use, so a text query never loads the image tower and
indexing never loads the text tower. How the text tower is fed (open_clip ids, or Hugging Face
input_ids + attention_mask) is read from the graph's input names and dtypes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from pixgrep.errors import PixgrepError
from pixgrep.models.base import Encoder, unit_rows
from pixgrep.models.folder import ModelFolder
from pixgrep.models.preprocess import PreprocessConfig, preprocess

if TYPE_CHECKING:
    from pixgrep.models.tokenizer import ClipTokenizer, HFTokenizer, OpenClipHFTokenizer

    AnyTokenizer = ClipTokenizer | HFTokenizer | OpenClipHFTokenizer

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
}
MAX_BATCH = 64  # bounds peak memory of one run; larger inputs are split
MAX_GPU_BATCH = 256


def available_cores() -> int:
    """Cores this process may run on (respects taskset / cgroup CPU affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class Tower:
    """One ORT session (the encoder creates each lazily) with what we need to know about its inputs.
    `pixgrep models info` also opens one to show how a text tower is fed."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        providers: Sequence[str] = ("CPUExecutionProvider",),
        *,
        spinning: bool = True,
    ):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = available_cores()
        options.inter_op_num_threads = 1
        if not spinning:  # idle ORT threads sleep instead of busy-waiting for the next op
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # ORT's own log lines (warnings about unused initialisers, an error before the exception
        # below) are not for users: pixgrep says what went wrong in one line of its own.
        options.log_severity_level = 4
        try:
            self.session = ort.InferenceSession(str(path), options, providers=list(providers))
        except Exception as exc:  # ORT raises its own exception types for unreadable graphs
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PixgrepError(
                f"cannot load {path}: the ONNX file is corrupt or truncated ({reason[:200]}); "
                "delete the model folder and download or export it again"
            ) from None
        if providers[0] != "CPUExecutionProvider" and self.session.get_providers()[0] != providers[0]:
            # ORT falls back to the CPU when CUDA cannot start (driver, libraries): say so
            raise PixgrepError(f"{providers[0]} could not start for {path}; use --device cpu or auto")
        self.gpu = self.session.get_providers()[0] != "CPUExecutionProvider"
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        self.output = self.session.get_outputs()[0].name
        first = next(iter(self.inputs.values()))
        batch = first.shape[0] if first.shape else None
        self.fixed_batch = batch if isinstance(batch, int) and batch > 0 else None  # Immich: batch 1

    def dtype(self, name: str):
        return _ORT_DTYPES.get(self.inputs[name].type, np.float32)

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(feeds.values())))
        step = self.fixed_batch or (MAX_GPU_BATCH if self.gpu else MAX_BATCH)
        parts = []
        for start in range(0, n, step):
            chunk = {k: v[start : start + step] for k, v in feeds.items()}
            parts.append(np.asarray(self.session.run([self.output], chunk)[0], np.float32))
        out = np.concatenate(parts) if len(parts) > 1 else parts[0]
        return out.reshape(n, -1)


class OnnxEncoder(Encoder):
    """CLIP-family encoder from a model folder, run by ONNX Runtime on the CPU or CUDA (devices.py)."""

    # While indexing, the decode threads need the cycles ORT's idle image-tower threads would burn
    # busy-waiting between ops: about a fifth of the int8 ViT-B-32's CPU time (docs/benchmarks.md).
    visual_spinning = False

    def __init__(self, folder: ModelFolder, model_id: str, *, device: str | None = None):
        from pixgrep.models.devices import check_device

        self.folder = folder
        self.model_id = model_id
        self.device = check_device(device) if device is not None else None  # None: the process default
        self._providers: list[str] | None = None
        self.config = folder.config
        self.logit_scale = float(folder.config.get("logit_scale", 100.0))
        bias = folder.config.get("logit_bias")  # SigLIP family (sigmoid loss)
        self.logit_bias = float(bias) if isinstance(bias, int | float) else None
        try:
            self.preprocess_cfg = PreprocessConfig.from_dict(folder.preprocess_cfg)
        except (ValueError, TypeError, IndexError) as exc:
            raise PixgrepError(f"{folder.path}/visual/preprocess_cfg.json: {exc}") from None
        self._lock = threading.Lock()
        self._visual: Tower | None = None
        self._textual: Tower | None = None
        self._tokenizer: AnyTokenizer | None = None
        self.language: str | None = None  # the query language of NLLB towers; None: the locale's
        self._prefetch: list[threading.Thread] = []
        self._dim = folder.config.get("embed_dim")

    def __repr__(self) -> str:
        return f"OnnxEncoder({self.model_id!r}, {self.folder.path})"

    @property
    def dim(self) -> int:  # type: ignore[override]
        if not self._dim:  # configs without embed_dim: read it from the text tower's output
            out = self.textual.session.get_outputs()[0].shape
            self._dim = int(out[-1]) if isinstance(out[-1], int) else len(self.encode_texts([""])[0])
        return int(self._dim)

    @property
    def providers(self) -> list[str]:
        """ONNX Runtime providers the towers run on, chosen once (models/devices.py)."""
        if self._providers is None:
            from pixgrep.models.devices import providers

            self._providers = providers(self.device)
        return self._providers

    @property
    def image_size(self) -> tuple[int, int]:  # type: ignore[override]
        return self.preprocess_cfg.size

    @property
    def preferred_batch_size(self) -> int:
        """Images per model call that keep this device busy (indexing's default batch)."""
        from pixgrep.models.devices import batch_size

        return batch_size(self.providers)

    @property
    def visual(self) -> Tower:
        with self._lock:
            if self._visual is None:
                self._visual = Tower(self.folder.visual_onnx, self.providers, spinning=self.visual_spinning)
            return self._visual

    @property
    def textual(self) -> Tower:
        with self._lock:
            if self._textual is None:
                self._textual = Tower(self.folder.textual_onnx, self.providers)
            return self._textual

    @property
    def towers_loaded(self) -> tuple[str, ...]:
        """Which towers have a session so far (tests check that text queries skip the image tower)."""
        return tuple(n for n, t in (("visual", self._visual), ("textual", self._textual)) if t is not None)

    # images
    def preprocess(self, image: Image.Image) -> np.ndarray:
        return preprocess(image, self.preprocess_cfg)

    def preprocess_for_index(self, image: Image.Image) -> np.ndarray:
        return preprocess(image, self.preprocess_cfg, crop_while_resizing=True)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        pixels = np.asarray(pixels)
        if len(pixels) == 0:
            return np.zeros((0, self.dim), np.float32)
        tower = self.visual
        name = next(iter(tower.inputs))
        return unit_rows(tower.run({name: pixels.astype(tower.dtype(name), copy=False)}))

    # texts
    def prepare_texts(self) -> None:
        """Create the text tower's session and parse its tokenizer in two background threads (both
        release the GIL), so a cold query overlaps them with each other and with opening the
        catalog's matrix. Errors are not raised here: the first real use raises them."""
        with self._lock:
            if self._textual is not None or self._prefetch:
                return

            def quietly(work: Callable[[], object]) -> None:
                try:
                    work()
                except Exception:  # noqa: BLE001  (raised again, as one line, by the real call)
                    pass

            from pixgrep.models import tokenizer

            jobs = (lambda: self.textual, lambda: tokenizer.preload(self.folder.tokenizer_json))
            # Not daemons: Python then joins them before exit. A daemon still inside ONNX Runtime's
            # or tokenizers' native code when a cold query fails fast (a damaged catalog) aborted the
            # process ("terminate called without an active exception", exit -6) instead of exit 2.
            self._prefetch = [threading.Thread(target=quietly, args=(job,)) for job in jobs]
        for thread in self._prefetch:
            thread.start()

    def _prepared(self) -> None:
        for thread in self._prefetch:
            thread.join()

    def encode_texts(self, texts: Sequence[str], *, language: str | None = None) -> np.ndarray:
        """Unit vectors of `texts`; `language`: a FLORES-200 code for NLLB towers (None: the
        encoder's own, `self.language`, else models.languages' default)."""
        self._prepared()
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        tower = self.textual
        # Tokenize per chunk, so that the padding cut (and HF padding) follows each chunk's longest text.
        parts = [
            tower.run(self._text_feeds(tower, texts[i : i + MAX_BATCH], language))
            for i in range(0, len(texts), MAX_BATCH)
        ]
        return unit_rows(np.concatenate(parts) if len(parts) > 1 else parts[0])

    def cut_texts(self, texts: Sequence[str]) -> list[str | None]:
        """For each text, the words past the text tower's context length (None when it fits)."""
        self._prepared()
        tokenizer = self._get_tokenizer(self.textual)
        return [tokenizer.cut_text(text) for text in texts]

    def tokenize(self, texts: Sequence[str], *, language: str | None = None) -> dict[str, np.ndarray]:
        """The text tower's input arrays for these texts (exposed for parity tests and debugging)."""
        self._prepared()
        return self._text_feeds(self.textual, list(texts), language)

    @property
    def multilingual_tokens(self) -> bool:
        """True when the text tower takes a source-language token (NLLB): `language` matters."""
        return _is_nllb(self.config)

    @property
    def languages(self) -> str:
        from pixgrep.models.languages import model_languages

        return model_languages(self.config, self.model_id)

    @property
    def query_language(self) -> str | None:
        """The FLORES-200 code text queries get when none is asked (NLLB towers); None for others."""
        from pixgrep.models.languages import flores_code

        return flores_code(self.language) if self.multilingual_tokens else None

    def in_language(self, language: str | None) -> Encoder:
        if language is None or not self.multilingual_tokens:
            return self
        from pixgrep.models.languages import flores_code

        return InLanguage(self, flores_code(language))

    def language_choices(self) -> list[dict[str, object]]:
        """The languages of models.languages' table that the tower has a token for (NLLB; [] for
        towers that take none), with their BCP 47 tags: a web page's language picker."""
        if not self.multilingual_tokens:
            return []
        from pixgrep.models.languages import choices
        from pixgrep.models.tokenizer import OpenClipHFTokenizer

        self._prepared()
        tokenizer = self._get_tokenizer(self.textual)
        if not isinstance(tokenizer, OpenClipHFTokenizer):
            return []
        return choices(lambda code: tokenizer.language_id(code) is not None)

    def _text_feeds(self, tower: Tower, texts: list[str], language: str | None) -> dict[str, np.ndarray]:
        from pixgrep.models.tokenizer import HFTokenizer, OpenClipHFTokenizer

        tokenizer = self._get_tokenizer(tower)
        if isinstance(tokenizer, HFTokenizer):  # chosen for towers with an `input_ids` input
            arrays = tokenizer(texts)
            return {name: arrays[name].astype(tower.dtype(name)) for name in tower.inputs if name in arrays}
        name = next(iter(tower.inputs))
        if isinstance(tokenizer, OpenClipHFTokenizer):
            if tokenizer.nllb:
                from pixgrep.models.languages import flores_code

                language = flores_code(language or self.language)
                if tokenizer.language_id(language) is None:
                    raise PixgrepError(f"{self.model_id} has no token for the language {language}")
            else:
                language = None
            return {name: tokenizer(texts, dtype=tower.dtype(name), language=language)}
        ids = tokenizer(texts, dtype=tower.dtype(name))
        if self._cut_padding(tower):  # only zero padding after the last end token goes
            ends = (ids == tokenizer.eot_id).argmax(axis=1)
            ids = ids[:, : int(ends.max()) + 1]
        return {name: ids}

    def _cut_padding(self, tower: Tower) -> bool:
        """True for text towers exported to accept shorter sequences (config `text_dynamic_length`)."""
        shape = next(iter(tower.inputs.values())).shape
        dynamic = len(shape) == 2 and not isinstance(shape[1], int)
        return bool(self.config.get("text_dynamic_length")) and dynamic

    def _get_tokenizer(self, tower: Tower) -> AnyTokenizer:
        if self._tokenizer is None:
            from pixgrep.models.tokenizer import ClipTokenizer, HFTokenizer, OpenClipHFTokenizer

            text_cfg = self.config.get("text_cfg") or {}
            try:
                if "input_ids" in tower.inputs:
                    self._tokenizer = HFTokenizer(self.folder.tokenizer_json, self.folder.tokenizer_config)
                elif text_cfg.get("hf_tokenizer_name"):  # open_clip's sign of its HFTokenizer
                    kwargs = text_cfg.get("tokenizer_kwargs") or {}
                    self._tokenizer = OpenClipHFTokenizer(
                        self.folder.tokenizer_json,
                        self.folder.tokenizer_config,
                        context_length=self._context_length(tower),
                        clean=kwargs.get("clean", "whitespace"),
                        strip_sep_token=bool(kwargs.get("strip_sep_token", False)),
                        nllb=_is_nllb(self.config),
                    )
                else:
                    self._tokenizer = ClipTokenizer(self.folder.tokenizer_json, self._context_length(tower))
            except Exception as exc:  # tokenizers raises plain Exception for malformed files
                raise PixgrepError(
                    f"cannot read {self.folder.tokenizer_json}: {str(exc).splitlines()[0][:200]}"
                ) from None
        return self._tokenizer

    def _context_length(self, tower: Tower) -> int:
        shape = next(iter(tower.inputs.values())).shape
        if len(shape) == 2 and isinstance(shape[1], int):
            return shape[1]
        return int(self.config.get("text_cfg", {}).get("context_length", 77))


def _is_nllb(config: dict) -> bool:
    """NLLB's tokenizer (open_clip's nllb-clip-* configs name it; Immich's exports keep the name)."""
    name = (config.get("text_cfg") or {}).get("hf_tokenizer_name") or ""
    return "nllb" in str(name).lower()


class InLanguage(Encoder):
    """An OnnxEncoder whose text queries are in one language (NLLB's token), sharing its towers and
    everything else: what one search asks for (SearchOptions.lang) without touching the encoder
    that other requests share."""

    def __init__(self, base: OnnxEncoder, language: str):
        self.base = base
        self.language = language  # a FLORES-200 code

    def __getattr__(self, name: str):  # folder, config, ...: the base's
        if name == "base":  # not set yet (a copy being made): no endless lookup
            raise AttributeError(name)
        return getattr(self.base, name)

    def __repr__(self) -> str:
        return f"{self.base!r} in {self.language}"

    model_id = property(lambda self: self.base.model_id)
    dim = property(lambda self: self.base.dim)
    logit_scale = property(lambda self: self.base.logit_scale)
    logit_bias = property(lambda self: self.base.logit_bias)
    image_size = property(lambda self: self.base.image_size)

    @property
    def languages(self) -> str:
        return self.base.languages

    @property
    def multilingual_tokens(self) -> bool:
        return True

    @property
    def query_language(self) -> str:
        return self.language

    def in_language(self, language: str | None) -> Encoder:
        return self.base.in_language(language) if language is not None else self

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return self.base.preprocess(image)

    def preprocess_for_index(self, image: Image.Image) -> np.ndarray:
        return self.base.preprocess_for_index(image)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return self.base.encode_pixels(pixels)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.base.encode_texts(texts, language=self.language)

    def prepare_texts(self) -> None:
        self.base.prepare_texts()

    def cut_texts(self, texts: Sequence[str]) -> list[str | None]:
        return self.base.cut_texts(texts)

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        return self.base.tokenize(texts, language=self.language)
