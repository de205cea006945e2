import numpy as np
import pytest


@pytest.fixture(params=[np.float64, np.float32], ids=["float64", "float32"])
def dtype(request):
    return request.param


def tolerance(dtype):
    """Relative tolerance suited to the precision of dtype."""
    return 1e-10 if dtype == np.float64 else 2e-4
