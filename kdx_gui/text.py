"""Exceptions as one-line messages for the window: the engine's torch-free helper."""
from kdx_engine.messages import first_line

__all__ = ["first_line"]
