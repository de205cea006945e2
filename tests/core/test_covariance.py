"""Tests of the covariance statistics of the core (fastmetric._core.covariance)."""
import numpy as np
from numpy.testing import assert_array_equal

from fastmetric._core.covariance import constant_features


def test_constant_detection():
    X = np.array([[1.0, 0.0, 3.0], [1.0, 0.0, 3.0 + 1e-9], [1.0, 0.0, 3.0]])
    assert_array_equal(constant_features(X), [True, True, False])
    # Values equal up to the last bits (e.g. standardised constant pixels).
    c = np.float64(-0.03) + np.array([0.0, 2**-58, 0.0])
    assert constant_features(np.column_stack([c, [0.0, 1.0, 2.0]]))[0]
