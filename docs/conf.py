"""Sphinx configuration of fastmetric's documentation.

Build with ``make -C docs html`` (runs the gallery) or ``make -C docs
html-noplot`` (the gallery's pages without running its scripts); both turn
every warning into an error.
"""
import os
import sys
import warnings

# Build against this checkout (an in-place build: `python setup.py build_ext
# --inplace`) when fastmetric is not installed.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import fastmetric  # noqa: E402

project = "fastmetric"
author = "the fastmetric developers"
copyright = "the fastmetric developers, BSD 3-Clause"
release = fastmetric.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "matplotlib.sphinxext.plot_directive",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "examples/README.rst", "**/*.ipynb", "sg_execution_times.rst"]
templates_path = ["_templates"]

# -- cross-references --------------------------------------------------------
# Every reference must resolve; the few that name things outside any
# inventory (numpydoc's type words) are listed below.
nitpicky = True
nitpick_ignore_regex = [
    # numpydoc turns the words of free-text types ("array-like of shape (n,
    # d)", "int, default=None") into references; they name no object.
    ("py:class", r"[a-z][a-z0-9_ -]*"),
]

intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "scipy": ("https://docs.scipy.org/doc/scipy/", None),
    "sklearn": ("https://scikit-learn.org/stable/", None),
}
# The build must not need the network (CI, offline machines): the inventories
# are fetched only when FASTMETRIC_DOCS_INTERSPHINX=1.  Without them, names
# of these libraries are shown as code, without a link (and without a
# warning); every name of fastmetric's own must still resolve.
if os.environ.get("FASTMETRIC_DOCS_INTERSPHINX") != "1":
    intersphinx_mapping = {}
    nitpick_ignore_regex += [
        (r"py:(class|func|mod|meth|obj|data|exc|attr)",
         r"(sklearn|numpy|scipy|dask|distributed|threadpoolctl|matplotlib|hnswlib|skops)(\..*)?"),
    ]

# -- API reference -----------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks = set()

# -- gallery ------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "reference_url": {"fastmetric": None},
    "matplotlib_animations": False,
    "show_memory": False,
    "line_numbers": False,
    "min_reported_time": 0,
}

# The plot directive (user guide figures, performance page) draws at build time.
plot_include_source = False
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 100)]
plot_rcparams = {"figure.figsize": (7.0, 4.0), "savefig.bbox": "tight"}

# matplotlib writes its figures off-screen.
os.environ.setdefault("MPLBACKEND", "Agg")
warnings.filterwarnings("ignore", message="Matplotlib is currently using agg")

# -- HTML --------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"fastmetric {release}"
html_static_path = ["_static"]
html_css_files = ["fastmetric.css"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    "secondary_sidebar_items": ["page-toc"],
}
html_sidebars = {"index": [], "performance": []}
html_show_sourcelink = False
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3


# -- private paths in docstrings ------------------------------------------------
# Docstrings sometimes name a public object by the private module that defines
# it (``fastmetric._learners.ldml.LDML``).  Such a reference is sent to the
# public page of the same object; a reference to a truly private helper
# (``fastmetric._core.init.initialize_components``) is shown as code without a
# link, as it has no page.  Any other unresolved reference stays an error.
PUBLIC_MODULES = ("fastmetric", "fastmetric.neighbors", "fastmetric.metrics", "fastmetric.pairwise")


def _public_name(target):
    import importlib

    module_name, _, attr = target.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError):
        return None
    for public in PUBLIC_MODULES:
        module = importlib.import_module(public)
        if getattr(module, attr, None) is obj and attr in getattr(module, "__all__", ()):
            return f"{public}.{attr}"
    return None


def _public_name_of_kernel(target):
    # fastmetric.kernels.sampling.sample_pairs -> fastmetric.pairwise.sample_pairs:
    # the Cython kernels have no pages; their validated Python functions do.
    import importlib

    attr = target.rpartition(".")[2]
    for public in PUBLIC_MODULES:
        if attr in getattr(importlib.import_module(public), "__all__", ()):
            return f"{public}.{attr}"
    return None


def _resolve_private(app, env, node, contnode):
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py":
        return None
    if target.startswith("fastmetric._"):
        public = _public_name(target)
    elif target == "fastmetric.kernels" or target.startswith("fastmetric.kernels."):
        public = _public_name_of_kernel(target)
    else:
        return None
    if public is not None:
        domain = env.get_domain("py")
        for role in ("class", "func", "obj"):
            ref = domain.resolve_xref(env, node["refdoc"], app.builder, role, public, node,
                                      contnode)
            if ref is not None:
                return ref
    return contnode  # a private helper: plain code, no link


def setup(app):
    app.connect("missing-reference", _resolve_private)
