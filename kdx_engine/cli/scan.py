"""``kdx scan``: every image of a dataset explained and scored into one table (Parquet and CSV), its
maps as .npy shards and a manifest; resumable; in process, or on Ray with ``--ray [ADDRESS]``."""
from __future__ import annotations

import sys
from pathlib import Path

from . import (CAM_NAMES, EXIT_BAD_INPUT, BadInput, _FractionBar, _model_options, preprocessing_options,
               print_model_notes)

LOCAL = "local"


def add_command(subparsers) -> None:
    scan = subparsers.add_parser("scan", help="explain and score every image of a dataset into one table "
                                              "(Parquet + CSV), resumable, in process or on Ray")
    scan.add_argument("dataset", type=Path, help="ImageFolder (class_name/image.ext, masks name.mask.png)")
    scan.add_argument("--teacher", type=Path, required=True)
    scan.add_argument("--student", type=Path, required=True)
    scan.add_argument("--base", type=Path)
    scan.add_argument("--out", type=Path, required=True, help="scan folder (re-running it resumes)")
    scan.add_argument("--methods", default="gradcam", help=f"comma-separated: {CAM_NAMES}")
    scan.add_argument("--target", default="predicted", choices=("predicted", "true"),
                      help="class each map explains: each model's prediction, or the true label")
    scan.add_argument("--top-k", type=int, default=3)
    scan.add_argument("--faithfulness-steps", type=int, default=20,
                      help="deletion/insertion AUC steps (0: leave them out)")
    scan.add_argument("--unicam", action="store_true", help="also the distilled and residual UniCAM maps")
    scan.add_argument("--reference", type=Path, help="UniCAM reference ImageFolder (default: the dataset)")
    scan.add_argument("--n", type=int, default=16, help="UniCAM: reference images + query (default 16)")
    scan.add_argument("--variant", default="label-free", help="UniCAM: label-free (default) | label-guided")
    scan.add_argument("--seed", type=int, default=0)
    scan.add_argument("--no-maps", action="store_true", help="write the table only, no map shards")
    scan.add_argument("--batch-size", type=int, default=32)
    scan.add_argument("--ray", nargs="?", const=LOCAL, metavar="ADDRESS",
                      help="run on Ray: a local cluster started here, or the cluster at ADDRESS (one started "
                           "with `ray start` needs RAY_AUTH_MODE=token and its token)")
    scan.add_argument("--ray-timeout", type=float, default=30.0, metavar="S",
                      help="--ray ADDRESS: seconds to wait for the cluster to answer (default 30)")
    scan.add_argument("--num-cpus", type=int, help="--ray without ADDRESS: CPUs of the local cluster "
                                                   "(default: all)")
    scan.add_argument("--overwrite", action="store_true", help="start again in a folder holding another scan")
    _model_options(scan)
    scan.set_defaults(run=run_scan_command)


def _settings(args):
    from kdx_engine.cams import CAM_METHODS
    from kdx_engine.scan import ScanSettings
    from kdx_engine.unicam import VARIANTS

    methods = tuple(m.strip().lower() for m in args.methods.split(",") if m.strip())
    unknown = [m for m in methods if m not in CAM_METHODS]
    if not methods or unknown:
        raise BadInput(f"--methods {args.methods!r}: use one or more of {CAM_NAMES}")
    if args.top_k < 1:
        raise BadInput(f"--top-k {args.top_k}: give at least 1")
    if args.faithfulness_steps < 0:
        raise BadInput(f"--faithfulness-steps {args.faithfulness_steps}: give 0 (none) or more")
    if args.batch_size < 1:
        raise BadInput(f"--batch-size {args.batch_size}: give at least 1")
    if args.unicam and args.variant not in VARIANTS:
        raise BadInput(f"--variant {args.variant!r}: use one of {', '.join(VARIANTS)}")
    if args.unicam and args.n < 4:
        raise BadInput(f"--n {args.n}: UniCAM needs n ≥ 4 (reference images + the query)")
    if not args.ray_timeout > 0:
        raise BadInput(f"--ray-timeout {args.ray_timeout:g}: give a number of seconds above 0")
    if args.num_cpus is not None and (args.num_cpus < 1 or args.ray != LOCAL):
        raise BadInput("--num-cpus needs --ray without an address, and at least 1")
    if not args.dataset.is_dir():
        raise BadInput(f"{args.dataset}: dataset folder not found")
    return ScanSettings(methods=methods, target_rule=args.target, top_k=args.top_k,
                        faithfulness_steps=args.faithfulness_steps, unicam=args.unicam, unicam_variant=args.variant,
                        reference_n=args.n, seed=args.seed, save_maps=not args.no_maps)


def run_scan_command(args) -> int:
    from kdx_engine.jobs import Progress
    from kdx_engine.scan import ScanModels, prepare_scan, run_scan

    settings = _settings(args)
    if args.ray is not None:
        from kdx_engine.scan.ray_engine import check_ray

        check_ray()
    files = {role: str(path) for role, path in (("teacher", args.teacher), ("student", args.student),
                                                  ("base", args.base)) if path is not None}
    spec = ScanModels(files, arch=args.arch, which=args.which, trust_pickle=args.trust_pickle,
                      options=preprocessing_options(args))
    models = spec.load()
    print_model_notes([model.backend for model in models.values()], args)
    job = prepare_scan(args.dataset, args.out, settings, models, reference_folder=args.reference,
                       overwrite=args.overwrite)
    if args.ray is None:
        summary = run_scan(job, models, batch_size=args.batch_size, progress=Progress(_FractionBar("scan")))
    else:
        from kdx_engine.scan.ray_engine import run_scan_on_ray

        summary = run_scan_on_ray(job, spec, models, address=None if args.ray == LOCAL else args.ray,
                                  num_cpus=args.num_cpus, batch_size=args.batch_size, connect_timeout=args.ray_timeout)
    print(f"{summary.rows} row(s) in {summary.table} and {summary.csv}: {summary.scanned} scanned now "
          f"({summary.engine}, {summary.seconds:.1f} s), {summary.skipped} done before, "
          f"{summary.unreadable} unreadable")
    for note in (job.label_note, job.resume_note):
        if note:
            print(f"note: {note}")
    if summary.unreadable:
        print(f"kdx: {summary.unreadable} image(s) could not be read; their rows say why (column error)",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0
