"""The ``kdx`` command line: ``info``, ``explain`` (CAM methods and UniCAM), ``metrics``, ``zoo build``.

Exit codes: 0 ok, 2 bad input (one line on stderr naming the file and the problem).
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
from pathlib import Path

from kdx_engine.labels import labelling_class_names

EXIT_BAD_INPUT = 2
# Commands that live in their own module, kdx_engine/cli/<name>.py, each with add_command(subparsers).
COMMAND_MODULES: tuple[str, ...] = ("scan", "concepts")
CAM_NAMES = "gradcam (default), gradcam++, xgradcam, layercam, hirescam, scorecam, ablationcam, rollout (ViT/DeiT)"


class BadInput(Exception):
    """Input the user can fix; printed as one line, exit code 2."""


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 is printed with \xe9 escapes
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except BadInput as exc:
        print(f"kdx: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ValueError, FileExistsError) as exc:  # the engine reports bad input as these
        hint = getattr(exc, "cli_hint", None)  # what to do about it on the command line (the window says otherwise)
        print(f"kdx: error: {exc}" + (f"\nkdx: hint: {hint}" if hint else ""), file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # a file that cannot be read or written, named with the reason
        where = exc.filename or "a file"
        print(f"kdx: error: {where}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("kdx: interrupted; files already written are complete, nothing is half-written", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kdx", description="Explain and measure knowledge distillation.")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="describe a model file (or list the known architectures)")
    info.add_argument("model", type=Path, nargs="?")
    info.add_argument("--list-archs", action="store_true",
                      help="list the architectures a state_dict is recognised as, with their fingerprints")
    _model_options(info)
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.add_argument("--save-sidecar", action="store_true", help="write the preprocessing to MODEL.kdx.json")
    info.set_defaults(run=run_info)

    explain = sub.add_parser("explain", help="maps for images: .npy on each image's pixel grid, overlay PNG, "
                                             "one manifest.json")
    explain.add_argument("images", nargs="+", type=Path, help="image files or folders")
    explain.add_argument("--method", default="gradcam", help=f"{CAM_NAMES} or unicam")
    explain.add_argument("--model", type=Path, help="the model to explain (CAM methods)")
    _pair_options(explain, required=False)
    _model_options(explain)
    explain.add_argument("--layer", help="target layer (default: automatic; see kdx info)")
    explain.add_argument("--target", default="predicted", help="predicted | class:K")
    explain.add_argument("--out", type=Path, required=True, help="output folder")
    _view_options(explain)
    explain.add_argument("--batch-size", type=int, default=16)
    explain.add_argument("--overwrite", action="store_true")
    explain.set_defaults(run=run_explain)

    export = sub.add_parser("export", help="a figure panel (rows of images × columns of panels) as PNG, SVG or "
                                           "PDF, with the maps, metrics and manifest beside it")
    export.add_argument("images", nargs="+", type=Path, help="image files or folders (one row each)")
    _pair_options(export, required=True)
    _model_options(export)
    export.add_argument("--method", default="gradcam", help=CAM_NAMES)
    export.add_argument("--target", default="predicted", help="predicted | true | class:K (true: from the "
                                                              "images' folder names)")
    export.add_argument("--columns", help=f"comma-separated, in order: {', '.join(_figure_columns())} (default: "
                                          "all that the given models and options can compute)")
    export.add_argument("--metrics", default="kl,pearson,top_iou,energy",
                        help="under each row: kl, pearson, spearman, top_iou, energy, pointing (or none)")
    export.add_argument("--format", choices=("png", "svg", "pdf"), help="default: from --out's suffix")
    export.add_argument("--dpi", type=int, default=300)
    export.add_argument("--out", type=Path, required=True, help="the figure file; its data goes to <stem>_data/")
    _view_options(export)
    export.add_argument("--threshold", type=float, default=0.0, help="hide map pixels below this percentile")
    export.add_argument("--shared-scale", action="store_true", help="one 0…max scale per group of panels")
    export.add_argument("--overwrite", action="store_true")
    _distillation().add_export_options(export)
    export.set_defaults(run=run_export)

    metrics = sub.add_parser("metrics", help="FSS, CKA, RS and partial RS with jackknife intervals, as JSON")
    metrics.add_argument("--teacher", type=Path, required=True)
    metrics.add_argument("--student", type=Path, required=True)
    metrics.add_argument("--base", type=Path)
    metrics.add_argument("--dataset", type=Path, required=True, help="ImageFolder: class_name/image.ext")
    metrics.add_argument("--embeddings", type=Path, help="K×e class embeddings (.npy), rows in class order")
    metrics.add_argument("--out", type=Path, required=True)
    metrics.add_argument("--seed", type=int, default=0)
    metrics.add_argument("--batch-size", type=int, default=32)
    metrics.add_argument("--overwrite", action="store_true")
    _model_options(metrics)
    _distillation().add_metrics_options(metrics)
    metrics.set_defaults(run=run_metrics)

    zoo = sub.add_parser("zoo", help="the bundled demo models")
    zoo_sub = zoo.add_subparsers(dest="zoo_command", required=True)
    build = zoo_sub.add_parser("build", help="train the demo models on the synthetic shapes (about 15 min "
                                             "on 2 CPU cores) and write them with zoo.json")
    # Both folders are named by the user: an installed package is never written to.
    build.add_argument("--out", type=Path, required=True, help="folder for the models and zoo.json")
    build.add_argument("--samples", type=Path, required=True,
                       help="folder for the gallery's sample images and masks")
    build.add_argument("--quick", action="store_true", help="tiny data and one epoch each (a smoke test)")
    build.add_argument("--threads", type=int, default=1, help="CPU threads (fixed, for reproducible weights)")
    build.add_argument("--overwrite", action="store_true", help="replace existing --out and --samples folders")
    build.set_defaults(run=run_zoo_build)
    for name in COMMAND_MODULES:
        importlib.import_module(f"kdx_engine.cli.{name}").add_command(sub)
    return parser


def _distillation():
    """Dark knowledge and embeddings for metrics and export (issue 16), in their own module."""
    return importlib.import_module("kdx_engine.cli.distillation")


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", help="architecture of a state_dict (default: recognised from its parameters)")
    parser.add_argument("--which", choices=("student", "teacher", "ema"),
                        help="model to take from a two-model checkpoint (ema: a training checkpoint's EMA weights)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow a full pickled module (runs code from the file: only for files you trust)")
    group = parser.add_argument_group(
        "preprocessing", "for every model given that has no MODEL.kdx.json sidecar (a sidecar always wins): "
        "--preprocessing FILE replaces its preset or fallback, then each option below replaces one value")
    group.add_argument("--preprocessing", type=Path, metavar="FILE",
                       help="a JSON file in the sidecar format (see README: 'The preprocessing sidecar')")
    group.add_argument("--input-size", type=int, metavar="PX",
                       help="square input size; without --resize, 96 px and up are resized to PX/0.875 and "
                            "centre-cropped, smaller sizes resized straight to PX")
    group.add_argument("--resize", type=int, metavar="PX", help="shorter side before the centre crop (0: none)")
    group.add_argument("--mean", type=float, nargs=3, metavar=("R", "G", "B"), help="normalisation mean, 0…1 scale")
    group.add_argument("--std", type=float, nargs=3, metavar=("R", "G", "B"), help="normalisation std, 0…1 scale")


def _pair_options(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--teacher", type=Path, required=required, help="the Teacher")
    parser.add_argument("--student", type=Path, required=required, help="the Student")
    parser.add_argument("--base", type=Path, help="the Base (without it, UniCAM shows S|T and T|S)")
    parser.add_argument("--reference", type=Path, help="UniCAM: ImageFolder to draw the reference set from")
    parser.add_argument("--n", type=int, default=16, help="UniCAM: reference images + query (default 16)")
    parser.add_argument("--variant", default="label-free", help="UniCAM: label-free (default, our choice) | "
                                                                "label-guided")
    parser.add_argument("--seed", type=int, default=0, help="seed of the reference set's draw")


def _view_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--colormap", default="jet")
    parser.add_argument("--opacity", type=float, default=0.5, help="of the map over the image, 0…1")


def _figure_columns() -> tuple[str, ...]:
    from kdx_engine.roles import PANEL_KEYS

    return PANEL_KEYS


def _load(path: Path, args):
    from kdx_engine.models import load_model

    backend = load_model(path, arch=args.arch, which=args.which, trust_pickle=args.trust_pickle,
                         options=preprocessing_options(args))
    print_model_notes([backend], args)
    return backend


def preprocessing_options(args):
    """The command's ``--preprocessing``/``--input-size``/``--resize``/``--mean``/``--std`` (None when none is
    given), checked once; a bad value is a BadInput naming the option."""
    from kdx_engine.models.preprocessing import PreprocessingOptions, read_preprocessing_file

    if "_preprocessing_options" in vars(args):
        return args._preprocessing_options
    values = {"input_size": args.input_size, "resize": args.resize, "mean": args.mean, "std": args.std}
    base = None
    if args.preprocessing is not None:
        try:
            base = read_preprocessing_file(args.preprocessing, source="command-line")
        except ValueError as exc:
            raise BadInput(f"--preprocessing {exc}") from exc
    options = None
    if base is not None or any(v is not None for v in values.values()):
        try:
            options = PreprocessingOptions(base=base, **{k: tuple(v) if isinstance(v, list) else v
                                                         for k, v in values.items()})
        except ValueError as exc:
            raise BadInput(f"preprocessing options: {exc}".replace("'input_size'", "--input-size")
                           .replace("'resize'", "--resize").replace("'mean'", "--mean").replace("'std'", "--std")) from exc
    args._preprocessing_options = options
    return options


def print_model_notes(backends, args=None) -> None:
    """One line on stderr per model whose preprocessing is a preset or fallback (no sidecar, no options),
    or whose sidecar kept the options from applying; one per model whose output is probabilities."""
    options = preprocessing_options(args) if args is not None else None
    for backend in backends:
        info = backend.info
        name = Path(info.path).name
        source = info.preprocessing.source
        if source not in ("sidecar", "command-line") and info.preprocessing_origin:
            print(f"note: {name}: {info.preprocessing_origin}", file=sys.stderr)
        elif source == "sidecar" and options is not None:
            print(f"note: {name}: its sidecar's preprocessing is used; the preprocessing options do not apply to it",
                  file=sys.stderr)
        if not info.output.is_logits:
            print(f"note: {name}: output: {info.output.describe()}", file=sys.stderr)


def run_info(args) -> int:
    from kdx_engine.models import architecture_families, probe_layers, target_layer_or_reason, write_sidecar

    if args.list_archs:
        families = architecture_families()
        if args.json:
            print(json.dumps([family.to_json() for family in families], indent=2))
        else:
            for family in families:
                print(f"{family.name:24s} {family.family:14s} {family.description}")
        return 0
    if args.model is None:
        raise BadInput("give a MODEL file (or --list-archs)")
    backend = _load(args.model, args)
    info = backend.info
    layers = probe_layers(backend)
    default_layer, _ = target_layer_or_reason(layers)
    pre = info.preprocessing
    data = {
        "file": info.path, "format": info.format, "backend": info.backend, "architecture": info.architecture,
        "classes": list(pre.class_names), "num_classes": info.num_classes,
        "input_size": pre.input_size, "resize": pre.resize, "mean": list(pre.mean), "std": list(pre.std),
        "preprocessing_source": pre.source, "preprocessing_origin": info.preprocessing_origin,
        "output": info.output.to_json(), "parameters": info.num_parameters, "sha256": info.sha256,
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
    print(f"preprocessing: {info.preprocessing_origin or pre.source}")
    print(f"output:        {info.output.describe()}")
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
    """Maps of one model (CAM methods) or of a pair (UniCAM), each on its image's pixel grid."""
    _check_view_options(args)
    if args.method.lower() == "unicam":
        return run_unicam(args)
    from kdx_engine.cams import TargetRule, cam_method
    from kdx_engine.comparison import image_grid, maps_on_grid
    from kdx_engine.data import to_batch

    if args.model is None:
        raise BadInput("--model is required for CAM methods (or use --method unicam with --teacher/--student)")
    method_class = cam_method(args.method)
    rule, class_index = _target_rule(args.target, allow_true=False)
    images, errors = _read_images(args.images)
    names = _unique_names(image.path for image in images)
    writer = _MapWriter(args.out, args.overwrite, args.colormap, args.opacity)
    writer.check([Path(name) for name in names])
    backend = _load(args.model, args)
    method = _cam(method_class, backend, args.layer, args.batch_size)
    pre = backend.info.preprocessing
    records = []
    with _bar(len(images), "explain") as bar:
        for start in range(0, len(images), args.batch_size):
            chunk = images[start:start + args.batch_size]
            result = method(to_batch(chunk, pre), TargetRule(rule, class_index=class_index))
            for i, image in enumerate(chunk):
                grid = image_grid(*image.rgb.shape[:2])
                values = maps_on_grid(result.low_res[i:i + 1], image.rgb.shape[:2], pre, grid)[0]
                name = names[start + i]
                writer.write(Path(name), image, values)
                records.append({**_image_record(image, name, grid), "target": result.targets[i],
                                "target_name": _class_name(pre.class_names, result.targets[i]),
                                "note": result.notes[i], "map": f"{name}.npy", "overlay": f"{name}.png"})
                bar.update(1)
    manifest = writer.manifest({
        "method": method.name, "layer": method.layer, "target_rule": rule, "target_class": class_index,
        "model": _model_record(backend, method.layer), "images": records})
    print(f"wrote {len(records)} map(s) and {manifest}")
    _print_image_notes(images)
    return 0 if not errors else EXIT_BAD_INPUT


