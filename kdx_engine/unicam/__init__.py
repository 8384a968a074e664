"""UniCAM: maps of distilled (S|B) and residual (B|S) features (METHODS.md §4)."""
from .reference_set import DEFAULT_N, ReferenceSet, Replacement
from .unicam import (DEFAULT_VARIANT, VARIANTS, UniCam, UniCamCAM, UniCamTarget, blank_map_note,
                     distilled_and_residual, score_gradient, unicam_score)

__all__ = ["DEFAULT_N", "DEFAULT_VARIANT", "ReferenceSet", "Replacement", "VARIANTS", "UniCam", "UniCamCAM",
           "UniCamTarget", "blank_map_note", "distilled_and_residual", "score_gradient", "unicam_score"]
