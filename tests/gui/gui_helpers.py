"""Helpers for the GUI tests: tiny models and images written to disk, waiting for the job queue."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from kdx_engine.models import Preprocessing, get_architecture, write_sidecar

CLASSES = ("circle", "square", "triangle", "star")


def save_resnet8(path, seed: int, classes=CLASSES, sidecar: bool = True):
    torch.manual_seed(seed)
    model = get_architecture("resnet8").build(len(classes)).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    torch.save(model.state_dict(), path)
    if sidecar:
        write_sidecar(path, Preprocessing(input_size=32, resize=None, class_names=tuple(classes),
                                          architecture="resnet8", source="sidecar"))
    return path


def write_image_tree(root, per_class: int, size: int = 32, seed: int = 0, classes=CLASSES):
    """``root/class/img_k.png`` random RGB images; returns the root."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            pixels[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = (60 * c, 255 - 60 * c, 120)
            Image.fromarray(pixels).save(folder / f"img_{k}.png")
    return root


def wait_idle(qtbot, win, timeout: int = 60000) -> None:
    """Until no job is queued or running and no analysis is about to be scheduled."""
    qtbot.waitUntil(lambda: win.jobs.is_idle() and not win.scheduler._timer.isActive()
                    and not win.attention_reader._timer.isActive(), timeout=timeout)


def load_models(qtbot, win, model_files, roles=("teacher", "student", "base")) -> None:
    for role in roles:
        win.slots[role].load(model_files[role])
    wait_idle(qtbot, win)
