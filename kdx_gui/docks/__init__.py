"""The window's docks: the model slots (left) and the metrics tabs (right)."""
