"""The bitwise tests again, in a subprocess under other BLAS and vector-unit dispatches, so that a machine of
one kind sees what another kind would.

Which kernel torch's CPU matmul runs (MKL, oneDNN or its own), and so the order of each float sum, depends on
the shapes, the batch and thread counts and the CPU. The tests marked ``@pytest.mark.bitwise`` (conftest.py)
claim exact equality only where a mechanism guarantees it: the C kernels' fixed summation order, or a rerun
of the same computation in the same process. Here they run again where the libraries take other paths:

- MKL's "compatible" code path (``MKL_CBWR=COMPATIBLE``) with two threads: MKL's choice of kernel then depends on
  the batch count, as on Intel CPUs (on AMD CPUs MKL otherwise takes the same kernel for every batch count, which
  hid a claim that failed on Intel);
- torch's own kernels, oneDNN and MKL capped at AVX2 (``ATEN_CPU_CAPABILITY=avx2``), one thread: a CPU without
  AVX-512 (Intel before Skylake-SP, AMD before Zen 4). A CPU without AVX2 + FMA is out of scope: the C kernels'
  own products need them, and the ``bitwise("c")`` tests skip there.

A bitwise claim that only held by luck of the library's choice fails here on any machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

DISPATCHES = {
    "mkl-compatible-2-threads": {"MKL_CBWR": "COMPATIBLE", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"},
    "avx2-1-thread": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                           "MKL_ENABLE_INSTRUCTIONS": "AVX2", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
}
#: the slow bitwise tests (whole builds) run only under the first dispatch: they use the same kernels as the fast ones
FULL = "mkl-compatible-2-threads"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(DISPATCHES))
def test_bitwise_claims_hold_under_another_dispatch(name, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER")}
    env.update(DISPATCHES[name])
    marks = "bitwise" if name == FULL else "bitwise and not slow"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", marks, "--basetemp", str(tmp_path),
           "-W", "ignore::pytest.PytestUnknownMarkWarning", "tests"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    tail = "\n".join((res.stdout + res.stderr).splitlines()[-40:])
    assert res.returncode == 0, f"bitwise tests under {name} ({DISPATCHES[name]}):\n{tail}"
    assert " passed" in res.stdout, tail
