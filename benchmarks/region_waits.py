"""Short parallel regions beside busy processes: OpenMP against a team that
does not wait for a helper that is off its core.

Compiles ``region_waits.c`` (next to this script; ``$CC`` or ``cc`` with
OpenMP) and times the same run of short regions (160 regions of 16 chunks of
about 40 us each by default: the size of NCA's regions on breast cancer) on
a quiet machine, beside one busy process and beside two (started and
stopped here), with

* OpenMP on 1 thread, one per CPU, and one per CPU plus one or two per busy
  process: every region ends at a barrier, which waits for a thread the
  scheduler has taken off its core;
* the team on the same counts: the caller computes a chunk that a helper
  claimed and has not finished instead of waiting for it (see the C file).

Prints, per setting and load, the median (min-max) over the rounds and the
median against OpenMP with one thread per CPU on the quiet machine.  The
rounds interleave the settings, and each setting runs in its own process
(a warm-up run, then a timed one).  Linux only (futexes).

Usage::

    python benchmarks/region_waits.py                 # 7 rounds
    python benchmarks/region_waits.py --rounds 3 --iters 10000
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from _report import positive_int

HERE = os.path.dirname(os.path.abspath(__file__))
SETTLE = 0.3   # seconds for busy processes to be scheduled
MAX_CHUNKS = 4096  # MAX_CHUNKS of region_waits.c


def build(workdir):
    """Compile region_waits.c; the path of the program."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        sys.exit("region_waits.py needs a C compiler (set CC)")
    exe = os.path.join(workdir, "region_waits")
    include = os.path.join(HERE, os.pardir, "fastmetric", "kernels", "include")
    cmd = [cc, "-O2", "-fopenmp", "-pthread", "-I", include, os.path.join(HERE, "region_waits.c"),
           "-o", exe]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"compiling region_waits.c failed:\n{' '.join(cmd)}\n{proc.stderr}")
    return exe


def time_once(exe, mode, threads, args):
    """Milliseconds of one timed run (after the program's own warm-up)."""
    env = dict(os.environ)
    # As fastmetric does at import unless the user chose otherwise.
    if "GOMP_SPINCOUNT" not in env and "OMP_WAIT_POLICY" not in env:
        env["GOMP_SPINCOUNT"] = "3000"
    out = subprocess.run([exe, mode, str(threads), str(args.regions), str(args.chunks),
                          str(args.iters), "1"], capture_output=True, text=True, env=env)
    lines = out.stdout.split("\n")
    if out.returncode or "check ok" not in out.stdout:
        sys.exit(f"region_waits {mode} {threads} failed:\n{out.stdout}{out.stderr}")
    return float(lines[0])


def settings(n_cpus, busy):
    """(name, mode, threads) compared at this load."""
    counts = sorted({1, n_cpus, n_cpus + busy, n_cpus + 2 * busy})
    out = [(f"OpenMP, {t} thread{'s' * (t > 1)}", "omp", t) for t in counts]
    out += [(f"team, {t} threads", "team", t) for t in counts if t > 1]
    out += [(f"fm_team, {t} threads", "fm_team", t) for t in counts if t > 1]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=positive_int, default=7)
    parser.add_argument("--regions", type=positive_int, default=160)
    parser.add_argument("--chunks", type=positive_int, default=16)
    parser.add_argument("--iters", type=positive_int, default=20000,
                        help="arithmetic steps per chunk (20000: about 40 us)")
    args = parser.parse_args(argv)
    if args.chunks > MAX_CHUNKS:
        parser.error(f"--chunks must be at most {MAX_CHUNKS} (region_waits.c's limit), "
                     f"got {args.chunks}")
    if not sys.platform.startswith("linux"):
        sys.exit("region_waits.py runs on Linux only")
    n_cpus = len(os.sched_getaffinity(0))
    times = {}
    with tempfile.TemporaryDirectory() as workdir:
        exe = build(workdir)
        for busy in (0, 1, 2):
            procs = [subprocess.Popen([sys.executable, "-c", "while 1: pass"])
                     for _ in range(busy)]
            try:
                time.sleep(SETTLE)
                cases = settings(n_cpus, busy)
                for r in range(args.rounds):
                    k = r % len(cases)
                    for name, mode, threads in cases[k:] + cases[:k]:
                        times.setdefault((name, busy), []).append(
                            time_once(exe, mode, threads, args))
                    print(f"load {busy}, round {r + 1}: load average "
                          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}", file=sys.stderr)
            finally:
                for p in procs:
                    p.kill()
                for p in procs:
                    p.wait()

    base = statistics.median(times[(f"OpenMP, {n_cpus} thread{'s' * (n_cpus > 1)}", 0)])
    print(f"{n_cpus} CPUs; {args.regions} regions of {args.chunks} chunks of {args.iters} "
          f"steps; median (min-max) of {args.rounds} rounds, and against OpenMP on "
          f"{n_cpus} threads on the quiet machine ({base:.1f} ms)\n")
    print("| setting | quiet | 1 busy | 2 busy |")
    print("|---|---|---|---|")
    names = list(dict.fromkeys(name for name, _ in times))
    for name in names:
        cells = []
        for busy in (0, 1, 2):
            ts = times.get((name, busy))
            if ts is None:
                cells.append("-")
                continue
            med = statistics.median(ts)
            cells.append(f"{med:.1f} ms ({min(ts):.1f}-{max(ts):.1f}), {med / base:.2f}x")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
