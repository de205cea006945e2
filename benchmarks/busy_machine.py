#!/usr/bin/env python
"""Time fastmetric's fits and distance kernels on a busy machine.

Other processes often hold some of the cores (laptops, notebooks, CI
runners, shared servers).  This script times a fixed set of fits and kernel
calls under three loads it makes itself:

* ``quiet``: nothing started;
* ``1 busy``: one busy-looping Python process (``while 1: pass``);
* ``2 busy``: two of them;

each for the default ``n_jobs`` (None) and for ``n_jobs=1``, and prints the
median wall time, the spread (min-max) of the repeats, and the slowdowns
against the quiet default.  The default against ``n_jobs=1`` under one
busy process is compared repeat by repeat: the two calls of a repeat run
back to back, under the same load, and the column gives the median (and
the range) of their ratios; under that load each round times the pair
``PAIRS_ONE_BUSY`` times, so that the median of the ratios is measured
closely enough to tell a slowdown of a percent or two from noise.  The
rounds are interleaved (every repeat runs quiet, then 1 busy, then 2
busy), so a change in the load that other users put on the machine spreads
over all three columns instead of falsifying one; the load average is
printed before each round.  Each case runs once untimed before its timed
calls in a round, and the two settings take turns to go first.

The goals (issue 18), on medians: with one busy process on a 2-core
machine, every default fit at most 1.6x slower than quiet and never slower
than its own ``n_jobs=1`` fit under the same load; with two busy processes,
at most 2.5x slower than quiet.  "Not slower than ``n_jobs=1``" holds
when the median of the paired ratios is at most 1, or when 1 lies inside
the distribution-free 95 % confidence interval of that median (order
statistics of the ratios): the repeats do not show the default slower.
Where the default runs the ``n_jobs=1`` computation itself (ITML's
sequential projections), the true ratio is 1 and its measured median falls
above 1 about half the time.

Run as::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/busy_machine.py --markdown

``--quick`` times the breast cancer fits and the kernels only, with 3
repeats (a smoke test); ``--repeats`` sets the number of timed repeats.
The fits are NCA, LMNN, LDML_Supervised, ITML_Supervised and ClusterLDML
(the issue's set); ``--all-learners`` adds every other learner's default
fit (MLKR, MMC_Supervised, SDML_Supervised, LSML_Supervised,
SCML_Supervised, RCA_Supervised, LFDA, Covariance; LFDA and Covariance have
no ``n_jobs``: their ``n_jobs=1`` column is the fit with BLAS held to one
thread), and ``--only TEXT ...`` keeps the calls whose name contains one
of the texts.
On a machine that other users load, ``--quiet-realtime`` times the quiet
rounds at real-time priority (Linux, needs the privilege), so that the
quiet column is what an idle machine gives; the busy rounds then still
carry the other users' load on top of the script's busy processes, and the
load average printed per round says how much.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from _report import (  # also puts fastmetric on sys.path
    fmt_time,
    load_average,
    print_closing,
    print_rows,
    time_fit,
    warn_openblas_vars,
)

LOADS = (0, 1, 2)                 # busy processes per round
LOAD_NAMES = {0: "quiet", 1: "1 busy", 2: "2 busy"}
GOAL_ONE_BUSY = 1.6               # max slowdown of a default fit, one busy process
GOAL_TWO_BUSY = 2.5               # ... two busy processes
SETTLE = 0.3                      # seconds for the busy processes to be scheduled
PAIRS_ONE_BUSY = 3                # (default, n_jobs=1) pairs per round under 1 busy


def _datasets():
    from sklearn.datasets import load_breast_cancer, load_digits
    from sklearn.preprocessing import StandardScaler

    out = {}
    for name, loader in (("breast cancer", load_breast_cancer), ("digits", load_digits)):
        X, y = loader(return_X_y=True)
        out[name] = (np.ascontiguousarray(StandardScaler().fit_transform(X)), y)
    return out


# The learners that the issue names are always timed; ``--all-learners``
# adds the others, so that every learner's default is seen under load.
OTHER_LEARNERS = ("MLKR", "MMC_Supervised", "SDML_Supervised", "LSML_Supervised",
                  "SCML_Supervised", "RCA_Supervised", "LFDA", "Covariance")


def cases(quick, all_learners=False):
    """The timed calls: a list of (name, fn(n_jobs) -> seconds)."""
    import fastmetric
    from fastmetric.pairwise import mahalanobis_distances, paired_mahalanobis_distances

    data = _datasets()

    def fit(make, dataset):
        X, y = data[dataset]
        n_classes = len(np.unique(y))
        # ClusterLDML learns without labels (given y it would be its
        # semi-supervised fit), one group per class.
        if make is None:
            return lambda n_jobs: time_fit(fastmetric.ClusterLDML(
                n_clusters=n_classes, random_state=0, n_jobs=n_jobs), X)
        if isinstance(make, type):
            return lambda n_jobs: _time_default_fit(make, n_jobs, X, y)
        return lambda n_jobs: time_fit(make(n_jobs), X, y)

    learners = [
        ("NCA", lambda j: fastmetric.NCA(random_state=0, n_jobs=j)),
        ("LMNN", lambda j: fastmetric.LMNN(random_state=0, n_jobs=j)),
        ("LDML_Supervised", lambda j: fastmetric.LDML_Supervised(random_state=0, n_jobs=j)),
        ("ITML_Supervised", lambda j: fastmetric.ITML_Supervised(random_state=0, n_jobs=j)),
        ("ClusterLDML", None),
    ]
    if all_learners:
        for other in OTHER_LEARNERS:
            learners.append((other, getattr(fastmetric, other)))
    out = []
    for dataset in ("breast cancer",) if quick else ("breast cancer", "digits"):
        for name, make in learners:
            out.append((f"{name}, {dataset}", fit(make, dataset)))

    rng = np.random.default_rng(0)
    n, m, d = (2_000, 500, 32) if quick else (10_000, 2_000, 64)
    n_pairs = 100_000 if quick else 1_000_000
    X = rng.standard_normal((n, d))
    Y = rng.standard_normal((m, d))
    L = rng.standard_normal((d, d)) / np.sqrt(d)
    pairs = rng.integers(0, n, size=(n_pairs, 2))

    def timed(fn):
        def run(n_jobs):
            t0 = time.perf_counter()
            fn(n_jobs)
            return time.perf_counter() - t0
        return run

    out.append((f"mahalanobis_distances {n:,} x {m:,}, d={d}",
                timed(lambda j: mahalanobis_distances(X, Y, components=L, n_jobs=j))))
    out.append((f"paired_mahalanobis_distances {n_pairs:,} pairs, d={d}",
                timed(lambda j: paired_mahalanobis_distances(X, pairs, components=L, n_jobs=j))))
    return out


def _time_default_fit(cls, n_jobs, X, y):
    """Seconds of a fit of ``cls`` with its defaults (``random_state=0``
    where it has one).  A learner without ``n_jobs`` (LFDA, Covariance: their
    work is numpy's and scipy's) is given one BLAS thread for its
    ``n_jobs=1`` fit and BLAS's own threads for the default."""
    from threadpoolctl import threadpool_limits

    params = cls().get_params()
    kwargs = {"random_state": 0} if "random_state" in params else {}
    if "n_jobs" in params:
        return time_fit(cls(n_jobs=n_jobs, **kwargs), X, y)
    if n_jobs is None:
        return time_fit(cls(**kwargs), X, y)
    with threadpool_limits(limits=1, user_api="blas"):
        return time_fit(cls(**kwargs), X, y)


