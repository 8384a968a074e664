"""HiResCAM (Draelos & Carin): element-wise gradient × activation, summed over channels."""
from .base import BaseCAM


class HiResCAM(BaseCAM):
    name = "hirescam"

    def cam_image(self, x, activations, grads, targets):
        return (grads * activations).sum(dim=1)
