"""Docstring text shared by the learners, written once.

Several learners take the same parameter, or set the same attribute, with
the same meaning (``preprocessor`` for point inputs, ``n_features_in_``,
the iris example's first lines...).  Their numpydoc entries live here, in
:data:`FRAGMENTS`, and a learner's docstring names one by a line holding
only ``{name}`` (indented like the entries around it).  The
:func:`shared_docs` class decorator replaces each such line by the fragment,
indented to the placeholder's column, in the class docstring and in the
docstrings of the methods the class defines (``fit``...), so the rendered
text is ordinary numpydoc and its examples run as doctests.

A placeholder must fill a whole line: braces inside a line (set notation,
``{'auto', 'pca'}``) are left alone.  An unknown name raises a KeyError at
import, so a typo cannot reach a rendered docstring.  Where a parameter
means something different in one learner (what ``n_jobs`` parallelises,
another default), that learner keeps its own entry.
"""
import inspect
import re
import textwrap

__all__ = ["FRAGMENTS", "fill_docstring", "shared_docs"]

# The pieces of the ``fit(X, y)`` docstrings of the learners taught by class
# labels.  Lines indented deeper right after a ``{fit_labelled_...}``
# placeholder continue the description of ``y``: there each learner states
# what its labels must hold (how many classes, how many samples a class).
_PARAMETERS = """\
Parameters
----------
"""
_POINTS = """\
X : array-like of shape (n_samples, n_features)
    The training points; with a ``preprocessor``, a 1-D array of their
    identifiers (row indices into an array, or anything a callable takes).
"""
_LABELS = """\
y : array-like of shape (n_samples,)
    Class labels."""

FRAGMENTS = {
    # ---- parameters ----
    "preprocessor_points": """\
preprocessor : array-like of shape (n_samples, n_features) or callable, optional
    When set, ``X`` in ``fit`` and ``transform`` may be a 1-D array of
    row indices into it, or, for a callable (a loader), of any identifiers
    it takes (file names, keys), as in metric-learn.""",
    "preprocessor_pairs": """\
preprocessor : array-like of shape (n_samples, n_features) or callable, optional
    When set, ``pairs`` may be index pairs ``(n_pairs, 2)`` into it, or,
    for a callable (a loader), pairs of any identifiers it takes.""",
    "n_components": """\
n_components : int, optional
    Rows of ``L`` (the embedding dimension); default ``n_features`` (or
    the rows of an array ``init``).""",
    "n_jobs_kernels": """\
n_jobs : int, optional
    OpenMP threads of the kernels (None: what OpenMP allows, -1: all
    CPUs, k > 0: k, at most 4 per CPU).  The result does not depend on
    it.""",
    "feature_scaling": """\
feature_scaling : {'auto', 'range'} or None, default='auto'
    Features in different units (ranges of the varying columns more than
    100 times apart, e.g. raw breast cancer: 0.03 to 4,000) leave the small
    ones without gradient from a start in the data's units, and the fit
    stops with them unused.  ``'auto'`` then computes a named ``init`` on
    the features divided by their ranges (powers of two) and runs the
    solver over ``L * ranges`` column by column, where every feature spans
    about one unit; the learned metric is still one of the raw features
    (``transform`` takes raw data).  ``'range'`` does so for any data;
    ``None`` never (metric-learn's and scikit-learn's behaviour).  Data in
    one unit (min-max or standardised columns, raw pixels) are fitted as
    without it, bit for bit, unless their largest range is below 1/8 or
    above 2^20 (about a million): ``'auto'`` then divides every varying feature by one power
    of two, to a range of about one: the tolerances and default bounds are
    made for data of moderate size, and min-max data times 2^-10 or 2^40
    are then fitted as the min-max data, the map multiplied back (LFDA,
    whose eigenproblem does not depend on the scale, skips this step).  See
    :func:`fastmetric._core.init.feature_scales`.  The fitted attribute
    ``feature_scales_`` holds the scales used (None when the features were
    used as given).""",
    "verbose_objective": """\
verbose : bool or int, default=False
    Print the objective at each iteration.""",
    "callback_iterate": """\
callback : callable, optional
    ``callback(estimator, iteration, loss)`` after each iteration, with
    ``components_`` set to the current iterate; returning True stops the
    fit.""",
    "num_constraints": """\
num_constraints : int, default='deprecated'
    metric-learn's old name of ``n_constraints``: a value given here is
    used as ``n_constraints``, with a FutureWarning (as in metric-learn
    0.7).""",
    "convergence_threshold": """\
convergence_threshold : float, default='deprecated'
    metric-learn's old name of ``tol``: a value given here is used as
    ``tol``, with a FutureWarning (as in metric-learn 0.7).""",
    "n_constraints": """\
n_constraints : int, optional
    Number of similar pairs and of dissimilar pairs drawn from the labels;
    default ``20 * n_classes ** 2`` (metric-learn's).""",
    "n_constraints_grow": """\
n_constraints : int, optional
    Number of similar pairs and of dissimilar pairs drawn from the
    labels; default ``max(20 * n_classes ** 2, min(10 * n_samples,
    100000))`` (:func:`fastmetric._core.constraints.data_pair_count`:
    it grows with the data).  ``n_constraints=20 * n_classes ** 2`` is
    metric-learn's default.""",
    # ---- attributes ----
    "learned_map": """\
components_ : ndarray of shape (n_components, n_features)
    The learned map ``L``.""",
    "loss_history": """\
n_iter_ : int
    Iterations done.
loss_ : float
    Final objective.
loss_curve_ : list of float
    Objective after each iteration.""",
    "n_iter_no_change": """\
n_iter_no_change : int, default=5
    The stochastic solvers stop after this many epochs without an
    improvement of the mean loss by ``tol``.""",
    "n_features_in": """\
n_features_in_ : int
    Number of features seen in ``fit``.""",
    "feature_names_in": """\
feature_names_in_ : ndarray of str
    The names of the features seen in ``fit``, when ``X`` has feature
    names.""",
    "pair_decision": """\
threshold_ : float
    A distance: pairs with ``pair_distance <= threshold_`` are predicted
    similar (metric-learn's meaning); calibrated on the training pairs at
    the end of ``fit``.
classes_ : ndarray of shape (2,)
    The pair labels of ``fit``'s encoding, dissimilar then similar:
    ``[-1, 1]`` for -1/+1 labels (metric-learn's), ``[0, 1]`` for 0/1
    labels; :meth:`predict` answers in them.""",
    # ---- fit ----
    "fit_points": _POINTS,
    "fit_labelled_points": _PARAMETERS + _POINTS + _LABELS,
    "fit_hard_pairs": """\
Parameters
----------
pairs : array-like of shape (n_pairs, 2, n_features) or (n_pairs, 2)
    Pairs of points, or index pairs into ``preprocessor``.
y : array-like of shape (n_pairs,)
    +1/-1 or 1/0 labels: similar / dissimilar.  ``classes_`` (and so
    :meth:`predict`) follows the encoding: ``[-1, 1]`` or ``[0, 1]``
    (``[-1, 1]`` when every label is 1).
calibration_params : dict, optional
    Keyword arguments of :meth:`calibrate_threshold`, run on the
    training pairs at the end.""",
    "returns_self": """\
Returns
-------
self : object
    The fitted estimator.""",
    # ---- examples ----
    "load_iris": """\
>>> from sklearn.datasets import load_iris
>>> X, y = load_iris(return_X_y=True)""",
    # 100 index pairs into 30 random points, similar when close on feature 0
    "random_pairs": """\
>>> import numpy as np
>>> rng = np.random.RandomState(0)
>>> X = rng.randn(30, 3)
>>> pairs = rng.randint(0, 30, size=(100, 2))
>>> y = np.where(np.abs(X[pairs[:, 0], 0] - X[pairs[:, 1], 0]) < 0.5, 1, -1)""",
}