def start_busy(k):
    """Start ``k`` busy-looping interpreters; wait until they are running.

    The wait also gives fastmetric's estimate of the others' load (which
    sets the default thread count) a whole window of the new load, as a
    load that lasts gives it: the window open when the load changed is
    closed after ``SETTLE`` seconds, and the next one, of the new load
    alone, ``SETTLE`` seconds later.
    """
    from fastmetric._core.threads import effective_n_threads

    procs = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(k)]
    for _ in range(2):
        time.sleep(SETTLE)
        effective_n_threads(None)
    return procs


def set_realtime(on):
    """Every thread of this process at real-time priority (SCHED_RR 1), or
    back to the normal policy.

    At real-time priority the threads run before every normal process, so a
    round timed this way sees the machine as if it were idle, whatever other
    users run (Linux; needs the privilege to raise the priority).
    """
    policy, priority = (os.SCHED_RR, 1) if on else (os.SCHED_OTHER, 0)
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setscheduler(int(tid), policy, os.sched_param(priority))
        except ProcessLookupError:  # the thread ended meanwhile
            pass


def stop_busy(procs):
    """Stop the processes :func:`start_busy` started (by their own handles)."""
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


class ThreadRecorder:
    """The most threads that fastmetric's default (``n_jobs=None``) chose
    during a call: OpenMP's (``most``), through ``threads_for_load``, which
    every default OpenMP thread count goes through (a kernel call may then
    cap it further by its work), and fm_team.h's team's (``most_team``,
    0 when no pass ran on it), from the problems whose passes run on the
    team (the threads of each evaluation that did), LMNN's impostor search
    and the paired distances' chunks."""

    def __init__(self):
        from fastmetric._core import distances, threads
        from fastmetric._core.objectives import lmnn as lmnn_objective
        from fastmetric._core.objectives.pair_loss import PairLossProblem
        from fastmetric._core.objectives.softmax_neighbors import SoftmaxNeighborsProblem

        self.most = 0
        self.most_team = 0
        original = threads.threads_for_load

        def recorded(*args, **kwargs):
            n = original(*args, **kwargs)
            self.most = max(self.most, n)
            return n

        threads.threads_for_load = recorded
        for problem in (PairLossProblem, SoftmaxNeighborsProblem):
            self._watch_team(problem, "loss_grad")
        # Kernels given the team's threads as an argument (a small call
        # keeps to OpenMP's threads): _paired_transformed(XL, a, b, out,
        # root, chunk, n_threads, team_threads) and _search(Z, class_end,
        # rho, budget, n_threads, team_threads).
        self._watch_kernel(distances, "_paired_transformed", 7)
        self._watch_kernel(lmnn_objective, "_search", 5)

    def _watch_kernel(self, module, name, position):
        original = getattr(module, name)

        def watched(*args):
            if len(args) > position and args[position] > 1:
                self.most_team = max(self.most_team, args[position])
            return original(*args)

        setattr(module, name, watched)

    def _watch_team(self, problem, method):
        original = getattr(problem, method)

        def watched(obj, *args, **kwargs):
            n = kwargs.get("team_threads")
            n = obj.team_threads if n is None else n
            if n > 1:
                self.most_team = max(self.most_team, n)
            return original(obj, *args, **kwargs)

        setattr(problem, method, watched)

    def reset(self):
        self.most = 0
        self.most_team = 0

    def chosen(self):
        """(OpenMP's most threads, the team's most threads) of the call."""
        return self.most, self.most_team


