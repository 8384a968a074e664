"""Streamed Gram matrix equals X_c·X_cᵀ (column-centred rows) in float64, in RAM and through a memmap."""
import tempfile

import numpy as np
import pytest
import torch

from kdx_engine.stats import GramAccumulator, gram_matrix


def batches_of(features, sizes):
    start = 0
    for size in sizes:
        yield features[start:start + size]
        start += size


def exact_gram(features):
    rows = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    rows = rows - rows.mean(axis=0)
    return rows @ rows.T


@pytest.mark.parametrize("threshold, on_disk", [(2**31, False), (0, True)])
def test_accumulated_gram_equals_float64_product(threshold, on_disk):
    features = torch.randn(23, 3, 5, 4, generator=torch.Generator().manual_seed(0)) * 50 + 10
    with GramAccumulator(23, memmap_threshold_bytes=threshold, block_bytes=8 * 23 * 7) as accumulator:
        for batch in batches_of(features, [5, 1, 8, 9]):
            accumulator.update(batch)
        gram = accumulator.gram()
        assert accumulator.on_disk is on_disk
    assert gram.dtype == torch.float64 and gram.shape == (23, 23)
    expected = exact_gram(features.numpy())
    # float64 rounding, up to the summation order: far below float32's 1e-7
    np.testing.assert_allclose(gram.numpy(), expected, rtol=0, atol=1e-14 * np.abs(expected).max())


def test_memmap_file_is_deleted_on_close(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    accumulator = GramAccumulator(4, memmap_threshold_bytes=0)
    accumulator.update(np.ones((4, 3), dtype=np.float32))
    assert [path.name for path in tmp_path.glob("kdx-gram-*/*")] == ["rows.f32"]
    accumulator.close()
    assert list(tmp_path.iterdir()) == []


def test_gram_matrix_of_features_matches_accumulator():
    features = np.random.default_rng(1).standard_normal((9, 7)).astype(np.float32)
    accumulator = GramAccumulator(9)
    accumulator.update(features)
    np.testing.assert_allclose(accumulator.gram().numpy(), gram_matrix(features).numpy(), rtol=1e-14)


def test_inconsistent_batches_are_errors():
    accumulator = GramAccumulator(5)
    accumulator.update(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="features per row"):
        accumulator.update(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="3 of 5 rows"):
        accumulator.gram()
    with pytest.raises(ValueError, match="more than the 5"):
        accumulator.update(np.zeros((3, 4)))


def test_ending_early_gives_the_gram_of_the_rows_received():
    from kdx_engine.stats import GramAccumulator

    rows = torch.randn(5, 7, dtype=torch.float64)
    accumulator = GramAccumulator(8)
    accumulator.update(rows[:3])
    accumulator.update(rows[3:])
    accumulator.end_early()
    stored = rows.float().double()
    stored = stored - stored.mean(dim=0)
    torch.testing.assert_close(accumulator.gram(), stored @ stored.T)
