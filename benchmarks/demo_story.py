"""The demo's story, measured: accuracy with the background cue independent, shuffled and aligned, and
the share of Grad-CAM energy inside the object mask, for every model of the zoo.

    python benchmarks/demo_story.py [--zoo resources/models] [--n 1000]

Prints a Markdown table (the README's). The test scenes are regenerated from the seed in zoo.json;
the cue-shuffled and cue-aligned splits are the same scenes with other background tints. Grad-CAM
targets each model's predicted class at its automatic layer; "mask area" is the object's share of
the pixels, the energy share a map spread evenly over the image would have.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from kdx_engine.cams import cam_method, energy_in_mask, resolve_targets
from kdx_engine.models import load_model
from kdx_engine.train import model_inputs
from kdx_engine.zoo import read_zoo, zoo_splits

SPLITS = ("test", "test_cue_shuffled", "test_cue_aligned")
STORY_MODELS = ("teacher", "base", "student", "student_vam_folded", "kdexplainer_kd", "kdexplainer_ce",
                "kdexplainer_ls")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, default=Path(__file__).resolve().parents[1] / "resources" / "models")
    parser.add_argument("--n", type=int, default=None, help="test images (default: the whole test split)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    manifest = read_zoo(args.zoo)
    n = args.n or manifest.split_sizes["test"]
    sizes = {name: 0 for name in manifest.split_sizes} | {"test": n}
    splits = zoo_splits(manifest.data, sizes)
    start = time.perf_counter()
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
