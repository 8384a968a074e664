"""How many channels a model's input has, read from its first convolution's weights (MNIST-style models
take one)."""
from __future__ import annotations

from torch import nn


def input_channels(module: nn.Module) -> int | None:
    """The second dimension of the first 4-D weight among the parameters (the stem convolution's input
    channels) when it is 1 or 3; None when there is none or it is another count."""
    for name, param in module.named_parameters():
        if param.dim() == 4 and name.endswith("weight"):
            channels = int(param.shape[1])
            return channels if channels in (1, 3) else None
    return None
