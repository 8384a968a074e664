"""UniCAM (METHODS.md §4): a Grad-CAM whose score is a distance-correlation statistic of X's features
with Y's geometry removed. Distilled map = UniCAM(S | B), residual map = UniCAM(B | S).

Reference rows are cached per (model, layer, reference set): a new query image costs one forward of X
and of Y and one backward through X's head (target layer → feature layer), not n of each.

Default score: label-free (our choice, measured on the bundled demo, METHODS §4). A query that is also a
member of the reference set (same file hash) is explained against the set with that member swapped for
a spare of the same class (``ReferenceSet.replacing``); the swap goes into the manifest, and the
swapped set's rows are cached like any other set's.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from functools import partial

import torch

from ..cams.explanation import Explanation
from ..cams.grad_cam import GradCAM
from ..cams.reshape import ReshapeTransform
from ..cams.targets import CamTarget, GradientSeed
from ..data.images import LoadedImage, to_batch
from ..models.backend import PENULTIMATE, ModelBackend
from ..models.layers import default_target_layer, probe_layers
from ..stats.distance_correlation import distance_matrix, label_embedding, projection, u_centre, u_inner
from .reference_set import ReferenceSet

VARIANTS = ("label-free", "label-guided")  # the first is the default (our choice, METHODS §4)
DEFAULT_VARIANT = VARIANTS[0]
VARIANT_CHOICE = "default (our choice, METHODS §4)"


class UniCamCAM(GradCAM):
    """Grad-CAM's pipeline, recorded as UniCAM: what it explains is a ``UniCamTarget``."""

    name = "unicam"


@dataclass(frozen=True, eq=False)
class UniCamTarget(CamTarget):
    """UniCAM's score L of the query against a reference set, whose rows (``reference_x``, ``reference_y``,
    n−1 × d) are held constant: the seed is ∂L/∂(X's query features) at ``feature_layer``, so one VJP
    through X's head gives g = ∂L/∂A at the target layer (METHODS §4.4). ``labels`` (reference then
    query; None for label-free) and ``rule`` (where they came from) are recorded; ``record`` is the
    manifest entry, whose "score" the seed fills in."""

    feature_layer: str
    reference_x: torch.Tensor
    reference_y: torch.Tensor
    query_y: torch.Tensor
    labels: list[int] | None
    variant: str = DEFAULT_VARIANT
    rule: str = "none (label-free)"
    record: dict = field(default_factory=dict)

    reads_logits = False  # L is a statistic of the features; the logits play no part

    @property
    def n(self) -> int:
        return self.reference_x.shape[0] + 1

    @property
    def layers(self) -> tuple[str, ...]:
        return (self.feature_layer,)

    def seed(self, forward) -> GradientSeed:
        feature_grad, score = score_gradient(forward.activations[self.feature_layer], self.reference_x,
                                             self.query_y, self.reference_y, self.labels, self.variant)
        index = self.labels[-1] if self.labels is not None else -1
        return GradientSeed({self.feature_layer: feature_grad}, (int(index),), self.rule,
                            blank_note=partial(blank_map_note, n=self.n, variant=self.variant, score=score),
                            details={"unicam": {**self.record, "score": score}})


