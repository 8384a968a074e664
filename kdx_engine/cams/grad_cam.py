"""Grad-CAM (Selvaraju et al.): channel weights are the spatially averaged gradients."""
from .base import WeightedCAM


class GradCAM(WeightedCAM):
    name = "gradcam"

    def channel_weights(self, x, activations, grads, targets):
        return grads.mean(dim=(2, 3))