def _cam(method_class, backend, layer, batch_size):
    from kdx_engine.models import probe_layers

    if layer is not None:
        names = [l.name for l in probe_layers(backend)]
        if layer not in names:
            raise BadInput(f"{Path(backend.info.path).name}: no layer {layer!r}; layers are "
                           f"{_short_list(names, 12)} (see kdx info)")
    return method_class(backend, layer=layer, batch_size=batch_size)


def _read_images(paths):
    from kdx_engine.data import collect_image_paths, load_images

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
    """The distilled and residual maps (S|B and B|S; S|T and T|S without a Base) of each image."""
    from kdx_engine.comparison import ComparisonSettings, UniCamCache, compare_image
    from kdx_engine.labels import class_index, label_hints
    from kdx_engine.roles import ROLE_LETTERS, UNICAM_KEYS, unicam_pair

    if args.teacher is None or args.student is None or args.reference is None:
        raise BadInput("UniCAM needs --teacher, --student and --reference (and optionally --base)")
    _check_unicam_options(args)
    images, errors = _read_images(args.images)
    names = _unique_names(image.path for image in images)
    roles = ("teacher", "student", "base") if args.base else ("teacher", "student")
    folders = {key: f"{key}_{'_given_'.join(ROLE_LETTERS[r] for r in unicam_pair(key, roles))}" for key in UNICAM_KEYS}
    writer = _MapWriter(args.out, args.overwrite, args.colormap, args.opacity)
    writer.check([Path(folders[key]) / name for key in UNICAM_KEYS for name in names])
    models = _comparison_models(args)
    reference = _reference_set(args, models)
    settings = ComparisonSettings(unicam_variant=args.variant, reference_n=args.n, colormap=args.colormap,
                                  opacity=args.opacity)
    class_names = labelling_class_names(m.backend.info.preprocessing.class_names for m in models.values())
    cache, records = UniCamCache(), []
    with _bar(len(images), "unicam") as bar:
        for image, name in zip(images, names):
            label = class_index(label_hints(image.path), class_names)  # a class folder names the query's class
            comparison = compare_image(models, image, label, settings=settings, reference=reference,
                                       unicam_cache=cache, panels=UNICAM_KEYS)
            record = {**_image_record(image, name, comparison.grid), "true_class": label}
            for key in UNICAM_KEYS:
                panel = comparison.panels[key]
                if panel.values is None:
                    raise BadInput(f"{image.path.name}: {panel.message}")
                writer.write(Path(folders[key]) / name, image, panel.values)
                record[key] = {"title": panel.title, "note": panel.note, "map": f"{folders[key]}/{name}.npy",
                               "overlay": f"{folders[key]}/{name}.png", **panel.details}
            records.append(record)
            bar.update(1)
    manifest = writer.manifest({
        "method": "unicam", "variant": args.variant, "variant_choice": "label-free is the default (our choice, "
        "METHODS §4)" if args.variant == "label-free" else "chosen by the user", "n": args.n, "seed": args.seed,
        "reference": {"source": reference.source, "seed": reference.seed, "hashes": reference.hashes},
        "models": {role: _model_record(m.backend, m.layer) for role, m in models.items()}, "images": records})
    print(f"wrote {len(records)} image(s): {', '.join(folders.values())} maps and {manifest}")
    _print_image_notes(images)
    return 0 if not errors else EXIT_BAD_INPUT


