"""The PyTorch reference of pixgrep-mini (timm + sentence-transformers + heads), for parity tests.

The model folder is written without torch (build.py); this is the model the heads were first
trained with, kept on the training side so tests can check the torch-free graphs against it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pixgrep.models.mini.spec import DEFAULT_POOLS, HEADS_PATH, load_heads


def torch_modules(heads_path: Path = HEADS_PATH) -> tuple[Any, Any, dict[str, Any]]:
    """(visual, textual, heads): visual(pixels float32 [N,3,H,W]) and textual(input_ids,
    attention_mask) return unit vectors, as the folder's graphs do."""
    import torch
    import torch.nn.functional as F

    from pixgrep.lab.mini.features import load_image_tower, load_text_tower, pooled_views_torch

    heads = load_heads(heads_path)
    towers = tuple(heads["meta"]["config"]["towers"])
    pools = tuple(heads["meta"]["config"].get("pools") or DEFAULT_POOLS)
    members = int(heads["meta"]["config"].get("members", 1))
    text_pools = tuple(heads["meta"]["config"].get("text_pools") or ("mean",))

    def unit(x: torch.Tensor) -> torch.Tensor:  # each stacked head's block, then / sqrt(members)
        x = F.normalize(x.reshape(len(x), members, -1), dim=-1).reshape(len(x), -1)
        return x / members**0.5

    def linear(w, b) -> torch.nn.Linear:
        layer = torch.nn.Linear(w.shape[1], w.shape[0])
        layer.weight.data = torch.from_numpy(w.copy())
        layer.bias.data = torch.from_numpy(b.copy())
        return layer

    class Visual(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbones = torch.nn.ModuleList([load_image_tower(t) for t in towers])
            self.head = linear(heads["image_weight"], heads["image_bias"])

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            pooled = torch.cat([pooled_views_torch(b, image, pools) for b in self.backbones], dim=1)
            return unit(self.head(pooled))

    class Textual(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = load_text_tower()[0].auto_model
            self.head = linear(heads["text_weight"], heads["text_bias"])

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            layers = self.bert(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(input_ids),
                output_hidden_states=True,
            ).hidden_states  # the embeddings, then each layer's output
            mask = attention_mask.unsqueeze(-1).to(layers[-1].dtype)
            views = []
            for name in text_pools:
                if name == "cls":
                    views.append(F.normalize(layers[-1][:, 0], dim=-1))
                    continue
                hidden = layers[-1] if name == "mean" else layers[int(name.split("_")[0][5:])]
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                views.append(F.normalize(pooled, dim=-1))
            return unit(self.head(torch.cat(views, dim=1)))

    return Visual().eval(), Textual().eval(), heads
