"""``python -m fastmetric``: compare the metric learners on scikit-learn's digits.

Runs on the digits bundled with scikit-learn (no download), split 70/30
stratified (``random_state=0``).  Each learner of :data:`LEARNERS` that can be
imported is fitted on the training part (the unsupervised ones without the
labels), then measured on the test part:

* ``pair AUC``: ROC AUC of ``-distance`` on pairs of test points drawn with
  :func:`~fastmetric._core.sampling.sample_pairs` (same digit = positive), seed
  ``--seed``;
* ``3-NN acc``: accuracy of a 3-nearest-neighbour classifier in the learned
  space (neighbours among the training points);
* ``k-means ARI``: adjusted Rand index of k-means (10 clusters) on the
  embedded test points against the true digits;
* ``P@1`` and ``MAP@R``: retrieval in the learned metric, each test point
  querying the training points (:func:`fastmetric.metrics.evaluate`):
  precision of the nearest neighbour, and MAP@R (Musgrave, Belongie & Lim
  2020) over the R training points of the same digit.

Options: ``--quick`` (fewer iterations, for smoke tests), ``--seed``,
``--n-jobs``, ``--plot FILE.png`` (a grid of 2-D pictures, one per embedding,
the Euclidean one first; needs matplotlib: ``pip install fastmetric[plot]``),
``--only NAME[,NAME]``.
"""
import argparse
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass, field

PLOT_HINT = (
    "--plot needs matplotlib, which is not installed; install it with\n"
    "    pip install fastmetric[plot]\n"
    "(or pip install matplotlib)."
)


@dataclass
class LearnerSpec:
    """One row of the comparison table.

    Attributes
    ----------
    name : str
        Class name, looked up as an attribute of :mod:`fastmetric` at run
        time; a learner the package does not export (yet) is skipped.
    supervised : bool
        ``fit(X, y)`` with class labels (True) or ``fit(X)`` (False).
    params : dict
        Constructor arguments; only those the class accepts are passed.
    quick_params : dict
        Overrides for ``--quick``.
    labelled : float, optional
        Semi-supervised row: ``fit(X, y)`` with the labels of this fraction
        of the training points (stratified, seed ``--seed``) and ``-1`` for
        the others.  Shown as ``NAME+P%y``.
    """

    name: str
    supervised: bool = True
    params: dict = field(default_factory=dict)
    quick_params: dict = field(default_factory=dict)
    labelled: float = None

    @property
    def title(self):
        """The row's name in the table."""
        if self.labelled is None:
            return self.name
        return f"{self.name}+{self.labelled:.0%}y"


# The learners the demo compares, in table order.  To add one (NCA, LMNN,
# ...), list it here: it appears as soon as ``fastmetric`` exports it.
LEARNERS = [
    LearnerSpec("LDML_Supervised", params={"max_iter": 100},
                quick_params={"max_iter": 20, "n_pairs": 5000}),
    LearnerSpec("ClusterLDML", supervised=False, params={"n_clusters": 10},
                quick_params={"max_rounds": 2, "ldml_max_iter": 10,
                              "n_pairs_per_cluster": 500}),
    LearnerSpec("ClusterLDML", supervised=False, params={"n_clusters": 10},
                quick_params={"max_rounds": 2, "ldml_max_iter": 10,
                              "n_pairs_per_cluster": 500}, labelled=0.1),
    LearnerSpec("NCA", params={"max_iter": 100}, quick_params={"max_iter": 10}),
    LearnerSpec("LMNN", params={"max_iter": 100}, quick_params={"max_iter": 10}),
    LearnerSpec("ITML_Supervised", params={}, quick_params={"max_iter": 10}),
    LearnerSpec("LSML_Supervised", params={}, quick_params={"max_iter": 10}),
    LearnerSpec("MMC_Supervised", params={}, quick_params={"max_iter": 10}),
    LearnerSpec("SDML_Supervised", params={}, quick_params={}),
    LearnerSpec("RCA_Supervised", params={}, quick_params={}),
    LearnerSpec("SCML_Supervised", params={}, quick_params={"max_iter": 2000}),
    LearnerSpec("LFDA", params={}, quick_params={}),
    LearnerSpec("Covariance", supervised=False, params={}, quick_params={}),
    LearnerSpec("MLKR", params={"max_iter": 100}, quick_params={"max_iter": 10}),
]

BASELINE = "Euclidean"


def find_learner(spec):
    """The class of ``spec`` if importable now, else None."""
    import fastmetric

    return getattr(fastmetric, spec.name, None)


def available_learners(only=None):
    """``[(spec, cls)]`` for the listed learners that can be imported.

    Parameters
    ----------
    only : iterable of str, optional
        Keep these names only (unknown names raise ValueError).
    """
    specs = LEARNERS
    if only is not None:
        only = list(only)
        known = {s.name for s in LEARNERS}
        unknown = [n for n in only if n not in known and n != BASELINE]
        if unknown:
            raise ValueError(
                f"unknown learner(s) {unknown}; known: {[BASELINE] + sorted(known)}."
            )
        specs = [s for s in LEARNERS if s.name in only]
    out = []
    for spec in specs:
        cls = find_learner(spec)
        if cls is not None:
            out.append((spec, cls))
    return out