# A line holding only ``{name}``: group 1 is its indentation, group 2 the name.
_PLACEHOLDER = re.compile(r"^([ \t]*)\{(\w+)\}[ \t]*$", re.MULTILINE)


def fill_docstring(doc, fragments=None):
    """Replace the ``{name}`` placeholder lines of a docstring.

    Parameters
    ----------
    doc : str or None
        The docstring (None under ``python -OO``, returned as is).
    fragments : dict of str, optional
        Fragments by name; default :data:`FRAGMENTS`.

    Returns
    -------
    str or None
        ``doc`` with each placeholder line replaced by its fragment, every
        line of which is indented like the placeholder.

    Raises
    ------
    KeyError
        A placeholder names no fragment.
    """
    if doc is None:
        return None
    fragments = FRAGMENTS if fragments is None else fragments

    def _fill(match):
        indent, name = match.groups()
        if name not in fragments:
            raise KeyError(
                f"docstring placeholder {{{name}}} names no shared fragment; "
                f"known: {sorted(fragments)}")
        return textwrap.indent(fragments[name], indent)

    return _PLACEHOLDER.sub(_fill, doc)


def shared_docs(cls=None, **local):
    """Class decorator: fill the placeholders of a class's docstrings.

    Fills the class docstring and those of the functions defined in the
    class body (``fit``, including when wrapped by ``_fit_context`` or
    ``available_if``).
    ``@shared_docs`` uses :data:`FRAGMENTS`; ``@shared_docs(name=text)``
    adds fragments local to one module (text shared by a learner and its
    ``_Supervised`` form), which win over the shared ones.

    Parameters
    ----------
    cls : type, optional
        The class, when used without arguments.
    **local : str
        Extra fragments, dedented numpydoc text.

    Returns
    -------
    type or callable
        The class (its docstrings filled in place), or the decorator.
    """
    fragments = {**FRAGMENTS, **local}

    def _decorate(klass):
        klass.__doc__ = fill_docstring(klass.__doc__, fragments)
        for member in vars(klass).values():
            # A method behind scikit-learn's ``available_if`` is the
            # descriptor's ``fn``; the descriptor keeps a copy of its doc.
            fn = member if inspect.isfunction(member) else getattr(member, "fn", None)
            if inspect.isfunction(fn) and fn.__doc__:
                fn.__doc__ = fill_docstring(fn.__doc__, fragments)
                if member is not fn:
                    member.__doc__ = fn.__doc__
        return klass

    return _decorate if cls is None else _decorate(cls)
