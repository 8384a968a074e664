"""UniCAM (METHODS.md §4): a Grad-CAM whose score is a distance-correlation statistic of X's features
with Y's geometry removed. Distilled map = UniCAM(S | B), residual map = UniCAM(B | S).

Reference rows are cached per (model, layer, reference set): a new query image costs one forward of X
and of Y and one backward through X's head (target layer → feature layer), not n of each.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..cams.explanation import Explanation
from ..data.images import LoadedImage, to_batch
from ..models.backend import PENULTIMATE, ModelBackend
from ..models.layers import default_target_layer, probe_layers
from ..stats.distance_correlation import distance_matrix, label_embedding, projection, u_centre, u_inner
from .reference_set import ReferenceSet

VARIANTS = ("label-guided", "label-free")


@dataclass(frozen=True)
class UniCamScore:
    """The score L and the label source, for the manifest."""

    value: float
    labels: tuple[int, ...]
    label_source: str


class UniCam:
    """Explain model X with model Y's geometry removed, against a reference set."""

    def __init__(self, x_backend: ModelBackend, y_backend: ModelBackend, reference: ReferenceSet,
                 layer: str | None = None, feature_layer: str = PENULTIMATE, variant: str = "label-guided",
                 teacher: ModelBackend | None = None):
        if variant not in VARIANTS:
            raise ValueError(f"unknown UniCAM variant {variant!r}; use one of {', '.join(VARIANTS)}")
        if len(reference.images) + 1 < 4:
            raise ValueError(f"UniCAM needs n ≥ 4 images (reference + query), got {len(reference.images) + 1}")
        self.x, self.y, self.reference = x_backend, y_backend, reference
        self.layer = layer or default_target_layer(probe_layers(x_backend))
        self.feature_layer = feature_layer
        self.variant = variant
        self.teacher = teacher
        self._reference_x = _reference_features(x_backend, feature_layer, reference)
        self._reference_y = _reference_features(y_backend, feature_layer, reference)
        self._reference_labels = None

    def explain(self, image: LoadedImage, label: int | None = None) -> Explanation:
        """The UniCAM map of one query image at X's input size."""
        query_y = self.y.forward(to_batch([image], self.y.info.preprocessing), [self.feature_layer]).activations[
            self.feature_layer]
        return self.explain_from(self.query_forward(image), query_y, image, label)

    def query_forward(self, image: LoadedImage):
        """X's forward of the query, ready for a VJP from the feature layer back to the target layer."""
        return self.x.forward(to_batch([image], self.x.info.preprocessing), [self.feature_layer], grad_layer=self.layer)

    def explain_from(self, forward, query_y: torch.Tensor, image: LoadedImage, label: int | None = None) -> Explanation:
        """The map from X's query forward and Y's query features (so a pair of maps shares forwards)."""
        activations = forward.activations[self.layer]
        if activations.dim() != 4:
            raise ValueError(f"layer {self.layer!r} has output shape {tuple(activations.shape[1:])}; UniCAM needs C×H×W")
        query_x = forward.activations[self.feature_layer]
        size = (self.x.info.preprocessing.input_size,) * 2
        labels, label_source = self._labels(image, label)
        feature_grad, score = score_gradient(
            query_x, self._reference_x, query_y, self._reference_y, labels, self.variant)
        grads = forward.vjp({self.feature_layer: feature_grad})
        raw = (grads.mean(dim=(2, 3))[:, :, None, None] * activations).sum(dim=1)
        low_res = torch.relu(raw)
        maps = F.interpolate(low_res[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        note = None
        if not torch.isfinite(raw).all():
            note = "map has non-finite values"
        elif not grads.any():
            note = "all-zero map: the score does not depend on this image's features (e.g. X's geometry equals Y's)"
        elif not (raw > 0).any():
            note = "all-zero map: the weighted activations are negative everywhere (ReLU removed them)"
        details = {
            "unicam": {
                "explained": self.x.info.path, "removed": self.y.info.path, "variant": self.variant,
                "feature_layer": self.feature_layer, "n": len(self.reference.images) + 1,
                "reference_source": self.reference.source, "reference_seed": self.reference.seed,
                "reference_hashes": self.reference.hashes, "score": score, "label_source": label_source,
                "estimator": "semi-partial R²* (U-centred, METHODS §1.6)" if self.variant == "label-guided"
                else "sum of row maxima of P_{X|Y}",
            }
        }
        target = labels[-1] if labels is not None else -1
        return Explanation(method="unicam", layer=self.layer, targets=(int(target),), target_rule=label_source,
                           low_res=low_res, maps=maps, logits=forward.logits, notes=(note,), details=details)

    def _labels(self, image, label) -> tuple[list[int] | None, str]:
        if self.variant == "label-free":
            return None, "none (label-free)"
        labeller = self.teacher or self.x
        source = "true labels" if label is not None and all(l is not None for l in self.reference.labels) else (
            f"{'Teacher' if self.teacher else 'explained model'}'s prediction where no true label")
        if self._reference_labels is None:
            missing = [i for i, l in enumerate(self.reference.labels) if l is None]
            predicted = {}
            if missing:
                batch = to_batch([self.reference.images[i] for i in missing], labeller.info.preprocessing)
                predicted = dict(zip(missing, labeller.logits(batch).argmax(dim=1).tolist()))
            self._reference_labels = [l if l is not None else predicted[i] for i, l in enumerate(self.reference.labels)]
        if label is None:
            label = int(labeller.logits(to_batch([image], labeller.info.preprocessing)).argmax(dim=1))
        return [*self._reference_labels, int(label)], source


_REFERENCE_CACHE: dict[tuple, torch.Tensor] = {}


def _reference_features(backend: ModelBackend, layer: str, reference: ReferenceSet) -> torch.Tensor:
    """Reference rows of ``layer``, computed once per (model, layer, reference set)."""
    key = (id(backend), backend.info.sha256, layer, reference.key)
    if key not in _REFERENCE_CACHE:
        batch = to_batch(list(reference.images), backend.info.preprocessing)
        _REFERENCE_CACHE[key] = backend.forward(batch, [layer]).activations[layer].flatten(1).to(torch.float64)
    return _REFERENCE_CACHE[key]


def unicam_score(features_x: torch.Tensor, features_y: torch.Tensor, labels: list[int] | None,
                 variant: str = "label-guided") -> torch.Tensor:
    """L for n×d features of X and Y: label-guided ⟨P_{X|Y}, G̃⟩/(|P|·|G̃|), or label-free Σ_i max_j R_ij."""
    residual = projection(u_centre(distance_matrix(features_x)), u_centre(distance_matrix(features_y)))
    if variant == "label-free":
        return residual.max(dim=1).values.sum()
    g_tilde = u_centre(distance_matrix(label_embedding(labels)))
    return u_inner(residual, g_tilde) / torch.sqrt(u_inner(residual, residual) * u_inner(g_tilde, g_tilde))


def score_gradient(query_x, reference_x, query_y, reference_y, labels, variant) -> tuple[torch.Tensor, float]:
    """∂L/∂(query's X features) and L, with the reference rows held constant."""
    query = query_x.detach().flatten(1).to(torch.float64).requires_grad_(True)
    with torch.enable_grad():
        features_x = torch.cat([reference_x, query])
        features_y = torch.cat([reference_y, query_y.flatten(1).to(torch.float64)])
        score = unicam_score(features_x, features_y, labels, variant)
        (grad,) = torch.autograd.grad(score, query)
    grad = torch.nan_to_num(grad, nan=0.0)
    return grad.to(query_x.dtype).reshape(query_x.shape), float(score.detach())


def distilled_and_residual(student: ModelBackend, other: ModelBackend, reference: ReferenceSet, image: LoadedImage,
                           label: int | None = None, variant: str = "label-guided",
                           teacher: ModelBackend | None = None) -> tuple[Explanation, Explanation]:
    """UniCAM(S | other) and UniCAM(other | S): with other = Base the distilled and residual maps, with
    other = Teacher (no Base loaded) the S|T and T|S maps."""
    first = UniCam(student, other, reference, variant=variant, teacher=teacher)
    second = UniCam(other, student, reference, variant=variant, teacher=teacher)
    forward_first, forward_second = first.query_forward(image), second.query_forward(image)
    features = first.feature_layer
    return (first.explain_from(forward_first, forward_second.activations[features], image, label),
            second.explain_from(forward_second, forward_first.activations[features], image, label))
