"""Objectives: problem classes that prepare their data once (indices, work
arrays, neighbour lists) and then evaluate a loss and its gradient many times
through the kernels.  The solvers of :mod:`fastmetric._core.solvers` drive them;
the learners only build them.
"""
