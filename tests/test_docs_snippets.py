"""The documentation's Python snippets run as written.

Every ``.. code-block:: python`` of the hand-written pages (docs/*.rst,
docs/user_guide/*.rst) is executed, as tests/test_readme.py does for the
README.  A block just after an rst comment ``.. not-run: reason`` is a
template (another library's setup.py) and is only compiled.  The gallery's
scripts run in the documentation build (``make -C docs html``).
"""
import glob
import os
import re
import textwrap

import pytest

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
BLOCK = re.compile(
    r"(?P<before>(?:^\.\. not-run:[^\n]*\n\n)?)^\.\. code-block:: python\n\n"
    r"(?P<body>(?:(?:[ ]{3,}[^\n]*)?\n)+)", flags=re.M)


def _blocks():
    out = []
    pages = sorted(glob.glob(os.path.join(DOCS, "*.rst"))
                   + glob.glob(os.path.join(DOCS, "user_guide", "*.rst")))
    for page in pages:
        with open(page) as f:
            text = f.read()
        for i, m in enumerate(BLOCK.finditer(text)):
            name = f"{os.path.relpath(page, DOCS)}[{i}]"
            out.append((name, textwrap.dedent(m.group("body")), bool(m.group("before"))))
    return out


BLOCKS = _blocks()


def test_docs_have_snippets():
    if not os.path.isdir(DOCS):  # an installed copy without the repository
        pytest.skip("no docs/ next to the tests")
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize("name,code,template", BLOCKS, ids=[b[0] for b in BLOCKS])
@pytest.mark.filterwarnings("error::sklearn.exceptions.ConvergenceWarning")
def test_docs_snippet_runs(name, code, template):
    compiled = compile(code, f"docs/{name}", "exec")
    if template:
        return
    if "dask" in code:
        pytest.importorskip("dask.array")
    exec(compiled, {"__name__": "docs_snippet"})
