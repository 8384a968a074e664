"""One image's Teacher / Student / Base comparison on the original image's pixel grid (PRODUCT §5–§6)."""
from .comparison import (
    NORMALISATION,
    Comparison,
    ComparisonModel,
    ComparisonSettings,
    ImagePrediction,
    ModelPrediction,
    Panel,
    UniCamCache,
    compare_image,
    first_line,
    gallery_predictions,
    model_record,
    normalised,
)
from .image_grid import MAX_GRID_SIDE, ImageGrid, crop_window, image_frame, image_grid, maps_on_grid

__all__ = [
    "MAX_GRID_SIDE", "NORMALISATION", "Comparison", "ComparisonModel", "ComparisonSettings", "ImageGrid",
    "ImagePrediction", "ModelPrediction", "Panel", "UniCamCache", "compare_image", "crop_window", "first_line",
    "gallery_predictions", "image_frame", "image_grid", "maps_on_grid", "model_record", "normalised",
]
