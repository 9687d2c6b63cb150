"""Estimation: accuracy at k from one pool of n samples. Exact closed forms (pass@k, maj@k,
BoN@k), seeded resampling for policies without one, and ``evaluate`` (policies x k over a bank).

``from ttscale import estimate`` gives the estimator functions.
"""

from ttscale.estimate.exact import *  # noqa: F401,F403  (the estimators, as ``ttscale.estimate.<name>``)
from ttscale.estimate.exact import __all__  # noqa: F401
