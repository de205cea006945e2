"""Helpers shared by the asv suites: the parameters every suite uses, the
synthetic and digits data, and quiet fitting."""
import warnings

import numpy as np

SEED = 20240613
DTYPES = ["float32", "float64"]
N_JOBS = [1, 2]


def require(import_error, what):
    """NotImplementedError (asv then skips the benchmark) when ``what`` did
    not import, because an extension is not built."""
    if import_error is not None:
        raise NotImplementedError(
            f"fastmetric {what} is not available in this build: {import_error}"
        )


def classification(n, d, dtype, *, n_classes=10, n_informative=None, clusters_per_class=1,
                   standardize=False):
    """``make_classification`` points (a quarter of the features informative,
    a quarter redundant) and labels, C-contiguous in ``dtype``."""
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=n, n_features=d, n_informative=n_informative or d // 4,
        n_redundant=d // 4, n_classes=n_classes, n_clusters_per_class=clusters_per_class,
        random_state=SEED,
    )
    if standardize:
        from sklearn.preprocessing import StandardScaler

        X = StandardScaler().fit_transform(X)
    return np.ascontiguousarray(X, dtype=dtype), y


def digits_train(dtype="float64"):
    """The training 70 % of scikit-learn's digits (stratified), standardised."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    Xtr, _, ytr, _ = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    return np.ascontiguousarray(StandardScaler().fit_transform(Xtr), dtype=dtype), ytr


def fit_quietly(estimator, *args):
    """``estimator.fit(*args)`` without warnings: the suites fix the iteration
    count (tol=0), and reaching max_iter warns."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return estimator.fit(*args)
