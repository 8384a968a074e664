"""Statistics core: distance correlation and its partial forms, linear CKA, delete-one jackknife
intervals, and streamed Gram matrices (METHODS §1). Values are :class:`kdx_engine.values.Value`."""
from kdx_engine.stats.cka import (
    debiased_linear_cka,
    debiased_linear_cka_from_gram,
    linear_cka,
    linear_cka_from_gram,
    u_centred_gram,
)
from kdx_engine.stats.distance_correlation import (
    distance_matrix,
    distance_matrix_from_gram,
    label_embedding,
    partial_r2,
    partial_r2_centred,
    projection,
    r2_star,
    r2_star_centred,
    semi_partial_r2,
    semi_partial_r2_centred,
    u_centre,
    u_inner,
    v_dcor2,
)
from kdx_engine.stats.gram import GramAccumulator, feature_rows, gram_matrix
from kdx_engine.stats.jackknife import (
    Interval,
    interval_from_replicates,
    jackknife_debiased_linear_cka,
    jackknife_interval,
    jackknife_linear_cka,
    jackknife_partial_r2,
    jackknife_r2_star,
    jackknife_semi_partial_r2,
)

from kdx_engine.values import Value

__all__ = [
    "GramAccumulator",
    "Interval",
    "Value",
    "debiased_linear_cka",
    "debiased_linear_cka_from_gram",
    "distance_matrix",
    "distance_matrix_from_gram",
    "feature_rows",
    "gram_matrix",
    "interval_from_replicates",
    "jackknife_debiased_linear_cka",
    "jackknife_interval",
    "jackknife_linear_cka",
    "jackknife_partial_r2",
    "jackknife_r2_star",
    "jackknife_semi_partial_r2",
    "label_embedding",
    "linear_cka",
    "linear_cka_from_gram",
    "partial_r2",
    "partial_r2_centred",
    "projection",
    "r2_star",
    "r2_star_centred",
    "semi_partial_r2",
    "semi_partial_r2_centred",
    "u_centre",
    "u_centred_gram",
    "u_inner",
    "v_dcor2",
]
