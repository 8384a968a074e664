"""Dataset metrics: FSS, CKA, RS and partial RS with delete-one jackknife intervals (METHODS.md §2–§3)."""
from ..values import Value
from .dataset_metrics import (
    CKA_ESTIMATORS, DEFAULT_CKA, MIN_IMAGES, DatasetMetrics, Relevance, StageMatrix, StagePair, dataset_metrics,
    matched_stages,
)

__all__ = ["CKA_ESTIMATORS", "DEFAULT_CKA", "MIN_IMAGES", "DatasetMetrics", "Relevance", "StageMatrix", "StagePair",
           "Value", "dataset_metrics", "matched_stages"]
