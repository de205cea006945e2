"""The command line, ``python -m fastmetric`` (top layer).

``main``: the comparison of every learner on scikit-learn's digits;
``demo``: its data split and the scores it prints.  Uses the public estimators
only; nothing imports this package.
"""