def run_export(args) -> int:
    """A figure panel of the comparisons of the given images, with its data folder."""
    from kdx_engine.comparison import ComparisonSettings, UniCamCache, compare_image
    from kdx_engine.comparison.export import check_export_location, export_comparisons
    from kdx_engine.figures.figure_panel import FigureOptions
    from kdx_engine.labels import class_index, label_hints

    _check_view_options(args)
    fmt = args.format or args.out.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg", "pdf"):
        raise BadInput(f"--out {args.out}: give a .png, .svg or .pdf file (or --format)")
    out = args.out if args.out.suffix.lower() == f".{fmt}" else args.out.with_name(args.out.name + f".{fmt}")
    columns = _export_columns(args)
    metrics = () if args.metrics.strip() in ("", "none") else tuple(m.strip() for m in args.metrics.split(","))
    options = FigureOptions(columns=columns, metrics=metrics, format=fmt, dpi=args.dpi)
    rule, target_class = _target_rule(args.target, allow_true=True)
    if not 0 <= args.threshold < 100:
        raise BadInput(f"--threshold {args.threshold}: give a percentile in 0…100")
    check_export_location(out, args.overwrite)
    plot_kinds = _distillation().plot_kinds(args)
    images, errors = _read_images(args.images)
    models = _comparison_models(args)
    wants_unicam = any(c in ("distilled", "residual") for c in columns)
    if wants_unicam:
        _check_unicam_options(args)
        if args.reference is None:
            raise BadInput("the distilled and residual columns need --reference DIR (an ImageFolder); "
                           "or leave them out of --columns")
    reference = _reference_set(args, models) if wants_unicam else None
    settings = ComparisonSettings(method=args.method.lower(), target_rule=rule, class_index=target_class or 0,
                                  unicam_variant=args.variant, reference_n=args.n, colormap=args.colormap,
                                  opacity=args.opacity, threshold=args.threshold, shared_scale=args.shared_scale)
    from kdx_engine.cams import cam_method

    cam_method(settings.method)
    class_names = labelling_class_names(m.backend.info.preprocessing.class_names for m in models.values())
    cache, comparisons = UniCamCache(), []
    with _bar(len(images), "export") as bar:
        for image in images:
            label = class_index(label_hints(image.path), class_names)
            comparisons.append(compare_image(models, image, label, settings, reference=reference, unicam_cache=cache,
                                             panels=("input", *columns)))
            bar.update(1)
    provenance = {"seed": args.seed}
    if plot_kinds:  # dark knowledge and embeddings over a dataset, drawn under the rows (issue 16)
        plots, provenance["distillation_plots"] = _distillation().figure_plots(
            args, plot_kinds, {role: m.backend for role, m in models.items()})
        options = dataclasses.replace(options, plots=plots)
    result = export_comparisons(comparisons, out, options, overwrite=args.overwrite, provenance=provenance)
    print(f"wrote {result.figure} and {result.folder}/ ({len(result.files) - 1} files)")
    unlabelled = [c.image.path.name for c in comparisons if c.label is None]
    if rule == "true" and unlabelled:
        print(f"note: --target true: {len(unlabelled)} of {len(comparisons)} image(s) have no label (not in a folder "
              f"named after a class), so their prediction is explained and recorded as such: "
              f"{', '.join(unlabelled[:3])}{', …' if len(unlabelled) > 3 else ''}")
    _print_image_notes(images)
    return 0 if not errors else EXIT_BAD_INPUT


