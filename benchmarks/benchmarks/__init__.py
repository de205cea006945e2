"""asv benchmark suites for fastmetric.

When asv builds fastmetric into its own virtualenv the installed package is
imported as usual.  With ``asv run --python=same`` (or ``-E existing``) asv
imports whatever the current interpreter sees; developers usually have an
in-place build (``python setup.py build_ext --inplace``) that is not
installed, so when ``fastmetric`` cannot be imported we fall back to the
repository checkout two directories above this file, provided it holds a
``fastmetric`` package.  The fallback never shadows an installed copy.
"""
import importlib.util
import os
import sys


def _add_checkout_to_path():
    if importlib.util.find_spec("fastmetric") is not None:
        return
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
    if os.path.isfile(os.path.join(root, "fastmetric", "__init__.py")):
        sys.path.insert(0, root)


_add_checkout_to_path()
