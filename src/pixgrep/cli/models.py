"""`pixgrep models list | info | download | export | quantize`: what models exist, what is cached,
make new ones."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pixgrep.cli.options import add_json_option, human_size
from pixgrep.errors import PixgrepError

_FIGURES = (
    ("imagenet_top1", "IN top1"),
    ("flickr_i2t_r1", "F30k i2t"),
    ("flickr_t2i_r1", "F30k t2i"),
    ("coco_i2t_r1", "COCO i2t"),
    ("coco_t2i_r1", "COCO t2i"),
    ("xm3600_i2t_r1", "XM i2t"),
    ("xm3600_t2i_r1", "XM t2i"),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list, inspect, download and export models",
        description="Models are folders (docs/model-format.md): registry names and hf:OWNER/REPO "
        "references are downloaded from the Hugging Face hub into the cache on first use; any model "
        "folder path works too.",
    )
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    p = sub.add_parser(
        "list",
        help="known models, which are cached, size on disk, published quality, measured cost",
        description="Known models with embedding size, image size, whether they are in the cache (and "
        "its size on disk), and open_clip's published zero-shot figures: ImageNet top-1 and "
        "Recall@1 for Flickr30k, COCO and (multilingual) Crossmodal-3600 retrieval, image->text and "
        "text->image (%%), and the CPU cost measured here (image tower in int8 relative to ViT-B-32 "
        "int8, ms per image, ms per text query). "
        "'-' is a figure we have not checked or measured. * marks the default.",
    )
    add_json_option(p, "print a JSON list instead of a table")
    p.set_defaults(func=run_list)

    p = sub.add_parser(
        "info",
        help="details of one model (registry name or folder)",
        description="Details of a registry model or a model folder: files, config, preprocessing, "
        "the model id stored with catalog vectors, and how the text tower is fed.",
    )
    p.add_argument("model", metavar="NAME_OR_DIR", help="registry name, hf:OWNER/REPO or model folder")
    add_json_option(p, "print JSON")
    p.set_defaults(func=run_info)

    p = sub.add_parser(
        "download",
        help="fetch a registry model into the cache now (or build pixgrep-mini)",
        description="Download a registry model or a hub repository (hf:OWNER/REPO) into the cache "
        "(otherwise done on first use).",
    )
    p.add_argument(
        "model", metavar="MODEL", help="registry name (see `pixgrep models list`) or hf:OWNER/REPO"
    )
    p.set_defaults(func=run_download)

    p = sub.add_parser(
        "export",
        help="export an open_clip model to a model folder (needs pixgrep[export])",
        description="Write a model folder from any open_clip architecture. Needs torch and open_clip: "
        "pip install 'pixgrep[export]'.",
        epilog="examples:\n"
        "  pixgrep models export ViT-B-32 --pretrained laion2b_s34b_b79k --out ~/models/b32\n"
        "  pixgrep models export ViT-B-32 --pretrained none --out /tmp/b32-random\n"
        "  pixgrep models export ViT-B-16 --pretrained ./finetuned.pt --out ~/models/mine\n"
        "  pixgrep models export ViT-B-16-SigLIP2 --pretrained webli --out ~/models/siglip2\n"
        "  pixgrep models export ViT-B-32-SigLIP2-256 --pretrained ./ckpt.pt --tokenizer ./tok "
        "--out /tmp/s2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("arch", metavar="ARCH", help="open_clip architecture, e.g. ViT-B-32")
    p.add_argument(
        "--pretrained",
        required=True,
        metavar="TAG|none|FILE",
        help="open_clip pretrained tag, 'none' for random weights, or a local checkpoint file",
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder to write")
    p.add_argument(
        "--tokenizer",
        metavar="DIR",
        help="Hugging Face tokenizer folder (tokenizer.json, tokenizer_config.json) for architectures "
        "with one (SigLIP, NLLB-CLIP, XLM-R CLIP); default: its hub name, downloaded",
    )
    p.add_argument(
        "--text-config",
        metavar="DIR",
        help="folder with the transformers config.json of a Hugging Face text tower (NLLB, XLM-R); "
        "default: its hub name, downloaded",
    )
    p.add_argument("--force", action="store_true", help="overwrite a non-empty DIR")
    add_json_option(p, "print a JSON summary")
    p.set_defaults(func=run_export)

    p = sub.add_parser(
        "quantize",
        help="write the int8 variant of a model (about 2x faster indexing, small measured cost)",
        description="Quantise a model's towers to int8 with ONNX Runtime (weights per output channel) "
        "and write the variant folder with its measured cost (cosine to the float32 vectors, top-10 "
        "agreement) in variant.json. Without --out the variant goes into the cache, where "
        "--model NAME@int8 finds it (it is also built there on first use). Needs pixgrep[quantize].",
        epilog="examples:\n"
        "  pixgrep models quantize pixgrep-mini --images ~/Pictures      cost measured on your photos\n"
        "  pixgrep index ~/Pictures --model pixgrep-mini@int8             then use it like any model\n"
        "  pixgrep models quantize ~/models/b32 --out ~/models/b32-int8\n"
        "  pixgrep models quantize ~/models/b32 --method static --calibration ~/Pictures",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="NAME_OR_DIR", help="registry name or model folder (float32)")
    p.add_argument("--out", type=Path, metavar="DIR", help="folder to write (default: the cache)")
    p.add_argument(
        "--method",
        choices=["dynamic", "static"],
        default="dynamic",
        help="dynamic (default: activations quantised at run time) or static (activation ranges "
        "calibrated on --calibration images; measured worse, docs/models.md)",
    )
    p.add_argument("--calibration", metavar="DIR", help="images for static calibration (up to 64 used)")
    p.add_argument(
        "--text-tower",
        choices=["int8", "float32"],
        default="float32",
        help="keep the text tower float32 (default: better recall, docs/models.md) or quantise it too",
    )
    p.add_argument(
        "--images", metavar="DIR", help="your images to measure the cost on (default: generated images)"
    )
    p.add_argument("--force", action="store_true", help="overwrite a non-empty DIR or a cached variant")
    add_json_option(p, "print the variant's metadata as JSON")
    p.set_defaults(func=run_quantize)


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def list_models() -> list[dict]:
    """Registry entries with their cache state (no download, no build)."""
    from pixgrep.models import hub, registry

    rows = []
    for spec in registry.MODELS.values():
        cached = hub.is_cached(spec)
        row = spec.as_dict()
        row["default"] = spec.name == registry.DEFAULT_MODEL
        row["cached"] = cached
        row["path"] = str(hub.cached_folder(spec)) if cached else None
        row["size_bytes"] = folder_size(hub.cached_folder(spec)) if cached else None
        if cached and row["dim"] is None:  # pixgrep-mini: read what the built folder says
            config = json.loads((hub.cached_folder(spec) / "config.json").read_text())
            row["dim"] = config.get("embed_dim")
            row["image_size"] = config.get("vision_cfg", {}).get("image_size")
        rows.append(row)
    return rows


def run_list(args: argparse.Namespace) -> int:
    rows = list_models()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = ["name", "dims", "px", "lang", "cached", *(label for _, label in _FIGURES)]
    header += ["img cost", "img ms", "txt ms"]
    table = [header]
    for r in rows:
        cached = human_size(r["size_bytes"]) if r["cached"] else "no"
        figures = ["-" if r[key] is None else f"{r[key]:.1f}" for key, _ in _FIGURES]
        name = r["name"] + (" *" if r["default"] else "")
        lang = "multi" if r["languages"].startswith("multilingual") else r["languages"]
        cost = r["cost"] or {}
        costs = [
            "-" if not cost else f"{cost['image_rel']:.1f}x",
            "-" if not cost else f"{cost['image_ms']:.0f}",
            "-" if not cost else f"{cost['text_ms']:.0f}",
        ]
        row = [name, _dash(r["dim"]), _dash(r["image_size"]), lang, cached, *figures, *costs]
        table.append(row)
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print(
            "  ".join(
                cell.ljust(w) if i < 1 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    print(
        "\n* default.  Figures: open_clip's published zero-shot results (%), XM = Crossmodal-3600 "
        "(36 languages); '-' = not in its tables.  multi: queries in many languages (--json: which).\n"
        f"Cost: CPU time measured here ({_cost_date(rows)}, docs/models.md): img cost = image tower "
        "int8 relative to ViT-B-32 int8, img ms = int8 ms per image (batch 32), txt ms = ms per "
        "query; '-' = not measured."
    )
    return 0


def _cost_date(rows: list[dict]) -> str:
    dates = sorted({r["cost"]["measured"] for r in rows if r["cost"]})
    return ", ".join(dates) or "none yet"


def _dash(value) -> str:
    return "-" if value is None else str(value)


def model_info(reference: str) -> dict[str, Any]:
    """What `pixgrep models info` shows, as a dict (no download for registry names)."""
    from pixgrep.models import hub, quantize, registry
    from pixgrep.models.folder import open_folder
    from pixgrep.models.reference import resolve_model

    variant = quantize.parse_variant(reference)
    if variant is not None:
        return _variant_info(reference, model_info(variant.base))
    info: dict[str, Any] = {}
    resolved = resolve_model(reference)
    if resolved.spec is not None:
        spec = resolved.spec
        info.update(spec.as_dict())
        info["default"] = spec.name == registry.DEFAULT_MODEL
        info["cached"] = hub.is_cached(spec)
        if not info["cached"]:
            return info
        path = hub.cached_folder(spec)
        info["model_id"] = hub.model_id(spec)
    else:
        assert resolved.folder is not None
        path = resolved.folder
        info["model_id"] = None
    folder = open_folder(path)
    info["model_id"] = info["model_id"] or folder.fingerprint()
    info["path"] = str(path)
    info["size_bytes"] = folder_size(path)
    info["files"] = {
        f.relative_to(path).as_posix(): f.stat().st_size for f in sorted(path.rglob("*")) if f.is_file()
    }
    config = folder.config
    info["embed_dim"] = config.get("embed_dim")
    info["logit_scale"] = config.get("logit_scale", 100.0)
    info["logit_bias"] = config.get("logit_bias")  # SigLIP family: sigmoid probabilities
    text_cfg = config.get("text_cfg") or {}
    info["context_length"] = text_cfg.get("context_length")
    info["tokenizer"] = _tokenizer_kind(text_cfg)
    info["preprocess"] = folder.preprocess_cfg
    info["text_inputs"] = _text_inputs(folder.textual_onnx)
    meta = quantize.read_metadata(path)
    if meta is not None:
        info["variant"] = meta
    return info


def _tokenizer_kind(text_cfg: dict) -> str:
    """How query text becomes ids, in words (docs/model-format.md)."""
    name = text_cfg.get("hf_tokenizer_name")
    if not name:
        return "open_clip's CLIP BPE (or the folder's input_ids tokenizer)"
    clean = (text_cfg.get("tokenizer_kwargs") or {}).get("clean", "whitespace")
    language = "; query language token from --lang" if "nllb" in str(name).lower() else ""
    return f"Hugging Face ({name}), open_clip cleaning {clean!r}{language}"


def _variant_info(name: str, base: dict) -> dict:
    """`models info NAME@int8`: the built variant's folder, or what it would be built from."""
    from pixgrep.models import quantize

    base_id: str | None = base.get("model_id")
    path = quantize.cached_variant_dir(base_id) if base_id else None
    if base_id is None or path is None or quantize.read_metadata(path) is None:
        return {
            "name": name,
            "of": base_id or base.get("name"),
            "cached": False,
            "note": "the int8 variant is built on first use (or `pixgrep models quantize`)",
        }
    info = model_info(str(path))
    info["model_id"] = quantize.variant_id(base_id)
    return {"name": name, "cached": True, **info}