class UniCam:
    """Explain model X with model Y's geometry removed, against a reference set: Grad-CAM of X at
    ``layer`` with a ``UniCamTarget`` (``reshape_transform`` as for any CAM)."""

    def __init__(self, x_backend: ModelBackend, y_backend: ModelBackend, reference: ReferenceSet,
                 layer: str | None = None, feature_layer: str = PENULTIMATE, variant: str = DEFAULT_VARIANT,
                 teacher: ModelBackend | None = None, reshape_transform: ReshapeTransform | None = None):
        if variant not in VARIANTS:
            raise ValueError(f"unknown UniCAM variant {variant!r}; use one of {', '.join(VARIANTS)}")
        if len(reference.images) + 1 < 4:
            raise ValueError(f"UniCAM needs n ≥ 4 images (reference + query), got {len(reference.images) + 1}")
        self.x, self.y, self.reference = x_backend, y_backend, reference
        self.layer = layer or default_target_layer(probe_layers(x_backend))
        self.feature_layer = feature_layer
        self.variant = variant
        self.teacher = teacher
        self._cam = UniCamCAM(x_backend, layer=self.layer, reshape_transform=reshape_transform)
        self._reference_x = _reference_features(x_backend, feature_layer, reference)
        self._reference_y = _reference_features(y_backend, feature_layer, reference)
        self._reference_labels: dict[str, list[int]] = {}  # per reference-set key
        self._swapped: dict[str, tuple[ReferenceSet, tuple]] = {}  # query hash → (swapped set, swaps)

    def reference_for(self, image: LoadedImage) -> tuple[ReferenceSet, tuple]:
        """The reference set this query is explained against, and the members swapped out for it."""
        if not self.reference.contains(image):
            return self.reference, ()
        if image.pixel_sha256 not in self._swapped:
            self._swapped[image.pixel_sha256] = self.reference.replacing(image)
        return self._swapped[image.pixel_sha256]

    def explain(self, image: LoadedImage, label: int | None = None) -> Explanation:
        """The UniCAM map of one query image at X's input size."""
        query_y = self.y.forward(to_batch([image], self.y.info.preprocessing), [self.feature_layer]).activations[
            self.feature_layer]
        return self.explain_from(self.query_forward(image), query_y, image, label)

    def query_forward(self, image: LoadedImage):
        """X's forward of the query, ready for a VJP from the feature layer back to the target layer."""
        return self._cam.run_forward(to_batch([image], self.x.info.preprocessing), [self.feature_layer])

    def explain_from(self, forward, query_y: torch.Tensor, image: LoadedImage, label: int | None = None) -> Explanation:
        """The map from X's query forward and Y's query features (so a pair of maps shares forwards)."""
        size = (self.x.info.preprocessing.input_size,) * 2
        return self._cam.explain_forward(forward, self.target_for(query_y, image, label), size)

    def target_for(self, query_y: torch.Tensor, image: LoadedImage, label: int | None = None) -> UniCamTarget:
        """What the query's map explains: its score against its reference set (swapped where the query is a
        member), with the labels the variant needs."""
        reference, swaps = self.reference_for(image)
        if swaps:
            reference_x = _reference_features(self.x, self.feature_layer, reference, self.reference)
            reference_y = _reference_features(self.y, self.feature_layer, reference, self.reference)
        else:
            reference_x, reference_y = self._reference_x, self._reference_y
        labels, label_source = self._labels(image, label, reference)
        return UniCamTarget(self.feature_layer, reference_x, reference_y, query_y, labels, self.variant,
                            label_source, self._record(reference, swaps, label_source))

    def _record(self, reference: ReferenceSet, swaps, label_source: str) -> dict:
        """What the manifest says of this map: models, variant (and that the default is our choice), the
        reference set actually used, the members swapped for the query and the files skipped; "score"
        is filled in by the target's seed."""
        return {
            "explained": self.x.info.path, "removed": self.y.info.path, "variant": self.variant,
            "variant_choice": VARIANT_CHOICE if self.variant == DEFAULT_VARIANT else "option (METHODS §4)",
            "feature_layer": self.feature_layer, "n": reference.n,
            "reference_source": reference.source, "reference_seed": reference.seed,
            "reference_hashes": reference.hashes, "reference_key": reference.key,
            "reference_replaced": [swap.record() for swap in swaps],
            "reference_skipped": list(reference.skipped),
            "score": None, "label_source": label_source,
            "estimator": "semi-partial R²* (U-centred, METHODS §1.6)" if self.variant == "label-guided"
            else "sum of row maxima of P_{X|Y}",
        }

    def _labels(self, image, label, reference: ReferenceSet | None = None) -> tuple[list[int] | None, str]:
        if self.variant == "label-free":
            return None, "none (label-free)"
        reference = reference or self.reference
        labeller = self.teacher or self.x
        source = "true labels" if label is not None and all(l is not None for l in reference.labels) else (
            f"{'Teacher' if self.teacher else 'explained model'}'s prediction where no true label")
        if reference.key not in self._reference_labels:
            missing = [i for i, l in enumerate(reference.labels) if l is None]
            predicted = {}
            if missing:
                batch = to_batch([reference.images[i] for i in missing], labeller.info.preprocessing)
                predicted = dict(zip(missing, labeller.logits(batch).argmax(dim=1).tolist()))
            self._reference_labels[reference.key] = [l if l is not None else predicted[i]
                                                     for i, l in enumerate(reference.labels)]
        if label is None:
            label = int(labeller.logits(to_batch([image], labeller.info.preprocessing)).argmax(dim=1))
        return [*self._reference_labels[reference.key], int(label)], source


