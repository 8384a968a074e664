"""LayerCAM (Jiang et al.): positive gradients weight each activation element."""
import torch

from .base import BaseCAM


class LayerCAM(BaseCAM):
    name = "layercam"

    def cam_image(self, x, activations, grads, targets):
        return (torch.relu(grads) * activations).sum(dim=1)