def _text_inputs(path: Path) -> dict[str, str]:
    from pixgrep.models.onnx_encoder import Tower

    tower = Tower(path)
    return {name: f"{i.type} {list(i.shape)}" for name, i in tower.inputs.items()}


def run_info(args: argparse.Namespace) -> int:
    info = model_info(args.model)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    skip = {"files", "preprocess", "text_inputs", "note", "variant"}
    for key, value in info.items():
        if key not in skip and value is not None:
            print(f"{key:16} {human_size(value) if key == 'size_bytes' else value}")
    if info.get("note"):
        print(f"{'note':16} {info['note']}")
    if "variant" in info:
        meta = info["variant"]
        print(
            f"{'variant':16} int8 of {meta.get('of')}: image tower {meta.get('image_tower')}, "
            f"text tower {meta.get('text_tower')}"
        )
        print(f"{'cost':16} {_cost_line(meta.get('cost') or {})}")
    if "preprocess" in info:
        pre = info["preprocess"]
        print(f"{'preprocess':16} " + ", ".join(f"{k}={v}" for k, v in pre.items()))
        print(f"{'text inputs':16} " + ", ".join(f"{k}: {v}" for k, v in info["text_inputs"].items()))
        print("files:")
        for name, size in info["files"].items():
            print(f"  {name:40} {human_size(size):>10}")
    elif not info.get("cached") and "of" in info:
        print(f"not built: {info['note']}")
    elif not info.get("cached"):
        print(
            f"not cached: `pixgrep models download {info['name']}` fetches it (or it is fetched on first use)"
        )
    return 0


