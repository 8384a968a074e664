"""Grad-CAM++ (Chattopadhay et al.), with the closed-form α of pytorch-grad-cam."""
import torch

from .base import WeightedCAM

EPS = 1e-6


class GradCAMPlusPlus(WeightedCAM):
    name = "gradcam++"

    def channel_weights(self, x, activations, grads, targets):
        grads2 = grads.square()
        grads3 = grads2 * grads
        sum_activations = activations.sum(dim=(2, 3))[:, :, None, None]
        alpha = grads2 / (2 * grads2 + sum_activations * grads3 + EPS)
        alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
        return (torch.relu(grads) * alpha).sum(dim=(2, 3))
