"""The demo's story, measured: accuracy with the background cue independent, shuffled and aligned, and
the share of Grad-CAM energy inside the object mask, for every model of the zoo; then UniCAM's
distilled (S|B) and residual (B|S) maps against the same masks, for both score variants.

    python benchmarks/demo_story.py [--zoo kdx_engine/resources/models] [--n 1000] [--unicam-images 200]

Prints Markdown tables (the README's). The test scenes are regenerated from the seed in zoo.json;
the cue-shuffled and cue-aligned splits are the same scenes with other background tints. Grad-CAM
targets each model's predicted class at its automatic layer; "mask area" is the object's share of
the pixels, the energy share a map spread evenly over the image would have.

UniCAM: reference set from the shipped labelled folder (kdx_engine/resources/dataset, n = 16, seed 0, class
order of the models), queries the cue-independent test scenes that follow the folder's own (the
folder holds the first 128 test scenes, so no query is a member), true labels given. Energy in mask
is the mean over images with a 95% normal interval of the mean (images are independent); maps with
no positive energy are counted and left out. "distilled > residual" is the share of the images with
both maps defined where the distilled map puts more of its energy in the mask, with a Wilson 95%
interval.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from kdx_engine.bundled import DEMO_DATASET, DEMO_MODELS
from kdx_engine.cams import cam_method, energy_in_mask, resolve_targets
from kdx_engine.data.images import LoadedImage
from kdx_engine.models import load_model
from kdx_engine.train import model_inputs
from kdx_engine.unicam import VARIANTS, ReferenceSet, distilled_and_residual
from kdx_engine.zoo import read_zoo, zoo_splits
from kdx_engine.zoo.demo_data import demo_split

SPLITS = ("test", "test_cue_shuffled", "test_cue_aligned")
STORY_MODELS = ("teacher", "base", "student", "student_vam_folded", "kdexplainer_kd", "kdexplainer_ce",
                "kdexplainer_ls")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, default=DEMO_MODELS)
    parser.add_argument("--n", type=int, default=None, help="test images (default: the whole test split)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--unicam-images", type=int, default=200, help="UniCAM queries (0: no UniCAM rows)")
    parser.add_argument("--unicam-n", type=int, default=16, help="UniCAM n (reference images + the query)")
    parser.add_argument("--reference", type=Path, default=DEMO_DATASET)
    parser.add_argument("--skip-models", action="store_true", help="only the UniCAM rows")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    manifest = read_zoo(args.zoo)
    n = args.n or manifest.split_sizes["test"]
    sizes = {name: 0 for name in manifest.split_sizes} | {"test": n}
    splits = zoo_splits(manifest.data, sizes)
    start = time.perf_counter()
    if not args.skip_models:
        rows = [story_row(name, manifest.models[name], args.zoo, splits)
                for name in STORY_MODELS if name in manifest.models]
        print(f"Demo story: {n} synthetic test images ({manifest.data.size}×{manifest.data.size}, seed "
              f"{manifest.data.seed}); Grad-CAM on the predicted class; {time.perf_counter() - start:.0f} s\n")
        print("| model | architecture | accuracy, cue independent | cue shuffled | cue aligned "
              "| Grad-CAM energy in mask |")
        print("|---|---|---|---|---|---|")
        for row in rows:
            print("| {name} | {architecture} | {test:.3f} | {test_cue_shuffled:.3f} | {test_cue_aligned:.3f} "
                  "| {energy:.3f} |".format(**row))
        print(f"| (mask area share) | | | | | {float(splits['test'].masks.mean()):.3f} |")
    if args.unicam_images > 0 and {"student", "base"} <= set(manifest.models):
        print_unicam_rows(args, manifest)
    return 0


def print_unicam_rows(args, manifest) -> None:
    """Energy in mask of the distilled and residual maps, both variants, on fresh test scenes."""
    start = time.perf_counter()
    student = load_model(args.zoo / manifest.models["student"].file)
    base = load_model(args.zoo / manifest.models["base"].file)
    reference = ReferenceSet.from_folder(args.reference, n=args.unicam_n, seed=0,
                                         class_names=student.info.preprocessing.class_names)
    offset = _folder_size(args.reference)
    split = demo_split("test", offset + args.unicam_images, manifest.data)
    queries = [LoadedImage(path=Path(f"test/{i:05d}"), rgb=split.images[i],
                           sha256=hashlib.sha256(split.images[i].tobytes()).hexdigest())
               for i in range(offset, offset + args.unicam_images)]
    members = {hashlib.sha256(image.rgb.tobytes()).hexdigest() for image in reference.images}  # by pixels
    rows = []
    for variant in VARIANTS:
        energies = {"distilled": [], "residual": []}
        for image, i in zip(queries, range(offset, offset + args.unicam_images)):
            maps = distilled_and_residual(student, base, reference, image, label=int(split.labels[i]),
                                          variant=variant)
            for key, explanation in zip(energies, maps):
                energies[key].append(energy_in_mask(explanation.maps[0].numpy(), split.masks[i]).value)
        rows.append({"variant": variant, **{k: np.asarray(v, dtype=float) for k, v in energies.items()}})
    area = float(split.masks[offset:].mean())
    print(f"\nUniCAM on the demo: {args.unicam_images} cue-independent test scenes (test {offset}–"
          f"{offset + args.unicam_images - 1}), reference set {args.reference.name} (n = {args.unicam_n}, seed 0, "
          f"{len(reference.skipped)} skipped, {sum(q.sha256 in members for q in queries)} queries in it), "
          f"Student|Base and Base|Student, true labels; {time.perf_counter() - start:.0f} s\n")
    print("| UniCAM variant | distilled S\\|B energy in mask | residual B\\|S energy in mask "
          "| distilled > residual | maps with no positive energy (S\\|B, B\\|S) |")
    print("|---|---|---|---|---|")
    for row in rows:
        d, r = row["distilled"], row["residual"]
        both = np.isfinite(d) & np.isfinite(r)
        wins = int((d[both] > r[both]).sum())
        low, high = wilson(wins, int(both.sum()))
        print(f"| {row['variant']}{' (default)' if row['variant'] == VARIANTS[0] else ''} | {mean_interval(d)} "
              f"| {mean_interval(r)} | {wins / max(both.sum(), 1):.2f} [{low:.2f}, {high:.2f}] ({wins}/{both.sum()}) "
              f"| {int((~np.isfinite(d)).sum())}, {int((~np.isfinite(r)).sum())} of {len(d)} |")
    print(f"| (mask area share) | {area:.3f} | {area:.3f} | | |")


def mean_interval(values: np.ndarray) -> str:
    """Mean over the defined values with a 95% normal interval of the mean."""
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return "n/a"
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values))
    return f"{values.mean():.3f} [{values.mean() - half:.3f}, {values.mean() + half:.3f}]"


def wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion."""
    if trials == 0:
        return float("nan"), float("nan")
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * np.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return centre - half, centre + half


