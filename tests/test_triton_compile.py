"""The Triton kernels compiled ahead of time for an H200 (sm_90) on the CPU (no GPU needed), with the GPU
machine's Triton 3.6.0 (``.venv-triton36``, README's install commands) and with the one installed here:

- no TF32 tensor-core instruction in any ``ieee`` variant (Triton <= 3.6 turned one reduction of the backward
  kernel into a TF32 dot; a probe of that form shows the detector sees it where it happens);
- shared memory per block within an H200's 232,448 bytes, and registers x threads within one SM's 64K, for
  every launch option ``benchmarks/bench_gpu.py`` may try and for the trainer's TF32 variant;
- registers, stack and spills printed (``pytest -s``; docs/benchmarks.md has the table).

The compiles run in subprocesses (``benchmarks/triton_aot.py``), both versions at once.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # compiles the GPU kernels for an H200 with two Tritons: about a minute (not in the fast loop)

ROOT = Path(__file__).resolve().parents[1]
VENV36 = ROOT / ".venv-triton36" / "bin" / "python"
AOT = ROOT / "benchmarks" / "triton_aot.py"
SMEM_H200 = 232448
REGS_PER_SM = 65536


def _has_triton() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


VERSIONS = {"installed": sys.executable if _has_triton() else None, "3.6.0": str(VENV36) if VENV36.exists() else None}
WHY = {"installed": "triton is not installed (pip install -e '.[dev]')",
       "3.6.0": f"{VENV36} is missing (README: python -m venv .venv-triton36 && .venv-triton36/bin/pip install "
                "triton==3.6.0 numpy)"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """{version: triton_aot.py's results}; both versions compile concurrently."""
    d = tmp_path_factory.mktemp("aot")
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "TRITON_CACHE_DIR")}
    env.update(PYTHONPATH=str(ROOT), TRITON_DEFAULT_FP_FUSION="1")
    procs = {}
    for name, py in VERSIONS.items():
        if py is None:
            continue
        procs[name] = subprocess.Popen([py, str(AOT), "--jobs", "1", "--json", str(d / f"{name}.json")], env=env,
                                       cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = {}
    for name, p in procs.items():
        stdout, stderr = p.communicate(timeout=600)
        assert p.returncode == 0, f"Triton {name}: triton_aot.py failed:\n{stderr[-3000:]}"
        out[name] = json.loads((d / f"{name}.json").read_text())
        print(f"\nTriton {out[name]['triton']} ({name}), sm_90, {out[name]['wall_s']:.0f} s:\n{stderr}")
    return out


def _results(compiled, version):
    if VERSIONS[version] is None:
        if os.environ.get("CI"):  # in CI the compile check must run, never skip
            pytest.fail(WHY[version])
        pytest.skip(WHY[version])
    return compiled[version]


def _kernels(res):
    for row in res["rows"]:
        for kind in ("forward", "backward"):
            yield row["option"], kind, row[kind]


@pytest.mark.parametrize("version", list(VERSIONS))
def test_compiles_for_h200_without_tf32_in_ieee(compiled, version):
    res = _results(compiled, version)
    if version == "3.6.0":
        assert res["triton"] == "3.6.0"
        assert res["rewrite_probe_tf32"] > 0  # the rewrite happens in this version, and the detector sees it
    for opt, kind, k in _kernels(res):
        assert "error" not in k, (opt, kind, k)
        if opt["precision"] == "ieee":
            assert k["tf32_mma"] == 0, f"TF32 instructions in the {kind} kernel of {opt} (Triton {res['triton']})"
        else:  # tf32 and tf32x3 do use the tensor cores
            assert k["tf32_mma"] > 0, (opt, kind)


@pytest.mark.parametrize("version", list(VERSIONS))
def test_every_launch_option_fits_an_h200_block(compiled, version):
    res = _results(compiled, version)
    from zoo.kernels import triton_kernels as kt

    assert len(res["rows"]) == len(kt.LAUNCH_OPTIONS) + 1  # every option, and the default with TF32
    for opt, kind, k in _kernels(res):
        assert k["shared"] <= SMEM_H200, f"{kind} kernel of {opt}: {k['shared']} bytes of shared memory per block"
        assert k["regs"] * 32 * opt["warps"] <= REGS_PER_SM, (opt, kind, k["regs"])
        if opt.get("maxnreg"):
            assert k["regs"] <= opt["maxnreg"]


def test_launch_options_are_valid():
    """What the sweep and the check set up (the environment of option_env, or the settings of option_settings)
    is what the launchers read back."""
    from zoo.kernels import triton_kernels as kt
    from zoo.settings import Settings

    assert kt.current_option(Settings()) in kt.LAUNCH_OPTIONS  # the default is among those the benchmark times
    for opt in kt.LAUNCH_OPTIONS:
        assert kt.current_option(Settings.from_env(kt.option_env(opt))) == opt
        assert kt.current_option(Settings(**kt.option_settings(opt))) == opt
