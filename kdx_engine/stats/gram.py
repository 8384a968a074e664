"""Gram matrices of feature rows, in memory or streamed batch by batch for dataset metrics."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

GIB = 1024**3
MEMMAP_THRESHOLD_BYTES = 2 * GIB
BLOCK_BYTES = 256 * 1024**2


def feature_rows(features) -> torch.Tensor:
    """Features (tensor or array, n×… ) as an n×d float64 tensor, trailing dims flattened; 1-D is n×1."""
    rows = torch.as_tensor(features)
    if rows.dim() == 0:
        raise ValueError("features must have a sample axis, got a scalar")
    rows = rows.reshape(rows.shape[0], -1) if rows.dim() > 1 else rows.reshape(-1, 1)
    return rows.to(torch.float64)


def gram_matrix(features) -> torch.Tensor:
    """n×n float64 matrix of inner products ⟨F_i − F̄, F_j − F̄⟩ of the column-centred feature rows
    (differentiable). Centring changes no distance and no centred kernel, and keeps a large common
    offset from cancelling the distances' digits."""
    rows = feature_rows(features)
    rows = rows - rows.mean(dim=0, keepdim=True)
    return rows @ rows.T


class GramAccumulator:
    """Builds the n×n float64 Gram matrix of n feature rows that arrive in batches, in order.

    The rows are stored as float32 (O(n·d)): in RAM, or in a memmap in a temporary directory when
    n·d·4 bytes exceed ``memmap_threshold_bytes``. ``gram()`` sums the products of column-centred
    blocks in float64 (``gram_matrix``'s centring), each block at most ``block_bytes`` once converted. Use as a context manager (or
    call ``close()``) to delete the temporary file early.
    """

    def __init__(
        self,
        num_samples: int,
        memmap_threshold_bytes: int = MEMMAP_THRESHOLD_BYTES,
        block_bytes: int = BLOCK_BYTES,
    ):
        if num_samples < 1:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        self.num_samples = num_samples
        self.memmap_threshold_bytes = memmap_threshold_bytes
        self.block_bytes = block_bytes
        self.rows_received = 0
        self._rows: np.ndarray | None = None
        self._temp_dir: tempfile.TemporaryDirectory | None = None

    @property
    def on_disk(self) -> bool:
        """Whether the stored rows live in a memmap rather than in RAM."""
        return self._temp_dir is not None

    def update(self, batch) -> None:
        """Store the next b rows (a b×… tensor or array; trailing dims are flattened)."""
        rows = torch.as_tensor(batch).detach()
        rows = rows.reshape(rows.shape[0], -1).to("cpu", torch.float32).numpy()
        if self._rows is None:
            self._rows = self._allocate(rows.shape[1])
        if rows.shape[1] != self._rows.shape[1]:
            raise ValueError(f"batch has {rows.shape[1]} features per row, earlier batches {self._rows.shape[1]}")
        end = self.rows_received + rows.shape[0]
        if end > self.num_samples:
            raise ValueError(f"received {end} rows, more than the {self.num_samples} announced")
        self._rows[self.rows_received:end] = rows
        self.rows_received = end

    def gram(self) -> torch.Tensor:
        """The n×n float64 Gram matrix of all rows received; all n rows must have arrived."""
        if self.rows_received != self.num_samples:
            raise ValueError(f"received {self.rows_received} of {self.num_samples} rows")
        rows = self._rows[:self.rows_received]
        n, d = rows.shape
        # Column blocks: each n×w block is read from storage once and gives a full-size product, far
        # faster than products of thin row blocks, which are bound by memory bandwidth when d ≫ n.
        width = max(1, self.block_bytes // (8 * n))
        gram = torch.zeros((n, n), dtype=torch.float64)
        for start in range(0, d, width):
            block = torch.from_numpy(np.asarray(rows[:, start:start + width], dtype=np.float64))
            block -= block.mean(dim=0, keepdim=True)
            gram.addmm_(block, block.T)
        return (gram + gram.T) / 2

    def end_early(self) -> None:
        """Declare the rows received so far to be all of them (some announced inputs were unreadable)."""
        self.num_samples = self.rows_received

    def close(self) -> None:
        """Release the stored rows and delete the temporary memmap file, if any."""
        self._rows = None
        if self._temp_dir is not None:
            self._temp_dir.cleanup()
            self._temp_dir = None

    def __enter__(self) -> "GramAccumulator":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _allocate(self, num_features: int) -> np.ndarray:
        shape = (self.num_samples, num_features)
        if self.num_samples * num_features * 4 <= self.memmap_threshold_bytes:
            return np.empty(shape, dtype=np.float32)
        self._temp_dir = tempfile.TemporaryDirectory(prefix="kdx-gram-")
        path = Path(self._temp_dir.name) / "rows.f32"
        return np.memmap(path, dtype=np.float32, mode="w+", shape=shape)
