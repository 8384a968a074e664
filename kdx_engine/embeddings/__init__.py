"""Teacher and Student embeddings: penultimate features, 2-D projections, k-NN separation, neighbourhood overlap."""
from .features import FEATURE_LAYER, ModelOutputs, dataset_outputs, image_outputs
from .figure_plots import dataset_plots, preset_tau
from .neighbours import (
    DEFAULT_K, KnnAccuracy, NeighbourhoodOverlap, knn_accuracy, nearest_neighbours, neighbourhood_overlap,
    overlap_per_image,
)
from .projection import PROJECTIONS, Projection, aligned_to, available_projections, pca_2d, project
from .summary import EmbeddingMetrics, embedding_metrics, outputs_dark_knowledge

__all__ = [
    "DEFAULT_K", "FEATURE_LAYER", "PROJECTIONS",
    "EmbeddingMetrics", "KnnAccuracy", "ModelOutputs", "NeighbourhoodOverlap", "Projection",
    "aligned_to", "available_projections", "dataset_outputs", "dataset_plots", "embedding_metrics", "image_outputs",
    "knn_accuracy", "nearest_neighbours", "neighbourhood_overlap", "outputs_dark_knowledge", "overlap_per_image",
    "pca_2d", "preset_tau", "project",
]
