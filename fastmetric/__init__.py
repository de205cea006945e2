"""fastmetric: fast Mahalanobis metric learning.

Kernels (pairwise and paired Mahalanobis distances, the LDML log-loss and
its gradient, pair sampling) are OpenMP-parallel Cython; see
:mod:`fastmetric.pairwise`.  Learners are scikit-learn estimators.
"""
__version__ = "0.1.0.dev0"

from ._config import get_include, show_config
from . import pairwise

__all__ = ["get_include", "show_config", "pairwise", "__version__"]
