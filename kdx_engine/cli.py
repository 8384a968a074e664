"""The ``kdx`` command line: ``info``, ``explain`` (more verbs arrive with their engines).

Exit codes: 0 ok, 2 bad input (one line on stderr naming the file and the problem).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

EXIT_BAD_INPUT = 2


class BadInput(Exception):
    """Input the user can fix; printed as one line, exit code 2."""


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except BadInput as exc:
        print(f"kdx: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ValueError, FileExistsError) as exc:  # the engine reports bad input as these
        print(f"kdx: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kdx", description="Explain and measure knowledge distillation.")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="describe a model file")
    info.add_argument("model", type=Path)
    _model_options(info)
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.add_argument("--save-sidecar", action="store_true", help="write the preprocessing to MODEL.kdx.json")
    info.set_defaults(run=run_info)

    explain = sub.add_parser("explain", help="CAM maps for images: .npy, overlay PNG and manifest.json")
    explain.add_argument("images", nargs="+", type=Path, help="image files or folders")
    explain.add_argument("--method", default="gradcam")
    explain.add_argument("--model", type=Path, required=True)
    _model_options(explain)
    explain.add_argument("--layer", help="target layer (default: automatic)")
    explain.add_argument("--target", default="predicted", help="predicted | true | class:K")
    explain.add_argument("--out", type=Path, required=True)
    explain.add_argument("--colormap", default="jet")
    explain.add_argument("--opacity", type=float, default=0.5)
    explain.add_argument("--batch-size", type=int, default=16)
    explain.add_argument("--overwrite", action="store_true")
    explain.set_defaults(run=run_explain)
    return parser


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", help="architecture of a state_dict (default: recognised from its parameters)")
    parser.add_argument("--which", choices=("student", "teacher"), help="model to take from a two-model checkpoint")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow a full pickled module (runs code from the file: only for files you trust)")


def _load(path: Path, args):
    from .models import load_model

    return load_model(path, arch=args.arch, which=args.which, trust_pickle=args.trust_pickle)


def run_info(args) -> int:
    from .models import default_target_layer, probe_layers, write_sidecar

    backend = _load(args.model, args)
    info = backend.info
    layers = probe_layers(backend)
    try:
        default_layer = default_target_layer(layers)
    except ValueError:
        default_layer = None
    pre = info.preprocessing
    data = {
        "file": info.path, "format": info.format, "backend": info.backend, "architecture": info.architecture,
        "classes": list(pre.class_names), "num_classes": info.num_classes,
        "input_size": pre.input_size, "resize": pre.resize, "mean": list(pre.mean), "std": list(pre.std),
        "preprocessing_source": pre.source, "parameters": info.num_parameters, "sha256": info.sha256,
        "default_layer": default_layer,
        "layers": [{"name": l.name, "shape": list(l.shape), "stride": l.stride} for l in layers],
        "notes": list(info.notes),
    }
    if args.save_sidecar:
        data["sidecar"] = str(write_sidecar(args.model, pre))
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"file:          {info.path}")
    print(f"format:        {info.format} (backend: {info.backend})")
    print(f"architecture:  {info.architecture or 'unknown (not needed for this format)'}")
    print(f"classes:       {info.num_classes} ({_short_list(pre.class_names)})")
    print(f"input:         {pre.input_size}×{pre.input_size}, resize {pre.resize or 'direct'}, "
          f"mean {list(pre.mean)}, std {list(pre.std)} [{pre.source}]")
    print(f"parameters:    {info.num_parameters:,}")
    print(f"default layer: {default_layer}")
    print("layers (name, output shape, stride):")
    for layer in layers:
        marker = " *" if layer.name == default_layer else ""
        print(f"  {layer.name:32s} {'×'.join(map(str, layer.shape)):>14s}  {layer.stride or '-'}{marker}")
    for note in info.notes:
        print(f"note: {note}")
    return 0


def _short_list(names, limit=6) -> str:
    names = list(names)
    return ", ".join(names[:limit]) + (", …" if len(names) > limit else "")


def run_explain(args) -> int:
    from .cams import cam_method, resolve_targets
    from .data import collect_image_paths, display_image, load_images, to_batch

    backend = _load(args.model, args)
    method = cam_method(args.method)(backend, layer=args.layer, batch_size=args.batch_size)
    paths = collect_image_paths(args.images)
    if not paths:
        raise BadInput(f"no images found in {', '.join(map(str, args.images))}")
    images, errors = load_images(paths)
    for error in errors:
        print(f"kdx: skipped {error}", file=sys.stderr)
    if not images:
        raise BadInput("none of the images could be read")
    rule, class_index = _target_rule(args.target)
    pre = backend.info.preprocessing
    names = _unique_names(image.path for image in images)
    for start in range(0, len(images), args.batch_size):
        chunk = images[start:start + args.batch_size]
        x = to_batch(chunk, pre)
        logits = backend.logits(x)
        targets = resolve_targets(rule, logits, class_index=class_index)
        result = method(x, targets, target_rule=args.target)
        result = _with_image_records(result, chunk)
        provenance = _provenance(backend, chunk)
        out = args.out if len(images) <= args.batch_size else args.out / f"batch_{start // args.batch_size:03d}"
        manifest = result.save(out, names[start:start + len(chunk)], [display_image(i.rgb, pre) for i in chunk],
                               provenance, colormap=args.colormap, opacity=args.opacity, overwrite=args.overwrite)
        print(f"wrote {len(chunk)} map(s) and {manifest}")
    for image in images:
        for note in image.notes:
            print(f"note: {image.path.name}: {note}")
    return 0 if not errors else EXIT_BAD_INPUT


def _target_rule(text: str) -> tuple[str, int | None]:
    if text.startswith("class:"):
        try:
            return "class", int(text.split(":", 1)[1])
        except ValueError as exc:
            raise BadInput(f"--target {text!r}: class index must be an integer") from exc
    if text not in ("predicted", "true"):
        raise BadInput(f"--target {text!r}: use predicted, true or class:K")
    if text == "true":
        raise BadInput("--target true needs labelled images; use 'kdx metrics' with a dataset folder")
    return text, None


def _unique_names(paths) -> list[str]:
    names, seen = [], {}
    for path in paths:
        stem = Path(path).name.split(".")[0]
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        names.append(stem if count == 0 else f"{stem}_{count}")
    return names


def _with_image_records(result, chunk):
    records = [{"file": str(i.path), "sha256": i.sha256, "notes": list(i.notes)} for i in chunk]
    return dataclasses.replace(result, details={**result.details, "image_files": records})


def _provenance(backend, chunk) -> dict:
    info = backend.info
    return {
        "model": {"file": info.path, "sha256": info.sha256, "format": info.format, "backend": info.backend,
                  "architecture": info.architecture, "preprocessing": info.preprocessing.to_json(),
                  "notes": list(info.notes)},
        "n_images": len(chunk),
        "seed": None,
    }


if __name__ == "__main__":
    sys.exit(main())
