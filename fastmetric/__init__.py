"""fastmetric: fast Mahalanobis metric learning.

Learners are scikit-learn estimators that learn a linear map ``L``
(``components_``) so that ``d(x, y) = ||L x - L y||`` brings similar points
together, with metric-learn's class names, parameters and methods.  Their
hot loops (distances, pair losses and scatter matrices, Bregman projections,
triplet updates, neighbour and impostor search, pair sampling) are
OpenMP-parallel Cython kernels, the public ones in :mod:`fastmetric.pairwise`.
"""
__version__ = "0.1.0.dev0"

from ._config import get_include, show_config
from . import pairwise
from ._ldml import LDML, LDML_Supervised
from ._cluster_ldml import ClusterLDML
from ._covariance import Covariance
from ._itml import ITML, ITML_Supervised
from ._lfda import LFDA
from ._lmnn import LMNN
from ._lsml import LSML, LSML_Supervised
from ._mlkr import MLKR
from ._mmc import MMC, MMC_Supervised
from ._nca import NCA
from ._rca import RCA, RCA_Supervised
from ._scml import SCML, SCML_Supervised
from ._sdml import SDML, SDML_Supervised

__all__ = [
    "ClusterLDML",
    "Covariance",
    "ITML",
    "ITML_Supervised",
    "LDML",
    "LDML_Supervised",
    "LFDA",
    "LMNN",
    "LSML",
    "LSML_Supervised",
    "MLKR",
    "MMC",
    "MMC_Supervised",
    "NCA",
    "RCA",
    "RCA_Supervised",
    "SCML",
    "SCML_Supervised",
    "SDML",
    "SDML_Supervised",
    "get_include",
    "show_config",
    "pairwise",
    "__version__",
]
