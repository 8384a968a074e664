"""What the Scan view's jobs run on the worker thread: a scan with the window's loaded models, and reading
a finished scan's table. Engine imports stay inside the functions (the window starts before torch)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScanRequest:
    """What the Scan dataset… dialog asks for."""

    dataset: str
    out: str
    method: str = "gradcam"
    faithfulness_steps: int = 20
    unicam: bool = False
    reference_n: int = 16
    batch_size: int = 32


def run_window_scan(models: dict, request: ScanRequest, progress):
    """Scan ``request.dataset`` with the slots' models at their target layers (a folder holding this scan
    already resumes it); returns (summary, the table's columns)."""
    from kdx_engine.comparison import ComparisonModel
    from kdx_engine.scan import ScanSettings, prepare_scan, read_columns, run_scan

    engine_models = {role: ComparisonModel(m.backend, m.target_layer, m.note) for role, m in models.items()}
    settings = ScanSettings(methods=(request.method,), faithfulness_steps=request.faithfulness_steps,
                            unicam=request.unicam, reference_n=request.reference_n)
    job = prepare_scan(request.dataset, request.out, settings, engine_models)
    summary = run_scan(job, engine_models, batch_size=request.batch_size, progress=progress)
    return summary, read_columns(request.out)


def read_scan(folder: str, progress=None) -> dict:
    from kdx_engine.scan import read_columns

    return read_columns(folder)
