"""Images, masks and dataset folders: loading them safely and turning them into model inputs."""
from kdx_engine.data.datasets import DatasetBatch, ImageFolderDataset, class_name_key
from kdx_engine.data.images import (
    IMAGE_EXTENSIONS,
    MASK_SUFFIX,
    ImageError,
    LoadedImage,
    collect_image_paths,
    display_image,
    image_from_bytes,
    load_image,
    load_images,
    load_mask,
    mask_path_for,
    to_batch,
    to_tensor,
    transform_mask,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "MASK_SUFFIX",
    "DatasetBatch",
    "ImageError",
    "ImageFolderDataset",
    "LoadedImage",
    "class_name_key",
    "collect_image_paths",
    "display_image",
    "image_from_bytes",
    "load_image",
    "load_images",
    "load_mask",
    "mask_path_for",
    "to_batch",
    "to_tensor",
    "transform_mask",
]
