"""Pieces shared by the comparison scripts in this folder.

Importing this module makes ``import fastmetric`` work from a checkout: an
installed fastmetric is used if there is one, else the in-place build of
this repository (``python setup.py build_ext --inplace``).
"""
import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if importlib.util.find_spec("fastmetric") is None:
    sys.path.insert(0, ROOT)

# Set on the shared machines; they slow numpy's OpenBLAS (unset them in the
# benchmark command only).
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def fmt_time(t):
    """A duration in s, ms or us; '-' for None."""
    if t is None:
        return "-"
    if t >= 1.0:
        return f"{t:.2f} s"
    if t >= 1e-3:
        return f"{t * 1e3:.1f} ms"
    return f"{t * 1e6:.0f} us"


def print_rows(head, body, markdown):
    """Print a table: markdown, or plain columns padded to their widths."""
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---" for _ in head) + "|")
        for line in body:
            print("| " + " | ".join(line) + " |")
        return
    widths = [max(len(h), *(len(line[i]) for line in body)) for i, h in enumerate(head)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    print("  ".join("-" * w for w in widths))
    for line in body:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)))
