"""VAM convolutions (METHODS §7): an input-independent group attention inside an ordinary conv.

Output channels split into ``G_out`` contiguous groups, input channels into ``G_in``; learnable
logits ``θ`` (G_out×G_in, zero at initialisation) give ``A = softmax_over_inputs(θ/τ)`` and the
effective weight ``W̃[o, c] = G_in · A[g(o), g(c)] · W[o, c]``. At θ = 0, W̃ = W. The fold writes W̃
into a plain convolution, so the deployed model has no extra cost and the same logits.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

THETA_SUFFIX = ".vam_theta"
VAM_TEMPERATURE = 1.0  # τ of the attention softmax (our choice; METHODS §7 leaves it open)


def attention_of(theta: torch.Tensor, temperature: float = VAM_TEMPERATURE) -> torch.Tensor:
    """A = softmax over input groups of θ/τ (rows: output groups)."""
    return torch.softmax(theta / temperature, dim=1)


def effective_weight(weight: torch.Tensor, theta: torch.Tensor,
                     temperature: float = VAM_TEMPERATURE) -> torch.Tensor:
    """W̃ = G_in · A[g(o), g(c)] · W for a conv weight C_out×C_in×k×k and logits G_out×G_in."""
    groups_out, groups_in = theta.shape
    c_out, c_in = weight.shape[:2]
    scale = groups_in * attention_of(theta, temperature)
    scale = scale.repeat_interleave(c_out // groups_out, 0).repeat_interleave(c_in // groups_in, 1)
    return weight * scale[:, :, None, None]


class VAMConv2d(nn.Conv2d):
    """A ``groups=1`` convolution whose weight is reweighted by the group attention of ``vam_theta``."""

    def __init__(self, *args, vam_groups: tuple[int, int] = (4, 4),
                 vam_temperature: float = VAM_TEMPERATURE, **kwargs):
        super().__init__(*args, **kwargs)
        groups_out, groups_in = vam_groups
        if self.groups != 1 or self.out_channels % groups_out or self.in_channels % groups_in:
            raise ValueError(f"a VAM conv needs groups=1 and channels divisible by the VAM groups; "
                             f"got {self.out_channels}×{self.in_channels}, groups {vam_groups}")
        self.vam_theta = nn.Parameter(torch.zeros(groups_out, groups_in, device=self.weight.device))
        self.vam_temperature = vam_temperature

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, groups: int,
                  temperature: float = VAM_TEMPERATURE) -> "VAMConv2d":
        """A VAM conv sharing ``conv``'s weight and bias, with θ = 0 (so it computes the same)."""
        with torch.device(conv.weight.device):
            vam = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, bias=conv.bias is not None, padding_mode=conv.padding_mode,
                      vam_groups=(groups, groups), vam_temperature=temperature)
        vam.weight = conv.weight
        vam.bias = conv.bias
        return vam

    def attention(self) -> torch.Tensor:
        return attention_of(self.vam_theta, self.vam_temperature)

    def folded_weight(self) -> torch.Tensor:
        return effective_weight(self.weight, self.vam_theta, self.vam_temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.folded_weight(), self.bias)


def vam_eligible(conv: nn.Module, groups: int) -> bool:
    """A plain ``groups=1`` conv whose channel counts both split into ``groups`` groups."""
    return (type(conv) is nn.Conv2d and conv.groups == 1
            and conv.in_channels % groups == 0 and conv.out_channels % groups == 0)


def add_vam(model: nn.Module, groups: int = 4, temperature: float = VAM_TEMPERATURE) -> list[str]:
    """Replace, in place, every eligible conv of ``model`` by a VAM conv (θ = 0, logits unchanged).

    Convs whose channels do not split into ``groups`` (e.g. an RGB stem) stay plain. Returns the
    names of the converted convs.
    """
    converted = [name for name, module in model.named_modules() if vam_eligible(module, groups)]
    for name in converted:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, VAMConv2d.from_conv(getattr(parent, child), groups, temperature))
    return converted


def vam_convs(model: nn.Module) -> dict[str, VAMConv2d]:
    """The VAM convs of ``model`` by module name, in definition order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, VAMConv2d)}


def fold_vam(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with each VAM conv replaced by a plain conv holding W̃ (exact fold)."""
    folded = copy.deepcopy(model)
    for name, vam in vam_convs(folded).items():
        conv = nn.Conv2d(vam.in_channels, vam.out_channels, vam.kernel_size, vam.stride, vam.padding,
                         vam.dilation, bias=vam.bias is not None, padding_mode=vam.padding_mode)
        with torch.no_grad():
            conv.weight.copy_(vam.folded_weight())
            if vam.bias is not None:
                conv.bias.copy_(vam.bias)
        parent_name, _, child = name.rpartition(".")
        setattr(folded.get_submodule(parent_name), child, conv)
    return folded


def folded_state_dict(state_dict: Mapping[str, torch.Tensor],
                      temperature: float = VAM_TEMPERATURE) -> dict[str, torch.Tensor]:
    """The state_dict of the folded model: each ``<conv>.vam_theta`` folded into ``<conv>.weight``
    and dropped; works on the checkpoint alone, without building the model."""
    folded = {k: v for k, v in state_dict.items() if not k.endswith(THETA_SUFFIX)}
    for key, theta in state_dict.items():
        if key.endswith(THETA_SUFFIX):
            weight_key = key[: -len(THETA_SUFFIX)] + ".weight"
            folded[weight_key] = effective_weight(state_dict[weight_key], theta, temperature).detach()
    return folded


def has_vam_parameters(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether a checkpoint holds VAM logits (θ tensors beside conv weights)."""
    return any(k.endswith(THETA_SUFFIX) and k[: -len(THETA_SUFFIX)] + ".weight" in state_dict
               for k in state_dict)


def vam_entropy_penalty(model: nn.Module) -> torch.Tensor:
    """mean over VAM layers of the mean row entropy of A, each divided by log G_in (the VAM loss term)."""
    terms = [normalised_row_entropy(m.attention()).mean() for m in vam_convs(model).values()]
    if not terms:
        raise ValueError("the model has no VAM convolution")
    return torch.stack(terms).mean()


def normalised_row_entropy(attention: torch.Tensor) -> torch.Tensor:
    """H(A_row) / log G_in for each row of A (1 = uniform attention, 0 = one input group)."""
    groups_in = attention.shape[1]
    entropy = -(attention * torch.log(attention.clamp_min(1e-12))).sum(dim=1)
    return entropy / torch.log(torch.tensor(float(groups_in)))
