"""The bundled demo zoo (PRODUCT §8): its data, its build, and the ``zoo.json`` manifest."""
from .build import FULL_PLAN, QUICK_PLAN, ZooPlan, build_zoo
from .demo_data import (
    DEMO_DATA,
    TEST_SLICE,
    ZOO_SPLIT_SIZES,
    balanced_prefix,
    demo_split,
    fixed_test_slice,
    write_demo_dataset,
    zoo_splits,
)
from .manifest import ZOO_MANIFEST, ZooManifest, ZooModel, read_zoo, write_zoo

__all__ = [
    "DEMO_DATA", "FULL_PLAN", "QUICK_PLAN", "TEST_SLICE", "ZOO_MANIFEST", "ZOO_SPLIT_SIZES", "ZooManifest",
    "ZooModel", "ZooPlan", "balanced_prefix", "build_zoo", "demo_split", "fixed_test_slice", "read_zoo",
    "write_demo_dataset", "write_zoo", "zoo_splits",
]
