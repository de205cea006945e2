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

# The classic learners of metric-learn that are being added (issue 5): each
# lives in its own private module.  They are looked up on first use, and a
# learner whose module is not there yet gives a clear NotImplementedError
# (not an AttributeError), so code ported from metric-learn fails with an
# explanation.
_CLASSIC = {
    "ITML": "_itml",
    "ITML_Supervised": "_itml",
    "MMC": "_mmc",
    "MMC_Supervised": "_mmc",
    "SDML": "_sdml",
    "SDML_Supervised": "_sdml",
    "LSML": "_lsml",
    "LSML_Supervised": "_lsml",
    "SCML": "_scml",
    "SCML_Supervised": "_scml",
    "RCA": "_rca",
    "RCA_Supervised": "_rca",
    "LFDA": "_lfda",
    "Covariance": "_covariance",
}


def __getattr__(name):
    if name in _CLASSIC:
        import importlib

        module_name = f"{__name__}.{_CLASSIC[name]}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            module = None
        if module is None or not hasattr(module, name):
            raise NotImplementedError(
                f"fastmetric.{name} is not implemented yet (see the README's "
                f"status table). Available learners: "
                f"{', '.join(n for n in __all__ if n[0].isupper())}."
            )
        return getattr(module, name)
    raise AttributeError(f"module 'fastmetric' has no attribute {name!r}")
