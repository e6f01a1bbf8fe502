"""Shared pytest fixtures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

# Without a GPU, the Triton kernels (zoo/kernels/triton_kernels.py) are tested in Triton's interpreter, which
# must be chosen before triton is first imported; with a GPU they are compiled and tested on it.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# -- bitwise: the tests that assert exact equality of computed floats, and what guarantees it -------------
#: why a computed result may be asserted bitwise equal (docs/method.md, "Reproducibility"):
#: "c": the C kernels' fixed summation order (the same bits on every x86-64 CPU with AVX2 + FMA, any thread
#: count, batch composition or vector width); "rerun": the same computation, same shapes, same process.
#: A library GEMM (MKL, oneDNN, cuBLAS) is never bitwise across shapes, batch or thread counts, or CPUs: such
#: results are compared with a tolerance. Reading back stored bytes is exact by construction and unmarked.
BITWISE_REASONS = ("c", "rerun")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "hub_server" in getattr(item, "fixturenames", ()):  # olah in a subprocess: seconds per test
            item.add_marker(pytest.mark.hub)
            item.add_marker(pytest.mark.slow)
        for mark in item.iter_markers("bitwise"):
            if mark.args[:1] not in ((r,) for r in BITWISE_REASONS):
                raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.bitwise{mark.args}: the reason must be one "
                                        f"of {BITWISE_REASONS}")


@pytest.fixture(autouse=True)
def _bitwise_guarantee(request):
    """A ``bitwise("c")`` test asserts what only the C kernels' own matrix products guarantee: where they do not
    train (no compiler, not x86-64 with AVX2 + FMA, ``ZOO_C_GEMM=blas``) it is skipped, saying why."""
    mark = request.node.get_closest_marker("bitwise")
    if mark is not None and mark.args[0] == "c":
        from zoo.kernels.c import c_backend_info, c_gemm

        if c_gemm() != "own":
            info = c_backend_info()
            pytest.skip(f"the C kernels' own matrix products do not train here (gemm: {c_gemm()}; "
                        f"{info.get('error') or 'see `zoo kernels`'}): results are close, not bitwise")


# -- zoo_settings: change the process's ZOO_* settings for one test ---------------------------------------
@pytest.fixture
def zoo_settings(monkeypatch):
    """``zoo_settings(cache_dir=..., claim_ttl_s=...)`` replaces the process's :mod:`zoo.settings` (read once
    from the environment, so an in-process setenv would not reach them) until the end of the test."""
    import dataclasses

    from zoo import settings

    def change(**changes):
        monkeypatch.setattr(settings, "_current", dataclasses.replace(settings.current(), **changes))
        return settings.current()

    return change


# -- zoo_log: the records of the package's logger ---------------------------------------------------------
@pytest.fixture
def zoo_log(caplog):
    """``caplog`` that also sees the package's logger (:mod:`zoo.log`), which does not propagate to the root
    logger that caplog watches: ``zoo_log.records`` / ``zoo_log.text``."""
    from zoo.log import logger

    log = logger()
    log.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        log.removeHandler(caplog.handler)


# -- hub_server: a local Hub-compatible server (olah) for the Hub tests ------------------------------------
sys.path.insert(0, str(Path(__file__).resolve().parent))
from hub_server import HubServer, find_olah_cli  # noqa: E402

HUB_STARTUP_TIMEOUT_S = 60.0
_HF_ENV_CLEARED = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE",
                   "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_OIDC_RESOURCE")


@pytest.fixture(scope="session")
def hub_server(tmp_path_factory):
    """olah serving local git repos at ``hub_server.endpoint``; commit content with ``hub_server.add_dataset``.

    Tests that use it also get (per test) ``HF_ENDPOINT`` pointing at it, a fresh temporary ``HF_HOME``, no
    token and no offline flag (see ``_hub_server_env``). Skipped if olah-cli is not installed.
    """
    cli, how = find_olah_cli()
    if cli is None:
        if os.environ.get("CI"):  # in CI the Hub tests must run, never skip silently
            pytest.fail(how)
        pytest.skip(how)
    server = HubServer(tmp_path_factory.mktemp("hub_server"), cli, startup_timeout=HUB_STARTUP_TIMEOUT_S)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _hub_server_env(request, monkeypatch, tmp_path_factory):
    """Point huggingface_hub at the test server (env read at call time by zoo.hub) for tests using hub_server."""
    if "hub_server" not in request.fixturenames:
        yield
        return
    server = request.getfixturevalue("hub_server")
    for name in _HF_ENV_CLEARED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf_home")))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY", ""), "127.0.0.1", "localhost"]))
    monkeypatch.setenv("NO_PROXY", no_proxy)
    monkeypatch.setenv("no_proxy", no_proxy)
    yield


# -- smoke_zoo: a real release built once per session with the `smoke` preset ------------------------------
def build_release(out: Path, preset: str = "smoke", **overrides) -> Path:
    """Train, label and package a preset into ``out`` through the public library functions."""
    from zoo.build import run_build
    from zoo.figures import write_phase_picture
    from zoo.plan import plan_build

    run_build(plan_build(preset, **overrides), out, picture=write_phase_picture)
    return out


@pytest.fixture(scope="session")
def smoke_zoo(tmp_path_factory) -> Path:
    """Path of a packaged `smoke` zoo (8 networks, 30 epochs). Treat it as read-only; copy it to modify."""
    return build_release(tmp_path_factory.mktemp("smoke") / "zoo")


@pytest.fixture
def one_thread():
    """Small tensors: one intra-op thread is faster, and immune to a busy machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
