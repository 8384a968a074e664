"""UniCAM: maps of distilled (S|B) and residual (B|S) features (METHODS.md §4)."""
from .reference_set import DEFAULT_N, ReferenceSet
from .unicam import VARIANTS, UniCam, distilled_and_residual, score_gradient, unicam_score

__all__ = ["DEFAULT_N", "ReferenceSet", "VARIANTS", "UniCam", "distilled_and_residual", "score_gradient",
           "unicam_score"]
