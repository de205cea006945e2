"""fm_team.h (the team whose caller does not wait for a late helper):
every job's outputs equal a serial computation, with helpers delayed at
random, outputs reused from job to job, inputs scribbled over and freed
once the team says no helper can read them, more threads than cores, and
in a child process forked after use.  The C stress test is tests/c/test_team.c.
"""
import subprocess

import pytest

from .._c_programs import build_c_program, needs_c_on_linux

pytestmark = needs_c_on_linux


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    return build_c_program(tmp_path_factory.mktemp("team"), "tests/c/test_team.c")


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
@pytest.mark.parametrize("fork", [False, True])
def test_team_jobs_equal_serial_results(program, threads, fork):
    args = [program, str(threads), "500", "16"] + (["fork"] if fork else [])
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == (2 if fork else 1)
    assert all(line.startswith("ok 500 ") for line in lines)
