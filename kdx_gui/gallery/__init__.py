"""The gallery of images under the canvas: thumbnails, badges, filters and sorting."""