def partial_labels(y, fraction, seed):
    """``y`` with all but a stratified ``fraction`` of the labels set to -1."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    known, _ = train_test_split(np.arange(len(y)), train_size=fraction, stratify=y,
                                random_state=seed)
    out = np.full(len(y), -1, dtype=np.int64)
    out[known] = np.asarray(y)[known]
    return out


def make_learner(spec, cls, *, quick, seed, n_jobs):
    """Instantiate ``cls`` with the spec's parameters it accepts."""
    accepted = cls().get_params()
    params = dict(spec.params)
    if quick:
        params.update(spec.quick_params)
    params.update({"random_state": seed, "n_jobs": n_jobs})
    return cls(**{k: v for k, v in params.items() if k in accepted})


class _Progress:
    """Step messages on stderr: a tqdm bar on a terminal when tqdm is
    installed, else one printed line per step (logs, pipes)."""

    def __init__(self, total, enabled=True):
        self.bar = None
        self.enabled = enabled
        if enabled and sys.stderr.isatty():
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, desc="fastmetric demo", unit="step",
                                file=sys.stderr, leave=False)
            except ImportError:
                self.bar = None
        self.step = 0
        self.total = total

    def start(self, message):
        self.step += 1
        if not self.enabled:
            return
        text = f"[{self.step}/{self.total}] {message}"
        if self.bar is not None:
            self.bar.set_description(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def done(self):
        if self.bar is not None:
            self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def format_table(rows):
    """The result table as text; ``rows`` are dicts of method, time, auc, knn3,
    ari, p1 and map_r."""
    header = f"{'method':<18} {'fit time (s)':>12} {'pair AUC':>9} {'3-NN acc':>9} " \
             f"{'k-means ARI':>12} {'P@1':>7} {'MAP@R':>7}"
    lines = [header, "-" * len(header)]
    for r in rows:
        fit_time = "-" if r["time"] is None else f"{r['time']:.2f}"
        lines.append(f"{r['method']:<18} {fit_time:>12} {r['auc']:9.4f} {r['knn3']:9.4f} "
                     f"{r['ari']:12.4f} {r['p1']:7.4f} {r['map_r']:7.4f}")
    return "\n".join(lines)


def retrieval_columns(metric, X_train, y_train, X_test, y_test, n_jobs=None):
    """``p1`` (precision@1) and ``map_r`` (MAP@R) of the test points querying
    the training points in the metric (a fitted learner, or None: Euclidean)."""
    from fastmetric.metrics import evaluate

    s = evaluate(metric, X_test, y_test, X_train, y_train, ks=(1,), clustering=False,
                 n_jobs=n_jobs)
    return {"p1": s["precision@1"], "map_r": s["map@r"]}


def save_plot(path, embeddings, y, rows=()):
    """The demo's picture (:func:`fastmetric._cli.demo.plot_embeddings`), each
    panel titled with its method and the 3-NN accuracy of its table row."""
    from fastmetric._cli.demo import plot_embeddings

    plot_embeddings(path, embeddings, y, scores={r["method"]: r["knn3"] for r in rows})


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m fastmetric",
        description="Compare fastmetric's learners on scikit-learn's digits (70/30 split): "
                    "fit time, held-out pair ROC AUC, 3-NN accuracy, k-means ARI, precision@1, MAP@R.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="few iterations (a smoke test, a few seconds)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random_state of the learners and the test pairs (default 0)")
    parser.add_argument("--n-jobs", type=int, default=None,
                        help="threads (default: what OpenMP allows; -1 all CPUs)")
    parser.add_argument("--plot", metavar="FILE.png", default=None,
                        help="save a 2-D picture of the embeddings (needs matplotlib)")
    parser.add_argument("--only", default=None,
                        help="comma-separated learner names to run (default: all available)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress messages on stderr")
    args = parser.parse_args(argv)
    if args.n_jobs == 0:
        parser.error("--n-jobs 0 has no meaning; use a positive integer or -1.")
    if not 0 <= args.seed < 2**32:  # numpy's and scikit-learn's seeds
        parser.error(f"--seed must be an integer in [0, 2**32 - 1]; got {args.seed}.")
    return args


def plot_path(path):
    """The file ``--plot path`` writes, checked before any fitting.

    matplotlib picks the format from the suffix and adds ``.png`` when
    there is none; a missing or unwritable folder, a folder as the path or
    a format matplotlib cannot write would otherwise fail only after every
    learner has been fitted.

    Raises
    ------
    ValueError
        With the reason, for the command line to print.
    """
    from matplotlib.figure import Figure

    if not path or not path.strip():
        raise ValueError("--plot needs a file name, e.g. --plot embedding.png.")
    if os.path.isdir(path):
        raise ValueError(f"--plot {path!r} is a folder; give a file name in it, e.g. "
                         f"{os.path.join(path, 'embedding.png')!r}.")
    suffix = os.path.splitext(path)[1].lower().lstrip(".")
    if not suffix:
        path, suffix = path + ".png", "png"
    formats = Figure().canvas.get_supported_filetypes()
    if suffix not in formats:
        raise ValueError(f"--plot {path!r}: matplotlib cannot write .{suffix} files; use one "
                         f"of {', '.join('.' + f for f in sorted(formats))}.")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"--plot {path!r}: {folder!r} is a file, not a folder.")
    if not os.path.isdir(folder):
        raise ValueError(f"--plot {path!r}: the folder {folder!r} does not exist.")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"--plot {path!r}: the folder {folder!r} is not writable.")
    # What only writing tells (a name too long, a folder like /proc that
    # refuses new files): open the file now, not after every fit.
    existed = os.path.exists(path)
    try:
        with open(path, "ab"):
            pass
    except OSError as exc:
        raise ValueError(f"--plot {path!r}: the file cannot be written "
                         f"({exc.strerror or exc}).") from None
    if not existed:
        os.remove(path)
    return path