_REFERENCE_CACHE: "weakref.WeakKeyDictionary[ModelBackend, dict]" = weakref.WeakKeyDictionary()


def _backend_cache(backend: ModelBackend) -> dict:
    """The cached reference rows of one backend, dropped with it (ids of dead backends are reused)."""
    try:
        return _REFERENCE_CACHE.setdefault(backend, {})
    except TypeError:  # not weakly referenceable: cache on the object itself
        return backend.__dict__.setdefault("_kdx_unicam_rows", {})


def _reference_features(backend: ModelBackend, layer: str, reference: ReferenceSet,
                        base: ReferenceSet | None = None) -> torch.Tensor:
    """Reference rows of ``layer``, computed once per (model, layer, reference set). With ``base`` (the
    set that ``reference`` was swapped from), the rows of the members they share are reused and only
    the new members are run."""
    cache = _backend_cache(backend)
    key = (backend.info.sha256, layer, reference.key)
    if key not in cache:
        known: dict[int, torch.Tensor] = {}
        if base is not None:
            rows = _reference_features(backend, layer, base)
            known = {id(image): rows[i] for i, image in enumerate(base.images)}
        missing = [image for image in reference.images if id(image) not in known]
        if missing:
            batch = to_batch(missing, backend.info.preprocessing)
            rows = backend.forward(batch, [layer]).activations[layer].flatten(1).to(torch.float64)
            known.update({id(image): row for image, row in zip(missing, rows)})
        cache[key] = torch.stack([known[id(image)] for image in reference.images])
    return cache[key]


def unicam_score(features_x: torch.Tensor, features_y: torch.Tensor, labels: list[int] | None,
                 variant: str = DEFAULT_VARIANT) -> torch.Tensor:
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


def blank_map_note(raw: torch.Tensor, grads: torch.Tensor, n: int, variant: str,
                   score: float = 0.0) -> str | None:
    """Why a UniCAM map is blank or broken and what to change (None when it is fine), as for CAMs."""
    # Measured (issue 10): label-free demo maps were blank for 20–30% of images at n = 4, 0–3% at n = 16
    # and none at n = 64; two random-init ResNet-18s about half at every n and layer, since there the
    # sign of Σ_k w_k A_k is that of ∂L/∂(scale of the query's features) whatever the layer.
    if not torch.isfinite(raw).all():
        return "map has non-finite values"
    if not grads.any():
        if variant == "label-guided" and score != score:  # NaN: the labels have no geometry
            return (f"all-zero map: the label-guided score is undefined at n = {n}: the reference set's and "
                    f"the query's labels are all different (or all equal), so they carry no geometry; raise n "
                    f"so that classes repeat (n ≥ 2 × the classes present) or use the label-free variant")
        return (f"all-zero map: the score does not depend on this image's features at n = {n} (X's and Y's "
                f"geometry agree on the reference set, so nothing of X is left once Y's is removed); raise n "
                f"or choose another reference set; if X is Y up to rotation and scale, no n will give a map")
    if not (raw > 0).any():
        return (f"all-zero map: at n = {n} the {variant} score grows only where this image's activations "
                f"shrink (the weighted activations are negative everywhere; ReLU removed them), so X holds "
                f"nothing beyond Y here that raises the score. Another reference set (seed) or n can change "
                f"this: on the bundled demo n = 16 left 0–3% of maps blank, n = 4 20–30%")
    return None


def distilled_and_residual(student: ModelBackend, other: ModelBackend, reference: ReferenceSet, image: LoadedImage,
                           label: int | None = None, variant: str = DEFAULT_VARIANT,
                           teacher: ModelBackend | None = None) -> tuple[Explanation, Explanation]:
    """UniCAM(S | other) and UniCAM(other | S): with other = Base the distilled and residual maps, with
    other = Teacher (no Base loaded) the S|T and T|S maps."""
    first = UniCam(student, other, reference, variant=variant, teacher=teacher)
    second = UniCam(other, student, reference, variant=variant, teacher=teacher)
    forward_first, forward_second = first.query_forward(image), second.query_forward(image)
    features = first.feature_layer
    return (first.explain_from(forward_first, forward_second.activations[features], image, label),
            second.explain_from(forward_second, forward_first.activations[features], image, label))