def run(case_list, repeats, settings, quiet_realtime):
    """Time every case under every load and setting, rounds interleaved.

    Returns ``{(case, load, n_jobs): [seconds, ...]}``,
    ``{load: [default thread count at the end of each round]}`` and
    ``{(case, load): {most threads the default chose in a repeat}}``.
    """
    from fastmetric._core.threads import effective_n_threads

    recorder = ThreadRecorder()
    times, threads, used = {}, {}, {}
    for r in range(repeats + 1):      # round 0 is the warm-up, not recorded
        for load in LOADS:
            procs = start_busy(load)
            realtime = quiet_realtime and load == 0
            try:
                if realtime:
                    set_realtime(True)
                print(f"round {r}{' (warm-up)' if r == 0 else ''}, {LOAD_NAMES[load]}"
                      f"{' (real-time priority)' if realtime else ''}: "
                      f"load average {load_average()}", file=sys.stderr, flush=True)
                # Every other round times n_jobs=1 first: the call that
                # follows another case finds colder caches.
                order = settings if r % 2 else settings[::-1]
                for name, fn in case_list:
                    # An untimed call first: memory that a call touches for
                    # the first time since a while costs more than threads
                    # change (up to 4x for the 160 MB of the distance
                    # matrix on this VM, whose free memory goes back to the
                    # host), and would land on whichever setting came first.
                    fn(order[0])
                    for pair in range(PAIRS_ONE_BUSY if load == 1 else 1):
                        for n_jobs in (order if pair % 2 == 0 else order[::-1]):
                            recorder.reset()
                            t = fn(n_jobs)
                            if r:
                                times.setdefault((name, load, n_jobs), []).append(t)
                                if n_jobs is None:
                                    used.setdefault((name, load), set()).add(recorder.chosen())
                threads.setdefault(load, []).append(effective_n_threads(None))
            finally:
                if realtime:
                    set_realtime(False)
                stop_busy(procs)
    return times, threads, used


def spread(ts):
    """Median and the min-max range as text."""
    return f"{fmt_time(statistics.median(ts))} ({fmt_time(min(ts))}-{fmt_time(max(ts))})"


def median_lower_bound(values, level=0.95):
    """Lower end of the distribution-free confidence interval of the median:
    the k-th smallest value, k the largest with P(Binomial(n, 1/2) < k) <=
    (1 - level) / 2 (the median is below it with at most that chance); the
    smallest value when n is too small for any k."""
    from scipy.stats import binom

    ordered = sorted(values)
    n = len(ordered)
    k = 1
    while k < n and binom.cdf(k, n, 0.5) <= (1 - level) / 2:
        k += 1
    return ordered[k - 1]


def threads_text(counts):
    """'2', '1/2', or '1 (team 3)': the (OpenMP, team) thread counts chosen."""
    return "/".join(f"{n} (team {team})" if team else str(n) for n, team in sorted(counts))


