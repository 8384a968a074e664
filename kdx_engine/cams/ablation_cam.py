"""Ablation-CAM (Desai & Ramaswamy): a channel's weight is the relative drop of the target score when
that channel of the layer's output is set to zero. Batched: many ablated copies run through the head
in one call. On a token or channels-last layer the ablated image is put back into the layer's own
layout (``ReshapeTransform.restore``; a ViT's class tokens kept as they were)."""
import torch

from .base import WeightedCAM, layer_transform
from .reshape import SpatialLayer


class AblationCAM(WeightedCAM):
    name = "ablationcam"
    uses_gradients = False

    @torch.no_grad()
    def channel_weights(self, x, activations, grads, targets):
        original = self.backend.logits(x)
        weights = []
        channels = activations.shape[1]
        transform = self.reshape_transform or layer_transform(self.backend, self.layer)
        for image, activation, logits, target in zip(x, activations, original, targets):
            base_score = logits[target.index]
            layer_output = None if isinstance(transform, SpatialLayer) else \
                self.backend.forward(image[None], [self.layer]).activations[self.layer]
            scores = []
            for start in range(0, channels, self.batch_size):
                idx = torch.arange(start, min(start + self.batch_size, channels))
                ablated = activation.expand(len(idx), *activation.shape).clone()
                ablated[torch.arange(len(idx)), idx] = 0
                if layer_output is not None:
                    ablated = transform.restore(ablated, layer_output).contiguous()
                scores.append(self.backend.logits_with_replaced(image[None], self.layer, ablated)[:, target.index])
            weights.append((base_score - torch.cat(scores)) / base_score)
        return torch.stack(weights)