def _export_columns(args) -> tuple[str, ...]:
    """The columns asked for; by default every column the given models and options can compute, with one
    line saying which were left out and why."""
    if args.columns is not None:
        return tuple(c.strip() for c in args.columns.split(",") if c.strip())
    needs = {"base": "--base MODEL" if args.base is None else None,
             "distilled": "--reference DIR" if args.reference is None else None}
    needs["residual"] = needs["distilled"]
    left_out = {key: need for key, need in needs.items() if need is not None}
    if left_out:
        reasons = "; ".join(f"{' and '.join(k for k in left_out if left_out[k] == need)} "
                            f"need{'s' if sum(v == need for v in left_out.values()) == 1 else ''} {need}"
                            for need in dict.fromkeys(left_out.values()))
        print(f"note: column{'s' if len(left_out) > 1 else ''} {', '.join(left_out)} left out: {reasons}")
    return tuple(c for c in _figure_columns() if c not in left_out)


def _comparison_models(args) -> dict:
    from kdx_engine.models.loading import check_same_classes
    from kdx_engine.scan.models import comparison_models

    paths = {"teacher": args.teacher, "student": args.student, "base": args.base}
    backends = {role: _load(path, args) for role, path in paths.items() if path is not None}
    check_same_classes(*backends.values())
    return comparison_models(backends)


