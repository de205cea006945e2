"""The team of benchmarks/region_waits.c stores what a serial run stores.

Its caller computes again the chunks a helper has claimed and not finished,
so a chunk may be computed twice and a helper may finish after its region;
every region's results must still be those of the serial computation, with
any thread count and with more threads than cores.
"""
import subprocess

import pytest

from ._c_programs import build_c_program, needs_c_on_linux

pytestmark = needs_c_on_linux


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    return build_c_program(tmp_path_factory.mktemp("region_waits"), "benchmarks/region_waits.c",
                           "-fopenmp")


@pytest.mark.parametrize("mode, threads", [("omp", 1), ("omp", 3), ("team", 1), ("team", 2),
                                           ("team", 5), ("fm_team", 1), ("fm_team", 2),
                                           ("fm_team", 5)])
def test_every_region_stores_the_serial_results(program, mode, threads):
    out = subprocess.run([program, mode, str(threads), "300", "7", "200", "2"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1] == "check ok"
    assert len(lines) == 4 and all(float(t) > 0 for t in lines[:2])


def test_bad_arguments_are_refused(program):
    for args in (["threads", "2", "10", "4", "100", "1"], ["team", "0", "10", "4", "100", "1"],
                 ["team", "2", "10"]):
        out = subprocess.run([program, *args], capture_output=True, text=True, timeout=60)
        assert out.returncode == 2
