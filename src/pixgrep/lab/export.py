"""open_clip model -> pixgrep model folder (docs/model-format.md). Needs the `export` extra (torch).

The folder has the layout of Immich's published exports: config.json, visual/{model.onnx,
preprocess_cfg.json}, textual/{model.onnx, tokenizer.json, tokenizer_config.json}. The tokenizer is
built offline from the BPE vocabulary that open_clip ships, in the Hugging Face CLIPTokenizerFast
layout, so ids are the same as Immich's tokenizer.json files.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from pixgrep.errors import PixgrepError
from pixgrep.models.folder import fast_loading

# TorchScript exporter (dynamo=False) for both towers: parity, dynamic axes, and about a second
# for a small model where the dynamo exporter takes 15-30 s. Opset 17 has LayerNormalization.
OPSET = 17
# bump when exported folders change (test caches are keyed on it); 4: external weights; 5: the image
# tower's attention written out (_attention)
EXPORT_VERSION = 5
SOT, EOT = "<|startoftext|>", "<|endoftext|>"  # Hugging Face CLIP names, ids 49406 / 49407


def _import_export_deps():
    try:
        import open_clip
        import torch
    except ImportError as exc:
        raise PixgrepError(
            f"exporting needs torch and open_clip ({exc.name} is missing): pip install 'pixgrep[export]'"
        ) from None
    return torch, open_clip


def export_open_clip(
    arch: str,
    pretrained: str | None,
    out: Path,
    *,
    model_cfg: dict | None = None,
    tokenizer: str | None = None,
    text_config: str | None = None,
    preprocess: dict[str, Any] | None = None,
) -> Path:
    """Write the model folder for open_clip architecture `arch` into `out` and return `out`.

    pretrained: a tag of open_clip's pretrained table, a local checkpoint file, or None / "none" for
    random weights. model_cfg: register `arch` with this open_clip config first (tests use it for a
    reduced architecture). tokenizer: the Hugging Face tokenizer folder of an architecture that
    names one (SigLIP, NLLB-CLIP, XLM-R CLIP; else its hub name is tried). text_config: a folder
    with the transformers config.json of a Hugging Face text tower (NLLB, XLM-R), read offline.
    preprocess: preprocess_cfg.json values to write instead of open_clip's (tests: a tiny SigLIP).
    """
    torch, open_clip = _import_export_deps()
    out = Path(out)
    if pretrained is not None and pretrained.lower() == "none":
        pretrained = None
    if model_cfg is not None:
        _register_config(open_clip, arch, model_cfg)
    config = open_clip.get_model_config(arch)
    if config is None:
        raise PixgrepError(f"unknown open_clip architecture {arch!r} (see open_clip.list_models())")
    config = json.loads(json.dumps(config))  # a copy: open_clip's own table stays as it was
    text_cfg = config.setdefault("text_cfg", {})
    is_tag = bool(pretrained) and not os.path.isfile(str(pretrained))
    if is_tag and not open_clip.get_pretrained_cfg(arch, pretrained):
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none known"
        raise PixgrepError(f"{pretrained!r} is neither a pretrained tag of {arch} ({tags}) nor a file")
    overrides = _hf_text_overrides(config, text_config, is_tag)
    hf_tokenizer = text_cfg.get("hf_tokenizer_name")
    reference_tokenizer = None
    if hf_tokenizer:  # SigLIP, NLLB, XLM-R: loaded first, so a missing tokenizer fails fast
        from pixgrep.lab.hf_export import load_tokenizer

        reference_tokenizer = load_tokenizer(tokenizer or hf_tokenizer, text_cfg)
    elif tokenizer:
        raise PixgrepError(f"{arch} uses open_clip's CLIP tokenizer: --tokenizer is not for it")

    torch.backends.mha.set_fastpath_enabled(False)  # the fused attention path does not trace
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = open_clip.create_model(
                arch, pretrained=pretrained, require_pretrained=bool(pretrained), **overrides
            )
        except (RuntimeError, OSError, KeyError, ValueError) as exc:  # download failed, bad checkpoint
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise PixgrepError(f"cannot load {arch} with weights {pretrained!r}: {reason}") from None
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)

    (out / "visual").mkdir(parents=True, exist_ok=True)
    (out / "textual").mkdir(parents=True, exist_ok=True)
    config["logit_scale"] = float(model.logit_scale.exp().item())
    if getattr(model, "logit_bias", None) is not None:  # SigLIP: sigmoid(scale * cosine + bias)
        config["logit_bias"] = float(model.logit_bias.item())
    _write_json(out / "config.json", config)
    image_cfg = _preprocess_cfg(open_clip, model)
    if not is_tag:  # a checkpoint file or no weights: the arch's published preprocessing
        image_cfg.update(_published_preprocess(open_clip, arch))
    image_cfg.update(preprocess or {})
    _write_json(out / "visual" / "preprocess_cfg.json", image_cfg)

    image_size = _pair(config["vision_cfg"].get("image_size", 224))
    image = torch.randn(2, 3, *image_size)
    with _image_attention_written_out(torch, model, image):
        _export_tower(torch, _Tower(torch, model.encode_image), image, out / "visual" / "model.onnx", "image")
    if hf_tokenizer:  # SigLIP, NLLB, XLM-R: fixed-length ids from their Hugging Face tokenizer
        from pixgrep.lab.hf_export import write_hf_tokenizer

        nllb = "nllb" in str(hf_tokenizer).lower()
        source = tokenizer or hf_tokenizer
        reference = write_hf_tokenizer(
            source, out / "textual", text_cfg, nllb=nllb, reference=reference_tokenizer
        )
        text = reference(["a photo of a dog", "zwei Kinder spielen am Strand"]).to(torch.int32)
        _export_tower(torch, _Tower(torch, model.encode_text), text, out / "textual" / "model.onnx", "text")
    else:
        context_length = int(text_cfg.get("context_length", 77))
        text = torch.randint(1, 1000, (2, context_length), dtype=torch.int32)
        text[:, -1] = 49407  # argmax pooling looks for the end token
        if _export_short_text(torch, model, text, out / "textual" / "model.onnx"):
            config["text_dynamic_length"] = True
            _write_json(out / "config.json", config)
        else:
            tower = _Tower(torch, model.encode_text)
            _export_tower(torch, tower, text, out / "textual" / "model.onnx", "text")
        write_clip_tokenizer(out / "textual", context_length)
    fast_loading(out)  # weights beside the graphs: sessions open in under half the time
    return out


def _hf_text_overrides(config: dict, text_config: str | None, is_tag: bool) -> dict[str, Any]:
    """create_model arguments for a Hugging Face text tower (NLLB, XLM-R): its transformers config
    from a local folder, and no download of its pretrained weights when ours come from a file."""
    text_cfg = config["text_cfg"]
    if not text_cfg.get("hf_model_name"):
        if text_config:
            raise PixgrepError("--text-config is for architectures with a Hugging Face text tower")
        return {}
    if text_config:
        if not (Path(text_config) / "config.json").is_file():
            raise PixgrepError(f"--text-config {text_config}: a folder with a transformers config.json")
        text_cfg["hf_model_name"] = str(Path(text_config).resolve())
    if not is_tag:
        text_cfg["hf_model_pretrained"] = False
    return {"text_cfg": text_cfg}


def _published_preprocess(open_clip, arch: str) -> dict[str, Any]:
    """Mean, std, interpolation and resize mode that all published weights of the arch share
    (SigLIP: 0.5 and squash), which open_clip applies only when the weights come by tag; {} when
    it has none or its tags differ."""
    keys = ("mean", "std", "interpolation", "resize_mode")
    found = []
    for tag in open_clip.list_pretrained_tags_by_model(arch):
        cfg = open_clip.get_pretrained_cfg(arch, tag)
        found.append(
            {k: [float(x) for x in cfg[k]] if k in ("mean", "std") else cfg[k] for k in keys if k in cfg}
        )
    if not found or any(f != found[0] for f in found):
        return {}
    return found[0]


def _Tower(torch, encode):
    class Tower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.owner = encode.__self__  # registers the weights as parameters of this module

        def forward(self, x):
            return encode(x, normalize=True)

    return Tower().eval()


def _short_text_tower(torch, model):
    """open_clip's CLIP.encode_text, but for any sequence length up to the context length.

    The text transformer is causal and pools at the end token, so the zero padding after the end
    token cannot change the result: a graph that accepts shorter sequences lets pixgrep cut the
    padding after the longest text of a batch (a 10-token query then costs 10 positions, not 77).
    The attention is written out with shape-agnostic reshapes, because nn.MultiheadAttention's
    traced graph bakes the sequence length in. Only for the plain CLIP text tower (causal mask,
    argmax/eos pooling, standard residual blocks); None for anything else.
    """
    from open_clip.model import CLIP
    from open_clip.transformer import text_global_pool

    F = torch.nn.functional
    if type(model) is not CLIP or getattr(model, "attn_mask", None) is None:
        return None
    if model.text_pool_type not in ("argmax", "eos") or not getattr(model.transformer, "batch_first", False):
        return None
    if not _plain_blocks(torch, model.transformer.resblocks):
        return None

    class ShortText(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, text):
            m = self.model
            n = text.shape[1]
            cast_dtype = m.transformer.get_cast_dtype()
            x = m.token_embedding(text).to(cast_dtype)
            x = x + m.positional_embedding[:n].to(cast_dtype)
            mask = m.attn_mask[:n, :n].to(x.dtype)
            for block in m.transformer.resblocks:
                x = x + block.ls_1(_attention(torch, block, block.ln_1(x), mask))
                x = x + block.ls_2(block.mlp(block.ln_2(x)))
            x = m.ln_final(x)
            x = text_global_pool(x, text, m.text_pool_type, eos_token_id=getattr(m, "text_eos_id", None))
            if m.text_projection is not None:
                x = (
                    m.text_projection(x)
                    if isinstance(m.text_projection, torch.nn.Linear)
                    else x @ m.text_projection
                )
            return F.normalize(x, dim=-1)

    return ShortText().eval()


def _export_short_text(torch, model, example, path: Path) -> bool:
    """Export the text tower with dynamic batch and sequence axes; False if the tower is not the
    plain CLIP text transformer (then the caller exports encode_text at fixed length)."""
    module = _short_text_tower(torch, model)
    if module is None:
        return False
    with torch.no_grad():  # the rewrite must be open_clip's encode_text, or we do not use it
        expected = model.encode_text(example, normalize=True)
        if not torch.allclose(module(example), expected, atol=1e-5):
            return False
        if not torch.allclose(
            module(example[:, :9])[:1], _encode_text_padded(torch, model, example[:1, :9]), atol=1e-5
        ):
            return False
    _export_tower(torch, module, example, path, "text", any_length=True)
    return True


def _plain_blocks(torch, blocks) -> bool:
    """Every block is open_clip's standard residual block with batch-first self-attention, which
    _attention computes: nothing else (cross-attention, bias_k, split q/k/v weights) is rewritten."""
    from open_clip.transformer import ResidualAttentionBlock

    for block in blocks:
        attn = getattr(block, "attn", None)
        if (
            type(block) is not ResidualAttentionBlock
            or hasattr(block, "ln_1_kv")
            or not isinstance(attn, torch.nn.MultiheadAttention)
            or not attn.batch_first
            or not attn._qkv_same_embed_dim
            or attn.in_proj_bias is None
            or attn.bias_k is not None
        ):
            return False
    return bool(len(blocks))


def _attention(torch, block, x, mask=None):
    """A block's nn.MultiheadAttention written out: shape-agnostic reshapes (the traced module bakes
    the sequence length in) and 3 transposes where the traced module has 8, each a copy of the
    activations (ViT-B-32's int8 image tower: 21% of its time went to Transpose)."""
    attn = block.attn
    heads, width = attn.num_heads, attn.embed_dim
    qkv = torch.nn.functional.linear(x, attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = qkv.reshape(x.shape[0], -1, 3, heads, width // heads).permute(2, 0, 3, 1, 4).unbind(0)
    scores = torch.matmul(q * (width // heads) ** -0.5, k.transpose(-2, -1))
    if mask is not None:
        scores = scores + mask
    out = torch.matmul(scores.softmax(dim=-1), v)
    return attn.out_proj(out.transpose(1, 2).reshape(x.shape[0], -1, width))


@contextlib.contextmanager
def _image_attention_written_out(torch, model, example):
    """While exporting the image tower, its blocks' attention is _attention, if the tower is made of
    plain blocks and its output stays within 1e-5 of open_clip's; otherwise it is left alone."""
    blocks = getattr(getattr(getattr(model, "visual", None), "transformer", None), "resblocks", None)
    if blocks is None or not _plain_blocks(torch, blocks):
        yield
        return
    with torch.no_grad():
        expected = model.encode_image(example, normalize=True)
    try:
        for block in blocks:  # an instance attribute shadows ResidualAttentionBlock.attention
            block.attention = functools.partial(_block_attention, torch, block)
        with torch.no_grad():
            if not torch.allclose(model.encode_image(example, normalize=True), expected, atol=1e-5):
                _drop_written_out(blocks)
        yield
    finally:
        _drop_written_out(blocks)


def _drop_written_out(blocks) -> None:
    for block in blocks:
        block.__dict__.pop("attention", None)  # ResidualAttentionBlock.attention again


def _block_attention(torch, block, q_x, k_x=None, v_x=None, attn_mask=None):
    """ResidualAttentionBlock.attention's signature over _attention (self-attention only)."""
    if k_x is not None or v_x is not None:
        raise ValueError("cross-attention is not written out")
    return _attention(torch, block, q_x, None if attn_mask is None else attn_mask.to(q_x.dtype))


def _encode_text_padded(torch, model, ids):
    """open_clip's encode_text of `ids` zero-padded to the full context length."""
    full = torch.zeros((ids.shape[0], model.positional_embedding.shape[0]), dtype=ids.dtype)
    full[:, : ids.shape[1]] = ids
    return model.encode_text(full, normalize=True)


def _export_tower(torch, module, example, path: Path, input_name: str, any_length: bool = False) -> None:
    """One tower to ONNX with a dynamic batch axis (and sequence axis, for `any_length` text)."""
    input_axes = {0: "batch_size", 1: "sequence"} if any_length else {0: "batch_size"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=[input_name],
            output_names=["embedding"],
            dynamic_axes={input_name: input_axes, "embedding": {0: "batch_size"}},
            opset_version=OPSET,
            dynamo=False,
        )


def _register_config(open_clip, arch: str, model_cfg: dict) -> None:
    folder = Path(tempfile.mkdtemp(prefix="pixgrep-cfg-"))
    try:
        (folder / f"{arch}.json").write_text(json.dumps(model_cfg))
        open_clip.add_model_config(folder / f"{arch}.json")  # read now, kept in open_clip's table
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _preprocess_cfg(open_clip, model) -> dict[str, Any]:
    from dataclasses import asdict

    from open_clip.transform import PreprocessCfg

    cfg = asdict(PreprocessCfg())
    cfg.update(open_clip.get_model_preprocess_cfg(model))
    cfg["size"] = list(_pair(cfg["size"]))
    cfg["mean"] = [float(x) for x in cfg["mean"]]
    cfg["std"] = [float(x) for x in cfg["std"]]
    return cfg


def _pair(size) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int | float) else (int(size[0]), int(size[1]))


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def _pair_of(merge: str) -> tuple[str, str]:
    first, second = merge.split()
    return first, second


def write_clip_tokenizer(folder: Path, context_length: int = 77) -> None:
    """tokenizer.json + tokenizer_config.json from open_clip's BPE file, CLIPTokenizerFast style."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = [_pair_of(m) for m in lines[1 : 49152 - 256 - 2 + 1]]  # as open_clip cuts them
    units = list(bytes_to_unicode().values())
    vocab_list = units + [u + "</w>" for u in units] + ["".join(m) for m in merges] + [SOT, EOT]
    vocab = {token: i for i, token in enumerate(vocab_list)}
    tok = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=merges,
            unk_token=EOT,
            continuing_subword_prefix="",
            end_of_word_suffix="</w>",
            fuse_unk=False,
        )
    )
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                behavior="removed",
                invert=True,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.RobertaProcessing(
        (EOT, vocab[EOT]), (SOT, vocab[SOT]), trim_offsets=False, add_prefix_space=False
    )
    tok.add_special_tokens([SOT, EOT])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    _write_json(
        folder / "tokenizer_config.json",
        {
            "tokenizer_class": "CLIPTokenizer",
            "model_max_length": context_length,
            "bos_token": SOT,
            "eos_token": EOT,
            "unk_token": EOT,
            "pad_token": EOT,
            "do_lower_case": True,
        },
    )