def run_download(args: argparse.Namespace) -> int:
    from pixgrep.models import hub
    from pixgrep.models.folder import open_folder
    from pixgrep.models.reference import resolve_model

    spec = resolve_model(args.model).spec
    if spec is None:
        raise PixgrepError(f"{args.model} is a folder: there is nothing to download")
    if spec.source == "export" and not hub.is_cached(spec):
        from pixgrep.lab.export import export_open_clip

        assert spec.arch and spec.pretrained  # registry.parse_registry checks
        print(
            f"pixgrep: exporting {spec.name} from open_clip's {spec.pretrained} weights (once)",
            file=sys.stderr,
        )
        with hub.filling(spec) as tmp:
            export_open_clip(spec.arch, spec.pretrained, tmp)
    path = hub.ensure_folder(spec)
    open_folder(path)
    print(f"{spec.name}: {path} ({human_size(folder_size(path))})")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from pixgrep.lab.export import export_open_clip

    out: Path = args.out.expanduser()
    if out.exists() and any(out.iterdir()) and not args.force:
        raise PixgrepError(f"{out} is not empty; pass --force to overwrite it")
    if sys.stderr.isatty():
        print(f"pixgrep: exporting {args.arch} ({args.pretrained}) to {out}", file=sys.stderr)
    for option, value in (("--tokenizer", args.tokenizer), ("--text-config", args.text_config)):
        if value and not Path(value).expanduser().is_dir():
            raise PixgrepError(f"{option} {value}: no such folder")
    export_open_clip(
        args.arch,
        args.pretrained,
        out,
        tokenizer=str(Path(args.tokenizer).expanduser()) if args.tokenizer else None,
        text_config=str(Path(args.text_config).expanduser()) if args.text_config else None,
    )
    from pixgrep.models.folder import open_folder

    folder = open_folder(out)
    summary: dict = {"path": str(out), "model_id": folder.fingerprint(), "size_bytes": folder_size(out)}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {out} ({human_size(summary['size_bytes'])}); use it with --model {out}")
    return 0


