"""fastmetric: fast Mahalanobis metric learning.

Learners are scikit-learn estimators that learn a linear map ``L``
(``components_``) so that ``d(x, y) = ||L x - L y||`` brings similar points
together.  Their hot loops (distances, the LDML log-loss and its gradient,
pair sampling) are OpenMP-parallel Cython kernels, public in
:mod:`fastmetric.pairwise`.
"""
__version__ = "0.1.0.dev0"

from ._config import get_include, show_config
from . import pairwise
from ._ldml import LDML, LDML_Supervised
from ._cluster_ldml import ClusterLDML
from ._lmnn import LMNN
from ._mlkr import MLKR
from ._nca import NCA

__all__ = [
    "ClusterLDML",
    "LDML",
    "LDML_Supervised",
    "LMNN",
    "MLKR",
    "NCA",
    "get_include",
    "show_config",
    "pairwise",
    "__version__",
]

# metric-learn's learners that fastmetric does not provide yet.  Asking for
# one gives a clear NotImplementedError (not an AttributeError), so code
# ported from metric-learn fails with an explanation.
_PLANNED = {
    "ITML": "weakly supervised learners",
    "ITML_Supervised": "weakly supervised learners",
    "MMC": "weakly supervised learners",
    "MMC_Supervised": "weakly supervised learners",
    "SDML": "weakly supervised learners",
    "SDML_Supervised": "weakly supervised learners",
    "LSML": "weakly supervised learners",
    "LSML_Supervised": "weakly supervised learners",
    "SCML": "weakly supervised learners",
    "SCML_Supervised": "weakly supervised learners",
    "RCA": "closed-form learners",
    "RCA_Supervised": "closed-form learners",
    "LFDA": "closed-form learners",
    "Covariance": "closed-form learners",
}


def __getattr__(name):
    if name in _PLANNED:
        raise NotImplementedError(
            f"fastmetric.{name} is not implemented yet (planned with the "
            f"{_PLANNED[name]}; see the README's status table). Available "
            f"learners: {', '.join(n for n in __all__ if n[0].isupper())}."
        )
    raise AttributeError(f"module 'fastmetric' has no attribute {name!r}")
