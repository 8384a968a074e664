"""Score-CAM (Wang et al.): each channel, upsampled and min–max scaled, masks the input; the channel's
weight is the softmax over channels of the target score of the masked input. Batched."""
import torch
import torch.nn.functional as F

from .base import WeightedCAM

EPS = 1e-8


class ScoreCAM(WeightedCAM):
    name = "scorecam"
    uses_gradients = False

    @torch.no_grad()
    def channel_weights(self, x, activations, grads, targets):
        upsampled = F.interpolate(activations, size=x.shape[-2:], mode="bilinear", align_corners=True)
        flat = upsampled.flatten(2)
        mins, maxs = flat.min(dim=2).values, flat.max(dim=2).values
        masks = (upsampled - mins[:, :, None, None]) / (maxs - mins + EPS)[:, :, None, None]
        weights = []
        for image, image_masks, target in zip(x, masks, targets):
            scores = []
            for start in range(0, image_masks.shape[0], self.batch_size):
                batch = image[None] * image_masks[start:start + self.batch_size, None]
                scores.append(self.backend.logits(batch)[:, target.index])
            weights.append(torch.softmax(torch.cat(scores), dim=0))
        return torch.stack(weights)
