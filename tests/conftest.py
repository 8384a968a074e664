"""Shared fixtures: tiny models built in the test, saved in every format the loader accepts."""
from __future__ import annotations

import os
import warnings

import pytest
import torch
import torchvision

from kdx_engine.models import load_model
from kdx_engine.models.backend import ModelInfo
from kdx_engine.models.preprocessing import Preprocessing
from kdx_engine.models.torch_backend import TorchModuleBackend

# Numerical path variations (see `make test-numerics`): float32 results depend on the kernels and the
# thread count, so the tests that compare two float32 computations are also run with these switched.
# KDX_TEST_THREADS=n sets torch's intra-op threads (OMP_NUM_THREADS=n does the same through OpenMP);
# KDX_TEST_NO_MKLDNN=1 turns off torch's oneDNN (mkldnn) CPU kernels, so convolutions take the other path.
if os.environ.get("KDX_TEST_THREADS"):
    torch.set_num_threads(int(os.environ["KDX_TEST_THREADS"]))
if os.environ.get("KDX_TEST_NO_MKLDNN", "") not in ("", "0"):
    torch.backends.mkldnn.enabled = False


def pytest_report_header(config):
    return (f"torch {torch.__version__}: {torch.get_num_threads()} threads, "
            f"mkldnn {'on' if torch.backends.mkldnn.enabled else 'off'}")


def make_resnet18(num_classes: int = 10, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(num_classes=num_classes).eval()
    # random BN statistics, so activations are not trivially normalised
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return model


def backend_for(module: torch.nn.Module, num_classes: int, input_size: int = 64) -> TorchModuleBackend:
    info = ModelInfo(
        path="<memory>", format="memory", backend="pytorch", architecture=None, num_classes=num_classes,
        num_parameters=sum(p.numel() for p in module.parameters()),
        preprocessing=Preprocessing(input_size=input_size, source="test"), sha256="", notes=(),
    )
    return TorchModuleBackend(module, info)


@pytest.fixture(scope="session")
def resnet18():
    return make_resnet18()


@pytest.fixture(scope="session")
def images():
    return torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.fixture()
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def make_cifar(name: str = "resnet8", num_classes: int = 3, seed: int = 0) -> torch.nn.Module:
    """A seeded CIFAR-family model with random BatchNorm statistics (eval mode)."""
    from kdx_engine.models.registry import get_architecture

    torch.manual_seed(seed)
    model = get_architecture(name).build(num_classes).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.3, 0.3)
            module.running_var.uniform_(0.5, 1.5)
    return model


def write_colour_dataset(root, class_names=("r", "g", "b"), per_class: int = 11, seed: int = 0, size: int = 32):
    """An ImageFolder of noise images whose class lifts one colour channel; returns ``root``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c, name in enumerate(class_names):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 160, (size, size, 3), dtype=np.uint8)
            pixels[..., c % 3] += 90
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root
