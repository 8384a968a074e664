"""Ablation-CAM (Desai & Ramaswamy): a channel's weight is the relative drop of the target score when
that channel of the layer's output is set to zero. Batched: many ablated copies run through the head
in one call."""
import torch

from .base import WeightedCAM
from .reshape import SpatialLayer


class AblationCAM(WeightedCAM):
    name = "ablationcam"
    uses_gradients = False

    @torch.no_grad()
    def channel_weights(self, x, activations, grads, targets):
        if not isinstance(self.reshape_transform, SpatialLayer):
            raise ValueError("ablationcam writes ablated channels back into the layer's own output; it needs a "
                             "C×H×W layer, not a reshape_transform")
        original = self.backend.logits(x)
        weights = []
        channels = activations.shape[1]
        for image, activation, logits, target in zip(x, activations, original, targets):
            base_score = logits[target.index]
            scores = []
            for start in range(0, channels, self.batch_size):
                idx = torch.arange(start, min(start + self.batch_size, channels))
                ablated = activation.expand(len(idx), *activation.shape).clone()
                ablated[torch.arange(len(idx)), idx] = 0
                scores.append(self.backend.logits_with_replaced(image[None], self.layer, ablated)[:, target.index])
            weights.append((base_score - torch.cat(scores)) / base_score)
        return torch.stack(weights)
