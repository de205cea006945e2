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
