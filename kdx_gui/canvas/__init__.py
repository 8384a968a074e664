"""The comparison canvas (one panel per map, linked zoom, crosshair) and the controls above it."""
