"""The package's layers, read from its source: data flows down, without circles.

Layers, lowest first: ``fastmetric.kernels`` (Cython) < ``fastmetric._core`` <
``fastmetric._learners`` < the public modules (``fastmetric/*.py``) and
``fastmetric._cli``.  A module imports only from its own layer or lower ones;
no modules import one another around a loop; a learner never imports another
learner (shared code belongs in the core).  Every ``import`` counts, also one
inside a function.
"""
import ast
import os
import re

import pytest

PACKAGE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "fastmetric")
LAYERS = {"kernels": 1, "_core": 2, "_learners": 3, "_cli": 4}
PUBLIC_LAYER = 4


def _module_files(suffix):
    """``{module name: path}`` of the files under fastmetric/ ending in ``suffix``."""
    found = {}
    for root, _, files in os.walk(PACKAGE_DIR):
        for name in files:
            if name.endswith(suffix):
                path = os.path.join(root, name)
                rel = os.path.relpath(path, os.path.dirname(PACKAGE_DIR))[: -len(suffix)]
                module = rel.replace(os.sep, ".")
                found[module.removesuffix(".__init__")] = path
    return found


PY_MODULES = _module_files(".py")
PYX_MODULES = _module_files(".pyx")


def layer(module):
    """Layer of a module of fastmetric, from its name."""
    parts = module.split(".")
    if len(parts) == 1:
        return PUBLIC_LAYER  # the package itself
    return LAYERS.get(parts[1], PUBLIC_LAYER)  # fastmetric/*.py are public facades


def _imports_of(module, path):
    """Names of the fastmetric modules (or packages) that ``module`` imports."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from fastmetric._core import init` imports the submodule.
            names = [source] + [f"{source}.{alias.name}" for alias in node.names
                                if f"{source}.{alias.name}" in PY_MODULES]
        else:
            continue
        targets.update(n for n in names if n == "fastmetric" or n.startswith("fastmetric."))
    targets.discard(module)
    return targets


GRAPH = {module: _imports_of(module, path) for module, path in PY_MODULES.items()}

# Python-level imports in Cython sources (``cimport`` lines are C-level: not counted).
_PYX_IMPORT = re.compile(r"^\s*(?:from\s+(fastmetric[\w.]*)\s+import\b|import\s+(fastmetric[\w.]*))",
                         re.MULTILINE)


def _pyx_imports(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return {m.group(1) or m.group(2) for m in _PYX_IMPORT.finditer(text)}


def test_the_package_is_found():
    assert "fastmetric._core.base" in PY_MODULES and "fastmetric._learners.ldml" in PY_MODULES
    assert "fastmetric.kernels.distances" in PYX_MODULES
    assert layer("fastmetric.kernels.sampling") < layer("fastmetric._core.init") \
        < layer("fastmetric._learners.itml") < layer("fastmetric.pairwise")
    assert layer("fastmetric._cli.main") == layer("fastmetric") == PUBLIC_LAYER


@pytest.mark.parametrize("sources", [
    "python",
    "cython",
])
def test_no_import_from_a_higher_layer(sources):
    if sources == "python":
        edges = [(m, t) for m, targets in GRAPH.items() for t in targets]
    else:
        edges = [(m, t) for m, path in PYX_MODULES.items() for t in _pyx_imports(path)]
        assert edges or PYX_MODULES  # the kernels are read
    upward = sorted(f"{m} (layer {layer(m)}) imports {t} (layer {layer(t)})"
                    for m, t in edges if layer(t) > layer(m))
    if sources == "cython":
        # The kernels are Cython/C only: not even the core's Python helpers.
        upward += sorted(f"{m} imports the Python module {t}" for m, t in edges
                         if layer(t) == layer(m) and t in PY_MODULES)
    assert not upward, "\n".join(upward)


def _circles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue  # compiled kernels and other files: no Python imports to follow
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return circles


def test_no_import_circles():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles(GRAPH) == []


LEARNERS = sorted(m for m in PY_MODULES if m.startswith("fastmetric._learners."))


@pytest.mark.parametrize("learner", LEARNERS)
def test_learners_never_import_other_learners(learner):
    others = sorted(t for t in GRAPH[learner]
                    if t == "fastmetric._learners" or t.startswith("fastmetric._learners."))
    assert not others, f"{learner} imports {others}"