def run_quantize(args: argparse.Namespace) -> int:
    from pixgrep.models import quantize, resolve_folder

    if quantize.parse_variant(args.model) is not None:
        raise PixgrepError(f"{args.model} is already a variant; name the float32 model")
    if args.method == "static" and not args.calibration:
        raise PixgrepError("--method static needs --calibration DIR (images to calibrate on)")
    measure = quantize.image_files(args.images, quantize.MEASURE_IMAGES) if args.images else []
    calibration = (
        quantize.image_files(args.calibration, quantize.CALIBRATION_IMAGES) if args.calibration else []
    )
    base, base_id = resolve_folder(args.model)
    out: Path = args.out.expanduser() if args.out else quantize.cached_variant_dir(base_id)
    if out.exists() and any(out.iterdir()) and not args.force:
        raise PixgrepError(f"{out} is not empty; pass --force to overwrite it")
    if sys.stderr.isatty():
        print(f"pixgrep: quantising {base_id} to {out}", file=sys.stderr)
    meta = quantize.quantize_folder(
        base,
        out,
        base_id=base_id,
        method=args.method,
        text_tower=args.text_tower,
        calibration=calibration,
        measure_images=measure,
    )
    meta["path"] = str(out)
    meta["model_id"] = quantize.variant_id(base_id) if args.out is None else _folder_id(out)
    if args.json:
        print(json.dumps(meta, indent=2))
        return 0
    use = f"--model {args.model}{quantize.SUFFIX}" if args.out is None else f"--model {out}"
    print(f"wrote {out} ({human_size(folder_size(out))}); use it with {use}")
    print(_cost_line(meta.get("cost") or {}))
    return 0


def _folder_id(path: Path) -> str:
    from pixgrep.models.folder import open_folder

    return open_folder(path).fingerprint()


def _cost_line(cost: dict) -> str:
    if not cost:
        return "cost: not measured"
    agree = next((v for k, v in cost.items() if k.startswith("top") and k.endswith("_agreement")), None)
    return (
        f"cost vs float32 on {cost.get('images')} and {cost.get('texts')} texts: cosine images "
        f"{cost['image_cosine_min']:.4f} min / {cost['image_cosine_mean']:.4f} mean, texts "
        f"{cost['text_cosine_min']:.4f} / {cost['text_cosine_mean']:.4f}; top-10 agreement {agree}"
    )
