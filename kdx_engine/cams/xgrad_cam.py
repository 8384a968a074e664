"""XGrad-CAM (Fu et al.): gradients weighted by the normalised activations."""
from .base import WeightedCAM

EPS = 1e-7


class XGradCAM(WeightedCAM):
    name = "xgradcam"

    def channel_weights(self, x, activations, grads, targets):
        sum_activations = activations.sum(dim=(2, 3))[:, :, None, None]
        return (grads * activations / (sum_activations + EPS)).sum(dim=(2, 3))
