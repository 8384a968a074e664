"""What the KDExplainer views show (METHODS §8): routing matrices, per-class paths, the hard tree.

All views read the routing logits θ at one fixed reference temperature, so models (and the no-KD,
label-smoothing and KD arms) are compared on the same scale.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

REFERENCE_TEMPERATURE = 1.0
_ROUTING_PREFIX = "routing."


def routing_logits(source: nn.Module | Mapping[str, torch.Tensor]) -> list[np.ndarray]:
    """θ of every routing (children × parents), level 1→2 first, the class heads' routing last."""
    state = source.state_dict() if isinstance(source, nn.Module) else source
    found = {int(k[len(_ROUTING_PREFIX):]): v for k, v in state.items()
             if k.startswith(_ROUTING_PREFIX) and k[len(_ROUTING_PREFIX):].isdigit()}
    if not found:
        raise ValueError("no routing parameters (routing.0, routing.1, …): not a KDExplainer model")
    return [found[i].detach().double().cpu().numpy() for i in sorted(found)]


def routing_matrices(source: nn.Module | Mapping[str, torch.Tensor],
                     temperature: float = REFERENCE_TEMPERATURE) -> list[np.ndarray]:
    """softmax(θ/t) over parents for every routing; each row sums to 1."""
    matrices = []
    for theta in routing_logits(source):
        z = theta / temperature
        z = np.exp(z - z.max(axis=1, keepdims=True))
        matrices.append(z / z.sum(axis=1, keepdims=True))
    return matrices


def class_routing_paths(matrices: list[np.ndarray]) -> list[np.ndarray]:
    """Per level, K × experts: how much of class k's head input comes, through the chained
    routings, from each expert of that level (``r_k`` chained from the heads down to level 1)."""
    paths = [matrices[-1]]
    for matrix in reversed(matrices[:-1]):
        paths.insert(0, paths[0] @ matrix)
    return paths


def mean_routing_entropy(matrices: list[np.ndarray]) -> list[float]:
    """Per routing, the mean row entropy divided by log(parents): 1 uniform, 0 a hard choice."""
    result = []
    for matrix in matrices:
        entropy = -(matrix * np.log(np.clip(matrix, 1e-12, None))).sum(axis=1)
        result.append(float(entropy.mean() / np.log(matrix.shape[1])))
    return result


@dataclass(frozen=True)
class RoutingTree:
    """The hard (argmax) routing: ``parents[l][i]`` is the expert of level l that child i of the
    next level (the class heads after the last level) reads."""

    parents: tuple[np.ndarray, ...]

    @property
    def num_classes(self) -> int:
        return int(self.parents[-1].shape[0])

    def class_path(self, k: int) -> tuple[int, ...]:
        """Expert index per level, level 1 first, that class k's head reads through."""
        path = [int(self.parents[-1][k])]
        for parents in reversed(self.parents[:-1]):
            path.insert(0, int(parents[path[0]]))
        return tuple(path)

    def class_paths(self) -> list[tuple[int, ...]]:
        return [self.class_path(k) for k in range(self.num_classes)]

    def dendrogram_order(self) -> list[int]:
        """Classes ordered so that classes sharing experts sit side by side (leaf order)."""
        return sorted(range(self.num_classes), key=self.class_path)


def hard_tree(source: nn.Module | Mapping[str, torch.Tensor]) -> RoutingTree:
    """The argmax tree of the routing logits (what stage 2 trains and deploys)."""
    return RoutingTree(tuple(theta.argmax(axis=1) for theta in routing_logits(source)))
