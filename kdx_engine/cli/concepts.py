"""``kdx concepts``: visual concepts of distillation (Cheng et al., METHODS §6) for Student, Base and
optionally Teacher over a dataset or images, with trajectory metrics from checkpoint folders.

Writes one folder (atomically): concepts.json, summary.csv, images.csv, entropy_maps/…/*.npy, manifest.json.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROLES = ("student", "base", "teacher")


def add_command(subparsers) -> None:
    from kdx_engine.cli import _model_options

    p = subparsers.add_parser("concepts", help="visual concepts of KD (entropy maps, N_fg, N_bg, λ_ratio; "
                                               "D_mean, D_var, ρ from checkpoints) as JSON, CSV and .npy")
    p.add_argument("images", nargs="+", type=Path, help="an ImageFolder dataset, or image files / folders "
                                                        "(masks as name.mask.png beside the images)")
    p.add_argument("--student", type=Path, required=True, help="the Student (distilled)")
    p.add_argument("--base", type=Path, help="the Base (same architecture, labels only)")
    p.add_argument("--teacher", type=Path, help="the Teacher (analysed too, when given)")
    p.add_argument("--out", type=Path, required=True, help="output folder (written complete or not at all)")
    p.add_argument("--checkpoints", action="append", default=[], metavar="[ROLE=]DIR",
                   help="checkpoints of one training run: ROLE=DIR (role student, base or teacher), or a "
                        "folder holding student/, base/ (teacher/) subfolders; repeatable")
    p.add_argument("--epochs", help="analyse only these checkpoint epochs, e.g. 0,2,8 (Dist still runs "
                                    "through every file; default: all)")
    p.add_argument("--weights-layer", help="the layer whose weights give Dist (default: the analysed layer)")
    p.add_argument("--layer", help="layer f for every model (default: each model's CAM layer; see kdx info)")
    p.add_argument("--n", type=int, help="analyse a class-balanced sample of N images (seeded by --seed)")
    p.add_argument("--grid", type=int, default=16, help="G: σ on a G×G grid (default 16)")
    p.add_argument("--draws", type=int, default=96, help="B: noise draws per step (default 96)")
    p.add_argument("--steps", type=int, default=80, help="SGD steps (default 80)")
    p.add_argument("--lr", type=float, default=1e-4, help="SGD learning rate on σ (default 1e-4)")
    p.add_argument("--lambda", dest="lam", type=float, default=6.0, help="λ (default 6; ×1.5 at step 59 "
                                                                         "if the mean entropy is below target)")
    p.add_argument("--target", type=float, default=-2.8, help="target mean entropy (default −2.8)")
    p.add_argument("--threshold", type=float, help="b: concept when H̄ − H_c > b (default 0.2; "
                                                   "--approximate has its own default)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise draws and of --n's sample")
    p.add_argument("--approximate", action="store_true",
                   help="the one-backward-pass approximation instead of sampling (labelled as such; not the "
                        "published method)")
    p.add_argument("--workers", type=int, default=1, help="processes computing maps in parallel (1 thread each)")
    p.add_argument("--cache", type=Path, help="folder keeping every finished map: a rerun (after a stop, or with "
                                             "more checkpoints) computes only what is missing")
    p.add_argument("--overwrite", action="store_true")
    _model_options(p)
    p.set_defaults(run=run_concepts)


def run_concepts(args) -> int:
    from kdx_engine.cli import BadInput, EXIT_BAD_INPUT, _FractionBar, _load, preprocessing_options
    from kdx_engine.concepts.analysis import ConceptSettings, ModelSpec, analyse_concepts
    from kdx_engine.concepts.approximate import ApproximateSettings
    from kdx_engine.concepts.entropy_map import EntropySettings
    from kdx_engine.concepts.export import check_output_folder, save_concepts
    from kdx_engine.concepts.trajectory import checkpoint_series
    from kdx_engine.jobs import Progress
    from kdx_engine.models import check_same_classes, default_target_layer, probe_layers

    check_output_folder(args.out, args.overwrite)  # before hours of computing, not after
    for name in ("grid", "draws", "steps", "workers"):
        if getattr(args, name) < 1:
            raise BadInput(f"--{name} {getattr(args, name)}: give at least 1")
    if args.n is not None and args.n < 2:
        raise BadInput(f"--n {args.n}: give at least 2 (intervals need 2 images)")
    if args.threshold is not None and args.threshold < 0:
        raise BadInput(f"--threshold {args.threshold}: give a value ≥ 0")
    try:
        sampled = EntropySettings(grid=args.grid, draws=args.draws, steps=args.steps, lr=args.lr, lam=args.lam,
                                  target=args.target, seed=args.seed)
    except ValueError as exc:
        raise BadInput(str(exc)) from exc
    approximate = ApproximateSettings(grid=args.grid, target=args.target, seed=args.seed) if args.approximate else None
    settings = ConceptSettings(sampled, approximate, args.threshold)
    epochs = _epochs(args.epochs, BadInput)
    checkpoint_dirs = _checkpoint_folders(args.checkpoints, BadInput)
    if (epochs or args.weights_layer) and not checkpoint_dirs:
        raise BadInput("--epochs and --weights-layer need --checkpoints")
    paths = {"student": args.student, "base": args.base, "teacher": args.teacher}
    for role in checkpoint_dirs:
        if paths[role] is None:
            raise BadInput(f"--checkpoints {role}=…: give --{role} too (its final model)")
    series = {role: tuple(checkpoint_series(folder)) for role, folder in checkpoint_dirs.items()}
    images = _images(args, BadInput)
    specs = []
    backends = {role: _load(path, args) for role, path in paths.items() if path is not None}
    check_same_classes(*backends.values())
    for role, backend in backends.items():
        layer = args.layer or default_target_layer(probe_layers(backend))
        if args.layer and layer not in backend.layer_names():
            raise BadInput(f"--layer {layer}: {Path(backend.info.path).name} has no such layer (see kdx info)")
        specs.append(ModelSpec(role, backend, layer, series.get(role, ()), epochs if role in series else None,
                               args.weights_layer))
    load_options = {"arch": args.arch, "which": args.which, "trust_pickle": args.trust_pickle,
                    "options": preprocessing_options(args)}
    result = analyse_concepts(specs, images, settings, Progress(_FractionBar("concepts")), workers=args.workers,
                              load_options=load_options, cache_folder=args.cache)
    provenance = {"command": "kdx concepts " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "kdx concepts",
                  "workers": args.workers}
    save_concepts(result, args.out, overwrite=args.overwrite, provenance=provenance)
    _print_summary(result)
    speed = f"{result.seconds_per_map:.1f} s per new map" if result.seconds_per_map == result.seconds_per_map \
        else "every map from the cache"
    print(f"n = {result.n}; {speed}; wrote {args.out}")
    return 0 if result.n else EXIT_BAD_INPUT


def _epochs(text, bad):
    if not text:
        return None
    try:
        values = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise bad(f"--epochs {text}: give comma-separated whole numbers, e.g. 0,2,8") from None
    if len(values) < 2:
        raise bad(f"--epochs {text}: a trajectory needs at least 2 epochs")
    return values


def _checkpoint_folders(values, bad) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for value in values:
        role, sep, rest = value.partition("=")
        if sep:
            if role not in ROLES:
                raise bad(f"--checkpoints {value}: role must be one of {', '.join(ROLES)}")
            pairs = [(role, Path(rest))]
        else:
            folder = Path(value)
            pairs = [(r, folder / r) for r in ROLES if (folder / r).is_dir()]
            if not pairs:
                raise bad(f"--checkpoints {value}: no student/, base/ or teacher/ subfolder (or give ROLE=DIR)")
        for role, folder in pairs:
            if not folder.is_dir():
                raise bad(f"--checkpoints {value}: {folder} is not a folder")
            if role in found:
                raise bad(f"--checkpoints: two folders for the {role}")
            found[role] = folder
    return found


def _images(args, bad):
    from kdx_engine.data import ImageFolderDataset
    from kdx_engine.data.datasets import balanced_indices
    from kdx_engine.data.images import collect_image_paths, load_images

    if len(args.images) == 1 and args.images[0].is_dir():
        dataset = ImageFolderDataset(args.images[0])
        paths, labels = list(dataset.paths), list(dataset.labels)
    else:
        paths = collect_image_paths(args.images)
        labels = [None] * len(paths)
    if not paths:
        raise bad(f"{', '.join(map(str, args.images))}: no images found")
    if args.n is not None:
        if args.n > len(paths):
            raise bad(f"--n {args.n}: only {len(paths)} image(s) found")
        paths = [paths[i] for i in balanced_indices(labels, args.n, args.seed)]
    images, errors = load_images(paths)
    for error in errors:
        print(f"kdx: skipped {error}", file=sys.stderr)
    if len(images) < 2:
        raise bad(f"{len(images)} readable image(s); the dataset statistics need at least 2")
    return images


def _print_summary(result) -> None:
    def show(v):
        return f"{v.value:.3f} [{v.low:.3f}, {v.high:.3f}]" if v.is_defined else f"undefined ({v.reason})"

    for role, model in result.models.items():
        print(f"{role} ({model.layer}): H̄ = {model.counts.h_bar:.3f}; "
              + "; ".join(f"{k} = {show(v)}" for k, v in model.statistics.items()))
    for k, v in result.differences.items():
        print(f"student − base {k}: {show(v)}")
    for role, run in result.trajectories.items():
        print(f"{role} trajectory (epochs {', '.join(map(str, run.epochs))}): "
              + "; ".join(f"{k} = {show(v)}" for k, v in run.result.metrics.items()))
    for k, v in result.trajectory_differences.items():
        print(f"student − base {k}: {show(v)}")
    for note in result.notes:
        print(f"note: {note}")
