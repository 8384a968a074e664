"""Shared fixtures: tiny models built in the test, saved in every format the loader accepts."""
from __future__ import annotations

import warnings

import pytest
import torch
import torchvision

from kdx_engine.models import load_model
from kdx_engine.models.backend import ModelInfo
from kdx_engine.models.preprocessing import Preprocessing
from kdx_engine.models.torch_backend import TorchModuleBackend


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