def _folder_size(root: Path) -> int:
    """How many test scenes the shipped folder holds (its split.json), so queries start after them."""
    try:
        return int(json.loads((root / "split.json").read_text(encoding="utf-8"))["n"])
    except (OSError, KeyError, ValueError):
        return 0


def story_row(name: str, model, zoo: Path, splits) -> dict:
    backend = load_model(zoo / model.file)
    pre = backend.info.preprocessing
    row = {"name": name, "architecture": model.architecture}
    for split_name in SPLITS:
        split = splits[split_name]
        logits = batched_logits(backend, model_inputs(split.images, pre))
        row[split_name] = float((logits.argmax(1) == torch.as_tensor(split.labels)).float().mean())
    row["energy"] = mean_energy_in_mask(backend, splits["test"])
    return row


def batched_logits(backend, inputs: torch.Tensor, batch: int = 250) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([backend.logits(inputs[i:i + batch]) for i in range(0, len(inputs), batch)])


def mean_energy_in_mask(backend, split, batch: int = 100) -> float:
    """Mean over images of the share of Grad-CAM energy inside the object mask (undefined maps skipped)."""
    cam = cam_method("gradcam")(backend, batch_size=batch)
    inputs = model_inputs(split.images, backend.info.preprocessing)
    shares = []
    for i in range(0, len(inputs), batch):
        x = inputs[i:i + batch]
        explanation = cam(x, resolve_targets("predicted", batched_logits(backend, x)))
        shares += [energy_in_mask(m, k).value for m, k in zip(explanation.maps, split.masks[i:i + batch])]
    return float(np.nanmean(shares))


if __name__ == "__main__":
    sys.exit(main())
