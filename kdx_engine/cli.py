"""The ``kdx`` command line: ``info``, ``explain`` (CAM methods and UniCAM), ``metrics``, ``zoo build``.

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
    explain.add_argument("--model", type=Path, help="the model to explain (CAM methods)")
    explain.add_argument("--teacher", type=Path, help="UniCAM: the Teacher")
    explain.add_argument("--student", type=Path, help="UniCAM: the Student")
    explain.add_argument("--base", type=Path, help="UniCAM: the Base (without it: S|T and T|S maps)")
    explain.add_argument("--reference", type=Path, help="UniCAM: ImageFolder to draw the reference set from")
    explain.add_argument("--n", type=int, default=16, help="UniCAM: reference images + query (default 16)")
    explain.add_argument("--variant", default="label-guided", help="UniCAM: label-guided | label-free")
    explain.add_argument("--seed", type=int, default=0)
    _model_options(explain)
    explain.add_argument("--layer", help="target layer (default: automatic)")
    explain.add_argument("--target", default="predicted", help="predicted | true | class:K")
    explain.add_argument("--out", type=Path, required=True)
    explain.add_argument("--colormap", default="jet")
    explain.add_argument("--opacity", type=float, default=0.5)
    explain.add_argument("--batch-size", type=int, default=16)
    explain.add_argument("--overwrite", action="store_true")
    explain.set_defaults(run=run_explain)

    metrics = sub.add_parser("metrics", help="FSS, CKA, RS and partial RS with bootstrap intervals, as JSON")
    metrics.add_argument("--teacher", type=Path, required=True)
    metrics.add_argument("--student", type=Path, required=True)
    metrics.add_argument("--base", type=Path)
    metrics.add_argument("--dataset", type=Path, required=True, help="ImageFolder: class_name/image.ext")
    metrics.add_argument("--embeddings", type=Path, help="K×e class embeddings (.npy), rows in class order")
    metrics.add_argument("--out", type=Path, required=True)
    metrics.add_argument("--resamples", type=int, default=200)
    metrics.add_argument("--seed", type=int, default=0)
    metrics.add_argument("--batch-size", type=int, default=32)
    metrics.add_argument("--overwrite", action="store_true")
    _model_options(metrics)
    metrics.set_defaults(run=run_metrics)

    zoo = sub.add_parser("zoo", help="the bundled demo models")
    zoo_sub = zoo.add_subparsers(dest="zoo_command", required=True)
    build = zoo_sub.add_parser("build", help="train the demo models on the synthetic shapes (about 15 min "
                                             "on 2 CPU cores) and write them with zoo.json")
    build.add_argument("--out", type=Path, default=Path("resources/models"), help="folder for the models")
    build.add_argument("--samples", type=Path, default=Path("resources/samples"),
                       help="folder for the gallery's sample images and masks")
    build.add_argument("--quick", action="store_true", help="tiny data and one epoch each (a smoke test)")
    build.add_argument("--threads", type=int, default=1, help="CPU threads (fixed, for reproducible weights)")
    build.add_argument("--overwrite", action="store_true", help="replace existing --out and --samples folders")
    build.set_defaults(run=run_zoo_build)
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
    if args.method.lower() == "unicam":
        return run_unicam(args)
    from .cams import cam_method, resolve_targets
    from .data import display_image, to_batch

    if args.model is None:
        raise BadInput("--model is required for CAM methods")
    backend = _load(args.model, args)
    method = cam_method(args.method)(backend, layer=args.layer, batch_size=args.batch_size)
    images, errors = _read_images(args.images)
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


def _read_images(paths):
    from .data import collect_image_paths, load_images

    found = collect_image_paths(paths)
    if not found:
        raise BadInput(f"no images found in {', '.join(map(str, paths))}")
    images, errors = load_images(found)
    for error in errors:
        print(f"kdx: skipped {error}", file=sys.stderr)
    if not images:
        raise BadInput("none of the images could be read")
    return images, errors


def run_unicam(args) -> int:
    from .data import display_image
    from .models.loading import check_same_classes
    from .unicam import ReferenceSet, distilled_and_residual

    if args.teacher is None or args.student is None or args.reference is None:
        raise BadInput("UniCAM needs --teacher, --student and --reference (and optionally --base)")
    teacher, student = _load(args.teacher, args), _load(args.student, args)
    base = _load(args.base, args) if args.base else None
    check_same_classes(teacher, student, *([base] if base else []))
    reference = ReferenceSet.from_folder(args.reference, n=args.n, seed=args.seed,
                                         class_names=teacher.info.preprocessing.class_names)
    images, errors = _read_images(args.images)
    other, pair = (base, ("distilled_S|B", "residual_B|S")) if base else (teacher, ("S|T", "T|S"))
    names = _unique_names(image.path for image in images)
    for index, (image, name) in enumerate(zip(images, names)):
        maps = distilled_and_residual(student, other, reference, image, variant=args.variant, teacher=teacher)
        for label, result, model in zip(pair, maps, (student, other)):
            out = args.out / label.replace("|", "_given_")
            result = _with_image_records(result, [image])
            result.save(out, [name], [display_image(image.rgb, model.info.preprocessing)],
                        {**_provenance(model, [image]), "seed": args.seed},
                        colormap=args.colormap, opacity=args.opacity, overwrite=args.overwrite or index > 0)
        print(f"[{index + 1}/{len(images)}] {name}: {pair[0]} and {pair[1]} maps written to {args.out}")
    return 0 if not errors else EXIT_BAD_INPUT


def run_metrics(args) -> int:
    import numpy as np

    from .data import ImageFolderDataset
    from .jobs import Progress
    from .metrics import dataset_metrics
    from .models.loading import check_same_classes

    if args.out.exists() and not args.overwrite:
        raise BadInput(f"{args.out}: exists (use --overwrite)")
    teacher, student = _load(args.teacher, args), _load(args.student, args)
    base = _load(args.base, args) if args.base else None
    check_same_classes(teacher, student, *([base] if base else []))
    embeddings = None
    if args.embeddings:
        try:
            embeddings = np.load(args.embeddings, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise BadInput(f"{args.embeddings.name}: not a readable .npy array ({exc})") from exc
        if embeddings.ndim != 2 or embeddings.shape[0] != teacher.info.num_classes:
            raise BadInput(f"{args.embeddings.name}: shape {embeddings.shape}, expected "
                           f"{teacher.info.num_classes}×e (one row per class)")
    dataset = ImageFolderDataset(args.dataset, class_names=teacher.info.preprocessing.class_names)
    result = dataset_metrics(teacher, student, dataset, base=base, embeddings=embeddings, resamples=args.resamples,
                             seed=args.seed, batch_size=args.batch_size, progress=Progress(_progress_bar))
    print(file=sys.stderr)
    result.save(args.out, overwrite=args.overwrite)
    for pair in result.fss:
        v = pair.result
        print(f"FSS {pair.a}.{pair.layer_a} ~ {pair.b}.{pair.layer_b}: {v.value:.3f} [{v.low:.3f}, {v.high:.3f}]")
    for rs in result.rs:
        v = rs.result
        print(f"RS  {rs.model}.{rs.layer}: {v.value:.3f} [{v.low:.3f}, {v.high:.3f}]")
    print(f"n = {result.n}; wrote {args.out}")
    return 0


def _progress_bar(fraction: float, message: str) -> None:
    filled = int(30 * fraction)
    print(f"\r[{'#' * filled}{'.' * (30 - filled)}] {fraction * 100:5.1f}% {message[:50]:50s}", end="",
          file=sys.stderr, flush=True)


def run_zoo_build(args) -> int:
    from .jobs import Progress
    from .zoo import FULL_PLAN, QUICK_PLAN, build_zoo

    if args.threads < 1:
        raise BadInput("--threads must be at least 1")
    done = [0.0]
    progress = Progress(lambda fraction, message: done.__setitem__(0, fraction))
    build_zoo(args.out, args.samples, QUICK_PLAN if args.quick else FULL_PLAN, threads=args.threads,
              overwrite=args.overwrite, progress=progress,
              log=lambda line: print(f"[{done[0] * 100:3.0f}%] {line}", flush=True))
    return 0


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
