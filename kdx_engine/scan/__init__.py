"""Dataset scans (PRODUCT §7b): every image of a dataset explained and scored into one table, in
process (``run_scan``) or on a Ray cluster (``ray_engine.run_scan_on_ray``, needs the ``ray`` extra)."""
from .job import ScanJob, prepare_scan, reference_set
from .local_engine import ScanSummary, run_scan
from .measures import ImageResult, ScanSettings, column_name, map_key
from .models import ScanModels, comparison_models
from .table import CSV, TABLE, read_columns, read_map, table_schema

__all__ = ["CSV", "TABLE", "ImageResult", "ScanJob", "ScanModels", "ScanSettings", "ScanSummary", "column_name",
           "comparison_models", "map_key", "prepare_scan", "read_columns", "read_map", "reference_set", "run_scan",
           "table_schema"]
