"""Tests of the demo job ``python -m fastmetric``."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastmetric._cli.main as demo_main
from fastmetric._cli.demo import evaluate_embedding, kmeans_ari, load_digits_split

# The checkout: tests/cli/test_main.py is two directories below it.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(args, env_extra=None, timeout=900):
    env = dict(os.environ)
    # Run against this working tree (the package is not installed).
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    if env_extra:
        env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "fastmetric", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=REPO, check=False)


def _table_rows(stdout):
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("method"))
    rows = {}
    for line in lines[start + 2:]:
        if not line.strip():
            break
        parts = line.split()
        rows[parts[0]] = parts[1:]
    return rows


@pytest.fixture(scope="module")
def quick_run():
    return _run(["--quick", "--no-progress"])


def test_quick_run_prints_table(quick_run):
    proc = quick_run
    assert proc.returncode == 0, proc.stderr
    # a newcomer's first run shows the table, not warnings (--no-progress: nothing else on stderr)
    assert "Warning" not in proc.stderr, proc.stderr
    assert "fit time (s)" in proc.stdout and "pair AUC" in proc.stdout
    assert "3-NN acc" in proc.stdout and "k-means ARI" in proc.stdout
    assert "P@1" in proc.stdout and "MAP@R" in proc.stdout
    rows = _table_rows(proc.stdout)
    assert {"Euclidean", "LDML_Supervised", "ClusterLDML", "ClusterLDML+10%y"} <= set(rows)
    for name, values in rows.items():
        fit_time, auc, knn, ari, p1, map_r = values
        assert fit_time == "-" if name == "Euclidean" else float(fit_time) >= 0
        assert 0.5 < float(auc) <= 1.0
        assert 0.5 < float(knn) <= 1.0
        assert 0.3 < float(ari) <= 1.0
        assert 0.5 < float(p1) <= 1.0
        assert 0.1 < float(map_r) <= 1.0
    # the supervised metric separates held-out digit pairs better than pixels
    assert float(rows["LDML_Supervised"][1]) > float(rows["Euclidean"][1])


def test_progress_messages_on_stderr():
    proc = _run(["--quick", "--only", "ClusterLDML"])
    assert proc.returncode == 0, proc.stderr
    assert "fitting ClusterLDML" in proc.stderr
    assert "fitting ClusterLDML (with 10% of the labels)" in proc.stderr
    rows = _table_rows(proc.stdout)
    assert set(rows) == {"Euclidean", "ClusterLDML", "ClusterLDML+10%y"}


def test_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "embedding.png"
    proc = _run(["--quick", "--no-progress", "--only", "LDML_Supervised", "--plot", str(out)])
    assert proc.returncode == 0, proc.stderr
    assert out.exists()
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "plot saved to" in proc.stdout


def test_plot_without_matplotlib(tmp_path):
    # A stub package that shadows matplotlib and fails to import.
    stub = tmp_path / "matplotlib"
    stub.mkdir()
    (stub / "__init__.py").write_text("raise ImportError('matplotlib hidden by the test')\n")
    env = {"PYTHONPATH": str(tmp_path) + os.pathsep + REPO}
    proc = subprocess.run(
        [sys.executable, "-m", "fastmetric", "--quick", "--plot", str(tmp_path / "x.png")],
        capture_output=True, text=True, timeout=600, env={**os.environ, **env}, cwd=REPO,
        check=False)
    assert proc.returncode == 2
    assert "pip install fastmetric[plot]" in proc.stderr
    assert not (tmp_path / "x.png").exists()


def test_bad_arguments():
    proc = _run(["--n-jobs", "0"])
    assert proc.returncode == 2 and "--n-jobs" in proc.stderr
    proc = _run(["--only", "NoSuchLearner"])
    assert proc.returncode == 2 and "unknown learner" in proc.stderr


def test_learner_registry_is_generic(monkeypatch):
    import fastmetric

    names = [spec.name for spec, _ in demo_main.available_learners()]
    assert names[:3] == ["LDML_Supervised", "ClusterLDML", "ClusterLDML"]
    # A learner listed in LEARNERS appears as soon as fastmetric exports it.
    from fastmetric._learners.ldml import LDML_Supervised

    class NCA(LDML_Supervised):  # stand-in with a different name
        pass

    monkeypatch.setitem(fastmetric.__dict__, "NCA", NCA)
    found = {spec.name: cls for spec, cls in demo_main.available_learners()}
    assert found["NCA"] is NCA
    spec = next(s for s in demo_main.LEARNERS if s.name == "NCA")
    model = demo_main.make_learner(spec, NCA, quick=True, seed=3, n_jobs=1)
    assert model.random_state == 3 and model.max_iter == spec.quick_params["max_iter"]
    # not exported: skipped
    monkeypatch.delitem(fastmetric.__dict__, "NCA")
    assert "NCA" not in {spec.name for spec, _ in demo_main.available_learners()}


def test_format_table():
    text = demo_main.format_table([
        {"method": "Euclidean", "time": None, "auc": 0.8, "knn3": 0.97, "ari": 0.6, "p1": 0.97,
         "map_r": 0.5},
        {"method": "X", "time": 1.234, "auc": 0.9, "knn3": 0.98, "ari": 0.7, "p1": 0.99,
         "map_r": 0.75},
    ])
    lines = text.splitlines()
    assert lines[0].split()[0] == "method" and lines[0].split()[-2:] == ["P@1", "MAP@R"]
    assert lines[2].split() == ["Euclidean", "-", "0.8000", "0.9700", "0.6000", "0.9700", "0.5000"]
    assert lines[3].split() == ["X", "1.23", "0.9000", "0.9800", "0.7000", "0.9900", "0.7500"]


def test_retrieval_columns_match_the_metrics_module():
    from fastmetric.metrics import map_at_r, precision_at_k, relevant_counts

    X_train, X_test, y_train, y_test = load_digits_split()
    cols = demo_main.retrieval_columns(None, X_train, y_train, X_test, y_test)
    D = ((X_test[:, None, :] - X_train[None, :, :]) ** 2).sum(-1)
    order = np.stack([np.lexsort((np.arange(len(y_train)), row)) for row in D])
    labels = y_train[order]
    R = relevant_counts(y_test, y_train)
    assert np.isclose(cols["p1"], precision_at_k(y_test, labels, 1, n_relevant=R))
    assert np.isclose(cols["map_r"], map_at_r(y_test, labels, R))


def test_demo_helpers():
    X_train, X_test, y_train, y_test = load_digits_split()
    assert X_train.shape == (1257, 64) and X_test.shape == (540, 64)
    # stratified: every digit in both parts in proportion
    assert np.abs(np.bincount(y_test) / 540 - np.bincount(y_train) / 1257).max() < 0.01
    aris = kmeans_ari(X_test, y_test, seeds=(0, 1))
    assert aris.shape == (2,) and (aris > 0.4).all()
    res = evaluate_embedding(lambda Z: Z, X_train, y_train, X_test, y_test,
                             kmeans_seeds=(0,))
    assert res["knn3"] > 0.95 and "auc" not in res


def test_plot_path_is_checked_before_fitting(tmp_path):
    """A bad --plot path failed with a raw traceback after every learner had
    been fitted; a path without a suffix was reported as written although
    matplotlib added .png.  Checked up front now (exit code 2, one line)."""
    pytest.importorskip("matplotlib")
    from fastmetric._cli.main import plot_path

    assert plot_path(str(tmp_path / "embedding")) == str(tmp_path / "embedding") + ".png"
    assert plot_path(str(tmp_path / "e.svg")) == str(tmp_path / "e.svg")
    for bad, message in (("", "needs a file name"), (str(tmp_path), "is a folder"),
                         (str(tmp_path / "no" / "p.png"), "does not exist"),
                         (str(tmp_path / "out.txt"), "cannot write .txt files")):
        with pytest.raises(ValueError, match=message):
            plot_path(bad)
    proc = _run(["--quick", "--no-progress", "--only", "Covariance", "--plot",
                 str(tmp_path / "out.txt")])
    assert proc.returncode == 2 and "cannot write .txt files" in proc.stderr
    assert "Traceback" not in proc.stderr and "fastmetric demo" not in proc.stdout
    proc = _run(["--quick", "--no-progress", "--only", "Covariance", "--plot",
                 str(tmp_path / "embedding")])
    assert proc.returncode == 0, proc.stderr
    assert f"plot saved to {tmp_path / 'embedding'}.png" in proc.stdout
    assert (tmp_path / "embedding.png").exists()


def test_plot_paths_only_writing_can_refuse_are_checked_before_fitting(tmp_path):
    """A name too long for the file system, or a parent that is a file,
    gave a traceback (exit code 1) after every fit; now an error up front,
    and the probe leaves no file behind."""
    pytest.importorskip("matplotlib")
    from fastmetric._cli.main import plot_path

    (tmp_path / "afile").write_text("")
    for bad, message in ((str(tmp_path / ("a" * 300 + ".png")), "cannot be written"),
                         (str(tmp_path / "afile" / "p.png"), "is a file, not a folder")):
        with pytest.raises(ValueError, match=message):
            plot_path(bad)
    assert plot_path(str(tmp_path / "ok.png")) == str(tmp_path / "ok.png")
    assert not (tmp_path / "ok.png").exists()
    proc = _run(["--quick", "--no-progress", "--only", "Covariance", "--plot",
                 str(tmp_path / ("a" * 300 + ".png"))])
    assert proc.returncode == 2 and "cannot be written" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("seed", ["-1", "4294967296"])
def test_seeds_outside_numpys_range_are_refused_by_name(seed):
    """A seed of 2**32 or more crashed with a traceback in the learners that
    check their random_state (NCA), after the data were loaded."""
    proc = _run(["--quick", "--no-progress", "--only", "NCA", "--seed", seed])
    assert proc.returncode == 2 and "--seed must be an integer in [0, 2**32 - 1]" in proc.stderr
    assert "Traceback" not in proc.stderr
