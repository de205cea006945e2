"""The shared docstring fragments and their placeholder mechanism."""
import inspect
import re

import pytest

import fastmetric
from fastmetric._core.docs import FRAGMENTS, fill_docstring, shared_docs

LEARNERS = [getattr(fastmetric, name) for name in (
    "ClusterLDML", "Covariance", "ITML", "ITML_Supervised", "LDML", "LDML_Supervised", "LFDA",
    "LMNN", "LSML", "LSML_Supervised", "MLKR", "MMC", "MMC_Supervised", "NCA", "RCA",
    "RCA_Supervised", "SCML", "SCML_Supervised", "SDML", "SDML_Supervised")]

_LEFT_OVER = re.compile(r"^[ \t]*\{\w+\}[ \t]*$", re.MULTILINE)


def test_fill_indents_each_fragment_line_like_the_placeholder():
    doc = "Summary.\n\n    Parameters\n    ----------\n    {n_jobs_kernels}\n    tail\n"
    filled = fill_docstring(doc)
    expected = "\n".join("    " + line for line in FRAGMENTS["n_jobs_kernels"].split("\n"))
    assert expected in filled
    assert filled.startswith("Summary.\n\n    Parameters\n")
    assert filled.endswith("\n    tail\n")


def test_only_whole_line_placeholders_are_filled():
    doc = "x : {'auto', 'pca'}\n    ``{n_jobs_kernels}`` inside a line stays.\n"
    assert fill_docstring(doc) == doc
    assert fill_docstring(None) is None


def test_unknown_placeholder_raises_naming_it():
    with pytest.raises(KeyError, match="no_such_fragment"):
        fill_docstring("A.\n\n    {no_such_fragment}\n")


def test_decorator_fills_class_and_method_docstrings_with_local_fragments():
    @shared_docs(local_part="extra : int\n    Local text.")
    class Demo:
        """Demo.

        Parameters
        ----------
        {local_part}
        {n_jobs_kernels}
        """

        def fit(self, X, y):
            """Fit.

            {fit_labelled_points}
                At least 2 classes.
            """

    cls_doc = inspect.cleandoc(Demo.__doc__)
    assert "extra : int\n    Local text.\nn_jobs : int, optional\n" in cls_doc
    fit_doc = inspect.cleandoc(Demo.fit.__doc__)
    assert fit_doc.startswith("Fit.\n\nParameters\n----------\nX : array-like")
    assert fit_doc.endswith("y : array-like of shape (n_samples,)\n    Class labels.\n"
                            "    At least 2 classes.")


@pytest.mark.parametrize("cls", LEARNERS, ids=lambda c: c.__name__)
def test_rendered_learner_docstrings_hold_no_placeholder(cls):
    docs = [cls.__doc__] + [m.__doc__ for m in vars(cls).values()
                            if inspect.isfunction(m) and m.__doc__]
    for doc in docs:
        assert not _LEFT_OVER.search(doc), doc
    # Every fragment keeps the numpydoc layout: the entry line at the
    # section's indentation, its description four spaces deeper.
    lines = inspect.cleandoc(cls.__doc__).split("\n")
    start = lines.index("Parameters")
    assert lines[start + 1] == "-" * len("Parameters")
    assert lines[start + 2] and not lines[start + 2].startswith(" ")


def _package_modules():
    import pkgutil

    return sorted(info.name for info in pkgutil.walk_packages(fastmetric.__path__, "fastmetric.")
                  if not info.name.endswith("__main__"))


@pytest.mark.parametrize("module_name", _package_modules())
def test_every_docstring_example_of_the_package_runs(module_name):
    """The examples in docstrings of every module (the private helpers'
    too, not only the public API's, which other tests also run) still hold."""
    import doctest
    import importlib
    import warnings

    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # a module of an optional extra that is not installed
        pytest.skip(f"{module_name} needs {exc.name}")
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in doctest.DocTestFinder().find(module, module_name):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runner.run(test)
    assert runner.failures == 0
