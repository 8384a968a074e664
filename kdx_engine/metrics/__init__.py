"""Dataset metrics: FSS, CKA, RS and partial RS with delete-one jackknife intervals (METHODS.md §2–§3)."""
from .dataset_metrics import (
    MIN_IMAGES, DatasetMetrics, Relevance, StageMatrix, StagePair, Value, dataset_metrics, matched_stages,
)

__all__ = ["MIN_IMAGES", "DatasetMetrics", "Relevance", "StageMatrix", "StagePair", "Value", "dataset_metrics",
           "matched_stages"]