def _reference_set(args, models):
    from kdx_engine.unicam import ReferenceSet

    return ReferenceSet.from_folder(args.reference, n=args.n, seed=args.seed,
                                    class_names=labelling_class_names(
                                        m.backend.info.preprocessing.class_names for m in models.values()))


def _check_view_options(args) -> None:
    """Every drawing option is checked before anything is loaded, computed or written."""
    from kdx_engine.figures import COLORMAPS

    if args.colormap not in COLORMAPS:
        raise BadInput(f"--colormap {args.colormap!r}: use one of {', '.join(COLORMAPS)}")
    if not 0.0 <= args.opacity <= 1.0:
        raise BadInput(f"--opacity {args.opacity}: give a value in 0…1")
    if getattr(args, "batch_size", 1) < 1:
        raise BadInput(f"--batch-size {args.batch_size}: give at least 1")


def _check_unicam_options(args) -> None:
    from kdx_engine.unicam import VARIANTS

    if args.variant not in VARIANTS:
        raise BadInput(f"--variant {args.variant!r}: use one of {', '.join(VARIANTS)}")
    if args.n < 4:
        raise BadInput(f"--n {args.n}: UniCAM needs n ≥ 4 (reference images + the query)")


class _MapWriter:
    """Writes ``<name>.npy`` (raw map on the image grid) and ``<name>.png`` (overlay on the image) under
    one folder, then one manifest.json; refuses up front to replace files without ``overwrite``. The maps
    are staged in a hidden folder and moved into place with the manifest, so a run stopped midway (even
    killed) leaves the previous maps as they were, never a mix of old and new under the old manifest."""

    def __init__(self, out: Path, overwrite: bool, colormap: str, opacity: float):
        self.out, self.overwrite, self.colormap, self.opacity = out, overwrite, colormap, opacity
        self.staging: Path | None = None

    def check(self, stems: list[Path]) -> None:
        from kdx_engine.output_paths import check_writable_folder

        check_writable_folder(self.out)
        targets = [self.out / f"{stem}.{ext}" for stem in stems for ext in ("npy", "png")]
        existing = [p for p in [*targets, self.out / "manifest.json"] if p.exists()]
        if existing and not self.overwrite:
            shown = ", ".join(str(p.relative_to(self.out)) for p in existing[:3])
            raise BadInput(f"{self.out}: would overwrite {shown}{' …' if len(existing) > 3 else ''} (use --overwrite)")

    def write(self, stem: Path, image, values) -> None:
        import io

        import numpy as np
        from PIL import Image

        from kdx_engine.atomic_files import atomic_write_bytes
        from kdx_engine.comparison import Panel, image_frame
        from kdx_engine.figures import panel_scales, render_panel

        staged = self._staged() / stem
        staged.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.save(buffer, values.astype(np.float32))
        atomic_write_bytes(staged.with_name(f"{staged.name}.npy"), buffer.getvalue())
        frame = image_frame(image)
        scale = panel_scales({"map": Panel("map", "", values=values)}, shared=False)["map"]
        png = io.BytesIO()
        Image.fromarray(render_panel(frame, values, "map", scale, self.colormap, self.opacity, 0.0)).save(png, "PNG")
        atomic_write_bytes(staged.with_name(f"{staged.name}.png"), png.getvalue())

    def _staged(self) -> Path:
        import shutil
        import tempfile
        import weakref

        from kdx_engine.atomic_files import TEMP_MARKER

        if self.staging is None:
            self.out.mkdir(parents=True, exist_ok=True)
            self.staging = Path(tempfile.mkdtemp(prefix=f".maps{TEMP_MARKER}", dir=self.out))
            self._discard = weakref.finalize(self, shutil.rmtree, self.staging, True)  # nor after an error midway
        return self.staging

    def _move_into_place(self) -> None:
        """The staged maps into ``out``; the old manifest goes first, so a manifest always describes its maps."""
        import os

        (self.out / "manifest.json").unlink(missing_ok=True)
        staging = self._staged()
        for folder, _, names in os.walk(staging):
            for name in names:
                relative = (Path(folder) / name).relative_to(staging)
                (self.out / relative).parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / relative, self.out / relative)
        self._discard()

    def manifest(self, record: dict) -> Path:
        from kdx_engine.atomic_files import atomic_write_text
        from kdx_engine.comparison import NORMALISATION
        from kdx_engine.comparison.export import strict_json
        from kdx_engine.provenance import package_versions

        data = {**record, "maps": {"grid": "each image's own pixel grid (scaled uniformly when its longer side "
                                           "exceeds 1024 px); NaN outside the model's crop",
                                   "values": "raw map after ReLU (.npy, float32)",
                                   "overlay": f"{self.colormap}, opacity {self.opacity}, {NORMALISATION}"},
                "versions": package_versions()}
        self._move_into_place()
        path = self.out / "manifest.json"
        atomic_write_text(path, strict_json(data) + "\n")
        return path