def report(case_list, times, used, markdown):
    head = ["call", "quiet, default", "quiet, n_jobs=1", "1 busy, default", "1 busy, n_jobs=1",
            "2 busy, default", "2 busy, n_jobs=1", "default's threads (quiet, 1, 2 busy)",
            "1 busy / quiet", "1 busy: default / n_jobs=1", "2 busy / quiet", "goals"]
    body = []
    n_met = 0
    for name, _ in case_list:
        med = {(load, j): statistics.median(times[(name, load, j)])
               for load in LOADS for j in (None, 1)}
        quiet = med[(0, None)]
        s1 = med[(1, None)] / quiet
        # Within a round the two settings run back to back under the same
        # load: the ratio of each round's pair, then their median, leaves
        # out the load that changes from round to round.
        paired = [t / t1 for t, t1 in zip(times[(name, 1, None)], times[(name, 1, 1)])]
        vs1 = statistics.median(paired)
        s2 = med[(2, None)] / quiet
        same_fit = used[(name, 1)] == {(1, 0)}
        vs1_low = median_lower_bound(paired)
        not_slower = vs1 <= 1.0 or vs1_low <= 1.0
        met = s1 <= GOAL_ONE_BUSY and not_slower and s2 <= GOAL_TWO_BUSY
        n_met += met
        missed = [what for what, ok in (("1 busy", s1 <= GOAL_ONE_BUSY),
                                        ("vs n_jobs=1", not_slower),
                                        ("2 busy", s2 <= GOAL_TWO_BUSY)) if not ok]
        body.append([name] + [spread(times[(name, load, j)]) for load in LOADS for j in (None, 1)]
                    + [", ".join(threads_text(used[(name, load)]) for load in LOADS),
                       f"{s1:.2f}x", f"{vs1:.3f} (CI from {vs1_low:.3f}; "
                       f"{min(paired):.2f}-{max(paired):.2f})"
                       + (" (same fit)" if same_fit else ""),
                       f"{s2:.2f}x", "MET" if met else "missed: " + ", ".join(missed)])
    print_rows(head, body, markdown)
    print(f"\ngoals met by {n_met} of {len(case_list)} calls (1 busy / quiet <= {GOAL_ONE_BUSY}, "
          f"default / n_jobs=1 <= 1 under 1 busy, 2 busy / quiet <= {GOAL_TWO_BUSY}; medians; "
          f"default / n_jobs=1 is the median of the {PAIRS_ONE_BUSY} x repeats ratios, the two "
          "calls of a pair timed back to back, the lower end of the median's 95 % confidence "
          "interval (order statistics) and the range; not slower: median <= 1 or that interval "
          "reaches 1).  'same fit': under 1 busy the default chose 1 thread and no team in "
          "every repeat, i.e. ran the n_jobs=1 fit.")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="breast cancer fits and small kernel calls only, 3 repeats")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repeats per call and load (default 5; --quick 3)")
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    parser.add_argument("--all-learners", action="store_true",
                        help="also time every other learner's default fit (MLKR on the class "
                             "numbers as targets)")
    parser.add_argument("--only", nargs="+", metavar="TEXT", default=None,
                        help="time only the calls whose name contains one of these texts "
                             "(e.g. --only MMC 'SCML_Supervised, digits')")
    parser.add_argument("--quiet-realtime", action="store_true",
                        help="time the quiet rounds at real-time priority (Linux, privileged): "
                             "on a shared machine, the quiet column then leaves out other "
                             "users' load")
    args = parser.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 5)
    if repeats < 1:
        parser.error(f"--repeats must be a positive integer, got {repeats}")

    set_vars = warn_openblas_vars("busy_machine.py", "slows numpy's OpenBLAS")
    from fastmetric._core.threads import effective_n_threads

    waits = ", ".join(f"{v}={os.environ.get(v, '<unset>')}"
                      for v in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT"))
    print(f"default n_jobs -> {effective_n_threads(None)} thread(s) now; {waits}")
    print(f"{os.cpu_count()} CPUs; load average before (1, 5, 15 min): {load_average()}")
    case_list = cases(args.quick, args.all_learners)
    if args.only:
        case_list = [(name, fn) for name, fn in case_list
                     if any(text in name for text in args.only)]
        if not case_list:
            parser.error(f"--only {args.only} matches no call")
    times, threads, used = run(case_list, repeats, (None, 1), args.quiet_realtime)
    print(f"\nmedian (min-max) of {repeats} repeats after a warm-up round "
          f"({PAIRS_ONE_BUSY * repeats} under 1 busy); "
          "default = n_jobs=None; its thread count at the end of each round: "
          + ", ".join(f"{LOAD_NAMES[load]} {threads[load]}" for load in LOADS)
          + ("; quiet rounds at real-time priority" if args.quiet_realtime else "") + "\n")
    report(case_list, times, used, args.markdown)
    print_closing(set_vars, "the")


if __name__ == "__main__":
    main()
