"""Compiling the small C programs that some tests run (Linux, a C compiler)."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)
INCLUDE = os.path.join(ROOT, "fastmetric", "kernels", "include")
CC = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")

needs_c_on_linux = pytest.mark.skipif(not sys.platform.startswith("linux") or CC is None,
                                      reason="needs Linux (futexes) and a C compiler")


def build_c_program(directory, source, *flags):
    """Compile ``source`` (relative to the repository) with fm_team.h's folder
    on the include path into ``directory``; skips the test when the compiler
    cannot (e.g. no OpenMP)."""
    exe = os.path.join(str(directory), os.path.splitext(os.path.basename(source))[0])
    built = subprocess.run([CC, "-O2", "-pthread", *flags, "-I", INCLUDE,
                            os.path.join(ROOT, source), "-o", exe],
                           capture_output=True, text=True)
    if built.returncode:
        pytest.skip(f"{CC} could not compile {source}: {built.stderr[-300:]}")
    return exe