def _image_record(image, name, grid) -> dict:
    return {"name": name, "file": str(image.path), "sha256": image.sha256, "notes": list(image.notes),
            "size": [image.rgb.shape[1], image.rgb.shape[0]], "grid": [grid.width, grid.height, grid.scale]}


def _model_record(backend, layer) -> dict:
    from kdx_engine.comparison import ComparisonModel, model_record

    return model_record(ComparisonModel(backend, layer))


def _class_name(names, index) -> str | None:
    return names[index] if 0 <= index < len(names) else None


def _print_image_notes(images) -> None:
    for image in images:
        for note in image.notes:
            print(f"note: {image.path.name}: {note}")


def _bar(total: int, what: str):
    """A progress bar on the terminal (silent when stderr is not a terminal)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=what, unit="image", file=sys.stderr, disable=not sys.stderr.isatty(), leave=False)


def run_metrics(args) -> int:
    import numpy as np

    from kdx_engine.data import ImageFolderDataset
    from kdx_engine.jobs import Progress
    from kdx_engine.metrics import dataset_metrics
    from kdx_engine.models.loading import check_same_classes

    from kdx_engine.output_paths import check_new_file

    check_new_file(args.out, args.overwrite, "metrics")  # before hours of computing, not after
    if args.batch_size < 1:
        raise BadInput(f"--batch-size {args.batch_size}: give at least 1")
    _distillation().check_metrics_options(args)
    teacher, student = _load(args.teacher, args), _load(args.student, args)
    base = _load(args.base, args) if args.base else None
    check_same_classes(teacher, student, *([base] if base else []))
    embeddings = None
    if args.embeddings:
        try:
            from kdx_engine.file_reading import SpecialFileError, check_regular

            check_regular(args.embeddings)
            embeddings = np.load(args.embeddings, allow_pickle=False)
        except SpecialFileError as exc:
            raise BadInput(f"{exc}: not a usable --embeddings file") from exc
        except (OSError, ValueError) as exc:
            raise BadInput(f"{args.embeddings.name}: not a readable .npy array ({exc})") from exc
        if embeddings.ndim != 2 or embeddings.shape[0] != teacher.info.num_classes:
            raise BadInput(f"{args.embeddings.name}: shape {embeddings.shape}, expected "
                           f"{teacher.info.num_classes}×e (one row per class)")
    dataset = ImageFolderDataset(args.dataset, class_names=labelling_class_names(
        b.info.preprocessing.class_names for b in (teacher, student, base) if b is not None))
    result = dataset_metrics(teacher, student, dataset, base=base, embeddings=embeddings,
                             seed=args.seed, batch_size=args.batch_size, progress=Progress(_FractionBar("metrics")))
    numbers = None
    if not args.no_embeddings:  # dark knowledge and embeddings (issue 16), written in the same JSON at once
        models = {"teacher": teacher, "student": student, **({"base": base} if base else {})}
        numbers = _distillation().dataset_numbers(args, models, dataset, Progress(_FractionBar("features")))
    _distillation().write_metrics_file(args.out, result, numbers)
    for pair in result.fss:
        v = pair.result
        print(f"FSS {pair.a}.{pair.layer_a} ~ {pair.b}.{pair.layer_b}: {v.value:.3f} [{v.low:.3f}, {v.high:.3f}]")
    for rs in result.rs:
        v = rs.result
        print(f"RS  {rs.model}.{rs.layer}: {v.value:.3f} [{v.low:.3f}, {v.high:.3f}]")
    print(f"n = {result.n}; wrote {args.out}")
    for note in result.notes:
        print(f"note: {note}")
    if numbers is not None:
        _distillation().print_numbers(numbers[0], numbers[2])
    for problem in result.skipped:
        print(f"kdx: skipped {problem}", file=sys.stderr)
    return EXIT_BAD_INPUT if result.skipped else 0


class _FractionBar:
    """A Progress callback drawing a terminal bar (silent when stderr is not a terminal)."""

    def __init__(self, what: str):
        from tqdm import tqdm

        self.bar = tqdm(total=1000, desc=what, file=sys.stderr, disable=not sys.stderr.isatty(), leave=False,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")

    def __call__(self, fraction: float, message: str) -> None:
        self.bar.n = int(1000 * fraction)
        self.bar.set_postfix_str(message[:48], refresh=False)
        self.bar.refresh()


def run_zoo_build(args) -> int:
    from kdx_engine.jobs import Progress
    from kdx_engine.zoo import FULL_PLAN, QUICK_PLAN, build_zoo

    if args.threads < 1:
        raise BadInput("--threads must be at least 1")
    bar = _FractionBar("zoo build")
    build_zoo(args.out, args.samples, QUICK_PLAN if args.quick else FULL_PLAN, threads=args.threads,
              overwrite=args.overwrite, progress=Progress(bar),
              log=lambda line: bar.bar.write(f"[{bar.bar.n / 10:3.0f}%] {line}", file=sys.stdout))
    return 0


def _target_rule(text: str, allow_true: bool) -> tuple[str, int | None]:
    if text.startswith("class:"):
        try:
            index = int(text.split(":", 1)[1])
        except ValueError as exc:
            raise BadInput(f"--target {text!r}: class index must be an integer") from exc
        if index < 0:
            raise BadInput(f"--target {text!r}: class index must be ≥ 0")
        return "class", index
    if text == "true" and not allow_true:
        raise BadInput("--target true needs labelled images; use 'kdx export --target true' on class folders")
    if text not in ("predicted", "true"):
        raise BadInput(f"--target {text!r}: use predicted, true or class:K")
    return text, None


def _unique_names(paths) -> list[str]:
    from kdx_engine.comparison.export import unique_names

    return unique_names(paths)


if __name__ == "__main__":
    sys.exit(main())
