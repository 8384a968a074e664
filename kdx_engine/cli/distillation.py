"""Dark knowledge and embeddings on the command line: the sections ``kdx metrics`` adds to its JSON
(KL(T‖S)/KL(T‖B) against τ, similar classes, agreement, k-NN accuracy, neighbourhood overlap) and the
plot strip ``kdx export --plots`` adds under a figure. Not a command of its own: ``run_metrics`` and
``run_export`` call these functions."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kdx_engine.cli import BadInput

PLOT_NAMES = ("kl", "embeddings")


def add_metrics_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tau", type=float, help="temperature of the dark-knowledge numbers (default: the "
                                                  "Student's sidecar distillation_temperature, else 4)")
    parser.add_argument("--neighbours", type=int, default=10, help="k of the k-NN accuracy and the T–S "
                                                                   "neighbourhood overlap (default 10)")
    parser.add_argument("--no-embeddings", action="store_true",
                        help="leave out the dark-knowledge and embedding sections (one more forward pass)")


def add_export_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plots", default="", help="a strip of dataset plots under the figure: kl (KL(T‖S), "
                                                   "KL(T‖B) against τ), embeddings (each model's PCA), or both")
    parser.add_argument("--plots-dataset", type=Path, help="ImageFolder for --plots (default: --reference)")
    parser.add_argument("--projection", default="pca", help="of the embeddings plot: pca (default), tsne, umap")


def check_metrics_options(args) -> None:
    if args.tau is not None and not 0 < args.tau < float("inf"):
        raise BadInput(f"--tau {args.tau}: give a temperature above 0")
    if args.neighbours < 1:
        raise BadInput(f"--neighbours {args.neighbours}: give at least 1")


def plot_kinds(args) -> tuple[str, ...]:
    """The --plots names, checked with the dataset and projection they need."""
    from kdx_engine.embeddings import PROJECTIONS, available_projections

    kinds = tuple(k.strip() for k in args.plots.split(",") if k.strip())
    unknown = [k for k in kinds if k not in PLOT_NAMES]
    if unknown:
        raise BadInput(f"--plots {args.plots!r}: use kl, embeddings or both")
    if kinds and (args.plots_dataset or args.reference) is None:
        raise BadInput("--plots needs --plots-dataset DIR (an ImageFolder) or --reference DIR")
    if args.projection not in PROJECTIONS:
        raise BadInput(f"--projection {args.projection!r}: use one of {', '.join(PROJECTIONS)}")
    if "embeddings" in kinds and args.projection not in available_projections():
        raise BadInput(f"--projection {args.projection}: needs the optional extra (pip install 'kdx[embeddings]')")
    return kinds


def dataset_numbers(args, models: dict, dataset, progress=None):
    """The dark knowledge (at --tau or the preset τ, and where τ came from) and the embedding metrics of
    ``models`` over ``dataset``."""
    from kdx_engine.embeddings import dataset_outputs, embedding_metrics, outputs_dark_knowledge, preset_tau

    tau, origin = (args.tau, "--tau") if args.tau is not None else preset_tau(models["student"])
    outputs = dataset_outputs(models, dataset, batch_size=args.batch_size, progress=progress)
    if outputs.n <= args.neighbours:
        raise BadInput(f"--neighbours {args.neighbours}: the dataset has {outputs.n} readable images; "
                       "give fewer neighbours")
    return outputs_dark_knowledge(outputs, tau), origin, embedding_metrics(outputs, k=args.neighbours)


def write_metrics_file(path: Path, result, numbers=None) -> None:
    """The JSON of ``kdx metrics``: the dataset metrics and, when computed, ``dark_knowledge`` and
    ``embeddings`` (``numbers`` from ``dataset_numbers``), written once and atomically, so a run stopped
    midway leaves the previous file whole, never one without its last sections."""
    from kdx_engine.atomic_files import atomic_write_text

    data = result.to_json()
    if numbers is not None:
        dark, origin, embedding = numbers
        data["dark_knowledge"] = {**dark.to_json(), "tau_from": origin}
        data["embeddings"] = embedding.to_json()
    atomic_write_text(path, json.dumps(data, indent=2, default=str, allow_nan=False) + "\n")


def print_numbers(dark, embedding) -> None:
    letters = {"teacher": "T", "student": "S", "base": "B"}
    for role in dark.curves:
        v = dark.kl_at(role, dark.tau)
        print(f"KL(T‖{letters[role]}) at τ = {dark.tau:g}: {v.value:.4f} [{v.low:.4f}, {v.high:.4f}] nats")
    for role, values in dark.agreement.items():
        v = values["top1"]
        print(f"top-1 agreement T–{letters[role]}: {v.value:.3f} [{v.low:.3f}, {v.high:.3f}]")
    for role, knn in embedding.knn.items():
        v = knn.overall
        print(f"k-NN accuracy {role} (k = {embedding.k}): {v.value:.3f} [{v.low:.3f}, {v.high:.3f}]")
    for pair, overlap in embedding.overlap.items():
        v = overlap.overall
        print(f"neighbourhood overlap {pair}: {v.value:.3f} [{v.low:.3f}, {v.high:.3f}] (chance {overlap.chance:.3f})")
    for note in embedding.notes:
        print(f"note: {note}")


def figure_plots(args, kinds, backends: dict, progress=None):
    """The plot strip for ``kdx export --plots`` and its record for the manifest."""
    from kdx_engine.embeddings import dataset_plots

    plots, record = dataset_plots(backends, args.plots_dataset or args.reference, kinds, args.projection,
                                  seed=args.seed, progress=progress)
    for problem in record["skipped"]:
        print(f"kdx: skipped {problem}", file=sys.stderr)
    return plots, record