def main(argv=None):
    args = parse_args(argv)
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(PLOT_HINT, file=sys.stderr)
            return 2
        try:
            args.plot = plot_path(args.plot)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    from sklearn.exceptions import ConvergenceWarning

    from fastmetric._cli.demo import load_digits_split
    from fastmetric._core.sampling import sample_pairs
    from fastmetric._learners.scml import SCML_Supervised

    only = None if args.only is None else [s.strip() for s in args.only.split(",") if s.strip()]
    try:
        learners = available_learners(only)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    X_train, X_test, y_train, y_test = load_digits_split()
    pairs, pair_labels = sample_pairs(y_test, 2000, 2000, random_state=args.seed)
    kmeans_seeds = (0,) if args.quick else (0, 1, 2)

    print(f"fastmetric demo on digits: {X_train.shape[0]} training / {X_test.shape[0]} test "
          f"points, {X_train.shape[1]} features{' (quick)' if args.quick else ''}", flush=True)
    progress = _Progress(len(learners) + 1 + (args.plot is not None),
                         enabled=not args.no_progress)
    rows, embeddings = [], []
    with warnings.catch_warnings():
        # The demo runs fixed iteration budgets (cut further by --quick); the
        # table, not the solvers' convergence, is what it reports.
        warnings.simplefilter("ignore", ConvergenceWarning)
        # SCML_Supervised says which basis size its default chose (as
        # metric-learn does); the demo keeps every learner's defaults on purpose.
        warnings.filterwarnings("ignore", message=re.escape(SCML_Supervised.N_BASIS_WARNING),
                                category=UserWarning)
        _run_learners(args, learners, progress, rows, embeddings, X_train, X_test, y_train,
                      y_test, pairs, pair_labels, kmeans_seeds)
    print()
    print(format_table(rows))
    if args.plot is not None:
        print(f"\nplot saved to {args.plot}")
    return 0


def _run_learners(args, learners, progress, rows, embeddings, X_train, X_test, y_train,
                  y_test, pairs, pair_labels, kmeans_seeds):
    from fastmetric._cli.demo import evaluate_embedding

    try:
        progress.start(f"{BASELINE} baseline")
        res = evaluate_embedding(lambda Z: Z, X_train, y_train, X_test, y_test,
                                 pairs=pairs, pair_labels=pair_labels,
                                 kmeans_seeds=kmeans_seeds)
        res.update(retrieval_columns(None, X_train, y_train, X_test, y_test, args.n_jobs))
        rows.append({"method": BASELINE, "time": None, **res})
        embeddings.append((BASELINE, X_test))
        progress.done()
        for spec, cls in learners:
            model = make_learner(spec, cls, quick=args.quick, seed=args.seed,
                                 n_jobs=args.n_jobs)
            if spec.labelled is not None:
                how = f" (with {spec.labelled:.0%} of the labels)"
            else:
                how = "" if spec.supervised else " (without labels)"
            progress.start(f"fitting {spec.name}{how}")
            t0 = time.perf_counter()
            if spec.supervised:
                model.fit(X_train, y_train)
            elif spec.labelled is not None:
                model.fit(X_train, partial_labels(y_train, spec.labelled, args.seed))
            else:
                model.fit(X_train)
            fit_time = time.perf_counter() - t0
            res = evaluate_embedding(model.transform, X_train, y_train, X_test, y_test,
                                     pairs=pairs, pair_labels=pair_labels,
                                     kmeans_seeds=kmeans_seeds)
            res.update(retrieval_columns(model, X_train, y_train, X_test, y_test, args.n_jobs))
            rows.append({"method": spec.title, "time": fit_time, **res})
            embeddings.append((spec.title, model.transform(X_test)))
            progress.done()
        if args.plot is not None:
            progress.start(f"plotting to {args.plot}")
            save_plot(args.plot, embeddings, y_test, rows)
            progress.done()
    finally:
        progress.close()

