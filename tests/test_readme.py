"""The README's Python examples run as written."""
import os
import re

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def _python_blocks():
    if not os.path.isfile(README):  # an installed copy without the repository
        return []
    with open(README) as f:
        text = f.read()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("index", range(len(_python_blocks())))
# An example that stops before its solver converges would teach the wrong
# settings: the examples must run without a ConvergenceWarning.
@pytest.mark.filterwarnings("error::sklearn.exceptions.ConvergenceWarning")
def test_readme_example_runs(index):
    code = _python_blocks()[index]
    exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "readme"})


def test_readme_has_examples():
    assert len(_python_blocks()) >= 4


def test_the_common_parameters_are_where_the_readme_says():
    """The Learners section says which learners have init / prior, normalize,
    n_jobs, random_state, verbose and callback: keep it true."""
    import inspect

    import fastmetric

    learners = [n for n in fastmetric.__all__ if n[0].isupper()
                and not n.startswith("Mahalanobis") and hasattr(getattr(fastmetric, n), "fit")]

    def having(param):
        return {n for n in learners
                if param in inspect.signature(getattr(fastmetric, n)).parameters}

    everyone = set(learners)
    family = {"LDML", "LDML_Supervised", "ClusterLDML"}
    closed_form = {"Covariance", "LFDA", "RCA"}
    assert having("init") == {"NCA", "LMNN", "MLKR", "MMC", "MMC_Supervised"} | family
    assert having("prior") >= {"ITML", "ITML_Supervised", "LSML", "LSML_Supervised", "SDML",
                               "SDML_Supervised"}
    assert having("normalize") == family
    assert having("n_jobs") == having("random_state") == everyone - closed_form
    assert having("verbose") == everyone - closed_form - {"RCA_Supervised"}
    assert having("callback") == everyone - closed_form - {"RCA_Supervised", "SDML",
                                                           "SDML_Supervised"}
