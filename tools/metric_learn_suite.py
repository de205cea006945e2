"""Run metric-learn 0.7.0's own test suite against metric-learn and against fastmetric.

fastmetric promises that code written for metric-learn runs after ``import fastmetric as
metric_learn``.  This script measures that promise with metric-learn's own tests (issue 17)::

    python3 tools/metric_learn_suite.py --venv /tmp/mlc/venv --workdir /tmp/mlc/work \\
        --json /tmp/mlc/outcomes.json

It needs the package index and takes a while: the fastmetric build 2-10 minutes, each of the two
test runs 9-11 minutes on two busy cores.  The source distribution holds ten of the repository's
test modules: ``test/metric_learn_test.py`` (the per-learner tests: SCML's parameter checks and
warnings, NCA on one class, the iris results) is not in it, so those are not measured here.

What it does
------------
1. ``pip download --no-deps --no-binary :all: metric-learn==0.7.0`` into ``--cache`` (kept), and
   unpacks the source distribution into ``--workdir`` (a fresh temporary folder by default).  Its
   tests are in ``test/``.
2. Creates the virtual environment ``--venv`` (reused if it exists) with ``scikit-learn<1.8`` (the
   newest scikit-learn metric-learn 0.7.0 runs on), ``pytest<8`` (the tests use
   ``pytest.warns(None)``, removed in pytest 8), pandas (``test_array_like_inputs`` skips itself
   without it), metric-learn from the downloaded archive, and
   fastmetric built from this checkout (``pip install <repo root>``; reinstalled on every run
   unless ``--no-fastmetric-install``, so that the run measures the checkout as it is now).
3. Runs ``python -m pytest test`` in the unpacked folder twice, each with ``--junitxml``:
   (a) as is, against metric-learn; (b) with ``FASTMETRIC_SWAP=1``, which makes the
   ``conftest.py`` written into ``test/`` swap the learner classes (below).
4. Prints, per test file, the number of tests and passed/failed/error/skipped for both runs, then
   sorts fastmetric's failures and errors into groups (``classify``), and writes every test's two
   outcomes and fastmetric's failure message to ``--json`` so that two runs can be diffed.

How the learners are swapped
----------------------------
pytest imports ``test/conftest.py`` before it imports any test module.  With ``FASTMETRIC_SWAP=1``
that conftest imports ``metric_learn`` and all of its submodules, and for every learner class in
``metric_learn.__all__`` (the subclasses of ``BaseMetricLearner``: ``Covariance``, ``ITML``,
``ITML_Supervised``, ... ``SCML_Supervised``) rebinds the name, wherever a ``metric_learn`` module
holds that class, to fastmetric's class of the same name.  So ``import metric_learn;
metric_learn.ITML``, ``from metric_learn import ITML`` and ``from metric_learn.itml import ITML`` in
the test modules (including the module-level learner lists of ``test/test_utils.py``) all give
fastmetric's class.  metric-learn's private bases and mixins (``MahalanobisMixin``,
``_PairsClassifierMixin``, ``_BaseSDML``, ...) stay metric-learn's, so the suite's mock learners are
still built on metric-learn's code; instead, each fastmetric class is registered as a virtual
subclass (``ABCMeta.register``) of the metric-learn bases of its namesake, so that the tests'
``isinstance(estimator, _PairsClassifierMixin)`` choices pick the same branch as for
metric-learn's learner.  The unpacked ``test/`` folder also gets an empty ``__init__.py``: the
tests import each other as ``test.test_utils``, which would otherwise find Python's own ``test``
package.

How fastmetric's failures are sorted
------------------------------------
A fastmetric failure or error is, in this order:
``metric-learn fails too`` when the test does not pass on metric-learn either (in this environment
mostly SDML, whose scikit-learn graphical lasso fails without skggm, and tests that demand no warning
at all while metric-learn's input checks raise scikit-learn 1.6's ``force_all_finite`` warning);
``private/mock`` when the test reaches into a private attribute of metric-learn's learners (the
failure is ``AttributeError: ... has no attribute '_...'``) or runs on the suite's mock learner or
the mixin class itself (parameter id ``mock`` or ``class``); tests that only use metric-learn's
private helpers to build data or the expected message are judged by their failure instead;
``documented`` when it matches a deliberate difference that fastmetric's README states
(``DOCUMENTED``);
and otherwise ``open``.  Each failure is also labelled with the point of issue 17 (or the ``new: ...``
difference) whose rule in ``ISSUE_POINTS`` it matches, or ``new`` when none does.

``--report-only`` reads the JUnit files of an earlier run in ``--workdir`` again, for new rules;
``--reuse-metric-learn-run`` keeps metric-learn's outcomes from an earlier run in ``--workdir``
and runs only fastmetric's tests (half the time, while working on fastmetric).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
METRIC_LEARN = "metric-learn==0.7.0"
SDIST_NAME = "metric-learn-0.7.0"
# pandas: test_array_like_inputs skips itself without it.
REQUIREMENTS = ["scikit-learn<1.8", "pytest<8", "packaging", "pandas"]
OUTCOMES = ("passed", "failed", "error", "skipped")
PACKAGES = ("scikit-learn", "numpy", "scipy", "pytest", "metric-learn", "fastmetric")
VERSIONS_CODE = ("import sklearn, numpy, scipy, pytest, metric_learn, fastmetric; "
                 "print(sklearn.__version__, numpy.__version__, scipy.__version__, pytest.__version__, "
                 "metric_learn.__version__, fastmetric.__version__)")

# A fastmetric failure that is about metric-learn's private parts: the test reaches into a private
# attribute of the learner (``_validate_calibration_params``, ``_check_preprocessor``, ``_tuple_size``),
# or runs on the suite's mock learner or on the mixin class itself (parameter ids ``mock``, ``class``).
PRIVATE_MESSAGE = r"has no attribute '_"
MOCK_ID = r"[\[-](mock|class)[\]-]"

# Rules, tried in order; the first whose test id pattern and message pattern both match (re.search)
# names the failure.  DOCUMENTED: deliberate differences that fastmetric's README states.
DOCUMENTED = [
    # The rows of the README's "Differences from metric-learn" table (section "Coming from
    # metric-learn"), as (label, test id pattern, message pattern).
    ("singular covariance init/prior regularised",
     r"test_singular_covariance_init_or_prior_strictpd|test_singular_covariance_init_of_non_strict_pd",
     # no error and no warning (DID NOT WARN); "assert False" when another
     # warning (a ConvergenceWarning) was raised instead of metric-learn's
     r"DID NOT RAISE|DID NOT WARN|^assert False"),
    ("error texts: ours name the value and the fix",
     r"test_pair_distance_dim|test_embed_dim|test_singular_array_init_or_prior_strictpd|"
     r"test_init_transformation|test_init_mahalanobis|test_n_components|test_error_message_tuple_size",
     r"^(AssertionError: )?assert ['\"]"),
    ("pair and tuple learners are scikit-learn transformers",
     r"test_pipeline_consistency\[(ITML|MMC|SDML|LSML|SCML)-", r"Found array with dim 3|X has \d+ features"),
    ("0/1 pair labels accepted", r"test_check_input_pairs_learners_invalid_y", r"DID NOT RAISE"),
    ("SCML with fewer triplets than features", r"test_raise_big_number_of_features", r"DID NOT RAISE"),
    ("SCML on index and on point triplets: equal to rounding, not bitwise",
     r"test_same_with_or_without_preprocessor\[SCML\]", r""),
]
# ISSUE_POINTS: the points of issue 17, then the differences this tool found beyond them ("new: ...").
ISSUE_POINTS = [
    ("1 threshold_ meaning", r"test_accuracy_toy_example", r""),
    ("2 preprocessor on _Supervised", r"",
     r"Invalid parameter 'preprocessor'|unexpected keyword argument 'preprocessor'"),
    ("2 preprocessor on _Supervised", r"ITML_Supervised-True|preprocessor.*ITML_Supervised",
     r"Expected 2D array, got 1D array"),
    ("3 get_metric with 1-D components_", r"test_get_metric_works_does_not_raise", r"IndexError"),
    ("4 calibrate_threshold beta=0", r"", r"beta must be a positive number; got 0"),
    ("5 SCML float params", r"SCML", r"TypeError.*(max_iter|output_iter|batch_size|n_basis|k_genuine|k_imp)"),
    ("6 singular prior array", r"test_singular_array_init_or_prior_strictpd", r""),
    ("7 set_threshold before fit", r"test_raise_not_fitted_error_if_not_fitted", r""),
    ("8 callable preprocessor, string ids", r"test_preprocessor_(weakly_)?supervised", r""),
    ("9 init='auto' rule", r"test_auto_init", r""),
    ("10 NCA single class", r"NCA.*(one_class|single_class|singleton)|(one_class|single_class).*NCA", r""),
    ("11 SCML warnings", r"(?i)scml", r"n_basis|DID NOT WARN"),
    ("12 score_pairs", r"score_pairs", r""),
    ("12 message texts", r"",
     r"^(AssertionError: )?assert ['\"].*['\"] == ['\"]|Regex pattern did not match"),
    ("12 message texts", r"test_singular_covariance_init_of_non_strict_pd", r"^assert False"),
    # pytest.warns(None) then len(record) == 0: any warning fails (for metric-learn: scikit-learn's
    # force_all_finite deprecation in its input checks).
    ("a warning where the test wants none", r"", r"^assert \d+ == 0"),
    ("new: pairs learners are TransformerMixin", r"test_pipeline_consistency\[(ITML|MMC|SDML)-",
     r"Found array with dim 3|X has \d+ features, but"),
    ("new: 0/1 pair labels accepted", r"test_check_input_pairs_learners_invalid_y", r"DID NOT RAISE"),
    ("new: SCML n_features > n_triplets", r"test_raise_big_number_of_features", r""),
    ("new: SCML preprocessor vs points not bitwise", r"test_same_with_or_without_preprocessor\[SCML\]", r""),
]


def run(cmd, **kwargs):
    """Run a command, echoing it, and fail on a non-zero exit code."""
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def fetch_sdist(cache, workdir):
    """Download metric-learn's source distribution (once) and unpack it into ``workdir``.

    Returns the unpacked folder.  A folder left by an earlier run is unpacked anew, so that its
    tests are the released ones.
    """
    cache.mkdir(parents=True, exist_ok=True)
    archives = sorted(cache.glob(SDIST_NAME + ".tar.gz"))
    if not archives:
        run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             METRIC_LEARN, "-d", cache])
        archives = sorted(cache.glob(SDIST_NAME + ".tar.gz"))
    if not archives:
        raise FileNotFoundError(f"pip download left no {SDIST_NAME}.tar.gz in {cache}")
    workdir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archives[0]) as tar:
        tar.extractall(workdir, filter="data")
    source = workdir / SDIST_NAME
    (source / "test" / "__init__.py").touch()
    (source / "test" / "conftest.py").write_text(CONFTEST)
    return archives[0], source


def prepare_venv(venv, archive, install_fastmetric):
    """Create (or reuse) the virtual environment and install what the runs need.

    Returns the environment's Python interpreter.
    """
    python = venv / "bin" / "python"
    if not python.exists():
        run([sys.executable, "-m", "venv", venv])
        run([python, "-m", "pip", "install", "-q", *REQUIREMENTS, archive, REPO_ROOT])
        return python
    run([python, "-m", "pip", "install", "-q", *REQUIREMENTS, archive])  # quick when present
    if install_fastmetric:
        # --force-reinstall: the version number stays the same while the checkout changes.
        run([python, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", REPO_ROOT])
    return python


# Written into the unpacked test/ folder; pytest imports it before any test module.
CONFTEST = textwrap.dedent('''\
    """Swap metric-learn's learner classes for fastmetric's when FASTMETRIC_SWAP=1.

    Written by fastmetric's tools/metric_learn_suite.py, whose docstring explains the approach.
    """
    import abc
    import importlib
    import os
    import pkgutil
    import sys

    SWAPPED = {}

    if os.environ.get("FASTMETRIC_SWAP") == "1":
        import fastmetric
        import metric_learn
        from metric_learn.base_metric import BaseMetricLearner

        for info in pkgutil.iter_modules(metric_learn.__path__):
            importlib.import_module("metric_learn." + info.name)
        for name in metric_learn.__all__:
            ml_cls = getattr(metric_learn, name)
            if not (isinstance(ml_cls, type) and issubclass(ml_cls, BaseMetricLearner)):
                continue
            fm_cls = getattr(fastmetric, name)  # an AttributeError here is a missing learner
            SWAPPED[name] = fm_cls
            for module_name, module in list(sys.modules.items()):
                if module_name.split(".")[0] == "metric_learn" and getattr(module, name, None) is ml_cls:
                    setattr(module, name, fm_cls)
            for base in ml_cls.__mro__[1:]:
                if isinstance(base, abc.ABCMeta) and base.__module__.startswith("metric_learn"):
                    base.register(fm_cls)


    def pytest_report_header(config):
        if not SWAPPED:
            return "metric-learn's own learners"
        import fastmetric
        return ("fastmetric %s (%s) swapped in for: %s"
                % (fastmetric.__version__, fastmetric.__file__, ", ".join(sorted(SWAPPED))))
    ''')


def run_suite(python, source, junit, swap):
    """Run the unpacked test suite once; pytest's exit code is not an error here."""
    env = dict(os.environ, FASTMETRIC_SWAP="1" if swap else "0")
    cmd = [python, "-m", "pytest", "test", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
    print("+ " + " ".join(str(c) for c in cmd) + ("  (fastmetric swapped in)" if swap else ""), flush=True)
    log = junit.with_suffix(".log")
    with open(log, "w") as out:  # pytest's own output, to follow a run with tail -f
        completed = subprocess.run([str(c) for c in cmd], check=False, cwd=source, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    tail = (log.read_text().strip().splitlines() or [""])[-1]
    print(f"  exit {completed.returncode}: {tail}", flush=True)
    if not junit.exists():
        raise RuntimeError(f"pytest wrote no {junit}; see {log}")


def read_junit(path):
    """Per-test outcomes from a JUnit XML file: ``{test id: (outcome, message)}``.

    The test id is ``test_file.py::[Class::]name[params]``.  A test reported twice (a failure in
    the call, then an error at teardown) keeps its first non-passing outcome.
    """
    results = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        parts = case.get("classname", "").split(".")
        # classname is "test.test_file" or "test.test_file.Class"
        file_name = parts[1] + ".py" if len(parts) > 1 else parts[0]
        test_id = "::".join([file_name, *parts[2:], case.get("name", "")])
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = child.tag
                message = child.get("message") or (child.text or "")
                break
        if test_id not in results or results[test_id][0] == "passed":
            results[test_id] = (outcome if outcome != "failure" else "failed", message)
    return results


def test_function(test_id):
    """``file::function`` of a test id (class and parameters dropped)."""
    parts = test_id.split("::")
    return f"{parts[0]}::{parts[-1].split('[')[0]}"


def first_line(message, width=160):
    """The first non-empty line of a failure message, cut to ``width`` characters."""
    line = next((s.strip() for s in message.splitlines() if s.strip()), "")
    return line if len(line) <= width else line[:width - 3] + "..."


def match_rule(rules, test_id, message):
    """Label of the first rule ``(label, id pattern, message pattern)`` that matches, else None."""
    for label, id_pattern, message_pattern in rules:
        if re.search(id_pattern, test_id) and re.search(message_pattern, message):
            return label
    return None


def classify(test_id, ml_outcome, message):
    """Group and label of a fastmetric failure; see the module docstring."""
    point = match_rule(ISSUE_POINTS, test_id, message) or "new"
    if ml_outcome != "passed":
        return "metric-learn fails too", f"{ml_outcome} there; {point}"
    if re.search(PRIVATE_MESSAGE, message):
        return "private/mock", "private attribute"
    if re.search(MOCK_ID, test_id):
        return "private/mock", "mock learner or mixin class"
    documented = match_rule(DOCUMENTED, test_id, message)
    if documented:
        return "documented", documented
    return "open", point


def count_by_file(results):
    """``{file: Counter(outcome)}`` for one run."""
    table = defaultdict(Counter)
    for test_id, (outcome, _) in results.items():
        table[test_id.split("::")[0]][outcome] += 1
    return table


def print_tables(ml, fm, classes):
    """Print the per-file table and the sorted failures (Markdown)."""
    ml_files, fm_files = count_by_file(ml), count_by_file(fm)
    files = sorted(set(ml_files) | set(fm_files))
    head = ["file", "tests"] + [f"ml {o}" for o in OUTCOMES] + [f"fm {o}" for o in OUTCOMES]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    totals = Counter()
    for name in files + ["total"]:
        if name == "total":
            row_ml = Counter({o: totals["ml " + o] for o in OUTCOMES})
            row_fm = Counter({o: totals["fm " + o] for o in OUTCOMES})
            tests = totals["tests"]
        else:
            row_ml, row_fm = ml_files[name], fm_files[name]
            tests = max(sum(row_ml.values()), sum(row_fm.values()))
            totals["tests"] += tests
            for o in OUTCOMES:
                totals["ml " + o] += row_ml[o]
                totals["fm " + o] += row_fm[o]
        cells = [name, str(tests)] + [str(row_ml[o]) for o in OUTCOMES] + [str(row_fm[o]) for o in OUTCOMES]
        if name == "total":
            cells = [f"**{c}**" for c in cells]
        print("| " + " | ".join(cells) + " |")
    print()
    n = totals["tests"]
    print(f"metric-learn passes {totals['ml passed']} of {n}; "
          f"fastmetric passes {totals['fm passed']} of {n}.")
    print()
    groups = defaultdict(list)
    for test_id, (group, label) in classes.items():
        groups[(group, label)].append(test_id)
    print("fastmetric's failures and errors, sorted:")
    print()
    print("| group | label | tests | example | message |")
    print("|---|---|---|---|---|")
    order = ["metric-learn fails too", "private/mock", "documented", "open"]
    for key in sorted(groups, key=lambda k: (order.index(k[0]), k[1])):
        ids = sorted(groups[key])
        message = first_line(fm[ids[0]][1], 120).replace("|", "\\|")
        example = ids[0] if len(ids[0]) <= 100 else ids[0][:97] + "..."
        print(f"| {key[0]} | {key[1]} | {len(ids)} | `{example}` | {message} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, help="folder to unpack into (default: a new temporary one)")
    parser.add_argument("--venv", type=Path, required=True, help="virtual environment (reused if present)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "metric-learn-sdist",
                        help="where the downloaded source distribution is kept")
    parser.add_argument("--json", type=Path, help="write the per-test outcomes here")
    parser.add_argument("--no-fastmetric-install", action="store_true",
                        help="keep the fastmetric already in --venv (default: reinstall from this checkout)")
    parser.add_argument("--reuse-metric-learn-run", action="store_true",
                        help="keep metric-learn's outcomes from an earlier run in --workdir (they "
                             "depend on metric-learn and the environment only) and run fastmetric's")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: sort the outcomes of the last run in --workdir again")
    args = parser.parse_args(argv)

    if args.report_only and not args.workdir:
        parser.error("--report-only needs the --workdir of an earlier run")
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="metric-learn-suite-"))).resolve()
    ml_junit, fm_junit = workdir / "metric_learn.xml", workdir / "fastmetric.xml"
    python = args.venv.resolve() / "bin" / "python"
    if not args.report_only:
        archive, source = fetch_sdist(args.cache.resolve(), workdir)
        python = prepare_venv(args.venv.resolve(), archive, not args.no_fastmetric_install)
        if not (args.reuse_metric_learn_run and ml_junit.exists()):
            run_suite(python, source, ml_junit, swap=False)
        run_suite(python, source, fm_junit, swap=True)
    versions = subprocess.run([str(python), "-c", VERSIONS_CODE], check=True, capture_output=True,
                              text=True, cwd=workdir).stdout.split()
    ml, fm = read_junit(ml_junit), read_junit(fm_junit)

    classes = {
        test_id: classify(test_id, ml.get(test_id, ("missing", ""))[0], message)
        for test_id, (outcome, message) in fm.items() if outcome in ("failed", "error")
    }
    print()
    print("scikit-learn {}, numpy {}, scipy {}, pytest {}, metric-learn {}, fastmetric {}".format(*versions))
    print()
    print_tables(ml, fm, classes)

    if args.json:
        commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
                                check=False, capture_output=True, text=True).stdout.strip()
        record = {
            "fastmetric_commit": commit,
            "versions": dict(zip(PACKAGES, versions)),
            "tests": {
                test_id: {
                    "metric_learn": ml.get(test_id, ("missing", ""))[0],
                    "fastmetric": fm.get(test_id, ("missing", ""))[0],
                    "group": classes.get(test_id, ("", ""))[0],
                    "label": classes.get(test_id, ("", ""))[1],
                    "message": first_line(fm.get(test_id, ("", ""))[1], 400),
                }
                for test_id in sorted(set(ml) | set(fm))
            },
        }
        args.json.write_text(json.dumps(record, indent=1) + "\n")
        print(f"\nper-test outcomes written to {args.json}")


if __name__ == "__main__":
    main()
