"""fastmetric: fast Mahalanobis metric learning.

Learners are scikit-learn estimators that learn a linear map ``L``
(``components_``) so that ``d(x, y) = ||L x - L y||`` brings similar points
together, with metric-learn's class names, parameters and methods.  Their
hot loops (distances, pair losses and scatter matrices, Bregman projections,
triplet updates, neighbour and impostor search, pair sampling) are
OpenMP-parallel Cython kernels, the public ones in :mod:`fastmetric.pairwise`.
"""
from fastmetric import constraints, metrics, neighbors
from fastmetric._learners.cluster_ldml import ClusterLDML
from fastmetric._learners.covariance import Covariance
from fastmetric._learners.itml import ITML, ITML_Supervised
from fastmetric._learners.ldml import LDML, LDML_Supervised
from fastmetric._learners.lfda import LFDA
from fastmetric._learners.lmnn import LMNN
from fastmetric._learners.lsml import LSML, LSML_Supervised
from fastmetric._learners.mlkr import MLKR
from fastmetric._learners.mmc import MMC, MMC_Supervised
from fastmetric._learners.nca import NCA
from fastmetric._learners.rca import RCA, RCA_Supervised
from fastmetric._learners.scml import SCML, SCML_Supervised
from fastmetric._learners.sdml import SDML, SDML_Supervised
from fastmetric._persistence import load, save
from fastmetric.constraints import Constraints
from fastmetric.metrics import evaluate
from fastmetric.neighbors import (
    MahalanobisKNeighborsTransformer,
    MahalanobisNeighbors,
    MahalanobisRadiusNeighborsTransformer,
)

from . import pairwise
from ._config import __version__, get_include, show_config

__all__ = [
    "ClusterLDML",
    "Constraints",
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
    "neighbors",
    "metrics",
    "constraints",
    "MahalanobisNeighbors",
    "MahalanobisKNeighborsTransformer",
    "MahalanobisRadiusNeighborsTransformer",
    "evaluate",
    "save",
    "load",
    "__version__",
]
