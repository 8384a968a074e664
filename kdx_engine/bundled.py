"""Where the files shipped with KDX lie: the demo zoo, its sample images and its labelled dataset.

They are package data (``kdx_engine/resources``), so a wheel or a bundle carries them; nothing writes there
at run time (``kdx zoo build`` writes to the folder it is given)."""
from __future__ import annotations

from pathlib import Path

RESOURCES = Path(__file__).resolve().parent / "resources"
DEMO_MODELS = RESOURCES / "models"
DEMO_CHECKPOINTS = DEMO_MODELS / "checkpoints"
DEMO_SAMPLES = RESOURCES / "samples"
DEMO_DATASET = RESOURCES / "dataset"
