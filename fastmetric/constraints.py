"""metric-learn's constraints module: ``Constraints`` and ``wrap_pairs``.

Code written for metric-learn imports them as ``from metric_learn.constraints
import Constraints, wrap_pairs``; here they are ``from fastmetric.constraints
import ...``.  Both live in :mod:`fastmetric._core.constraints`, the one
place that turns labels into constraints, and draw with the samplers of the
``_Supervised`` learners.
"""
from fastmetric._core.constraints import Constraints, wrap_pairs

__all__ = ["Constraints", "wrap_pairs"]
