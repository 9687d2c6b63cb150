"""Estimation: accuracy at k from one pool of n samples. Exact closed forms (``exact``: pass@k,
maj@k, BoN@k, dataset mean), seeded resampling for policies without one (``resample``), and
``evaluate`` (policies x k over a bank).

``from ttscale import estimate`` gives the estimator functions of ``exact`` and ``resample``
(``estimate.pass_at_k``, ``estimate.resampled_accuracy``, ...); code inside the package imports
them from their own module.
"""

from ttscale.estimate.exact import (
    best_of_n_at_k,
    candidates_to_arrays,
    dataset_mean,
    majority_at_k,
    pass_at_k,
)
from ttscale.estimate.resample import resampled_accuracy

__all__ = [
    "best_of_n_at_k",
    "candidates_to_arrays",
    "dataset_mean",
    "majority_at_k",
    "pass_at_k",
    "resampled_accuracy",
]
