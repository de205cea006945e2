"""The learners (layer 3): one module per algorithm, each a thin estimator.

A learner states its parameters, checks them (one declarative mechanism in
:mod:`fastmetric._core.params`), turns its supervision into constraints with
:mod:`fastmetric._core.constraints`, starts from :mod:`fastmetric._core.init`'s
initial map, and hands an objective from :mod:`fastmetric._core` to a solver.
The public names are exported by :mod:`fastmetric`; the modules import from the
core and the kernels only, never from one another.
"""
