"""The Triton kernels (zoo/kernels/triton_kernels.py): on a GPU compiled, without one in Triton's interpreter (conftest
sets TRITON_INTERPRET=1 before triton is imported). Same checks either way: equivalence with the torch
formulas (noise included), fidelity to autograd, batch invariance, and the fallback when they cannot run."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from zoo import kernels, rng
from zoo.config import NetConfig
from zoo.kernels import triton as gate
from zoo.kernels.state import STATE
from zoo.train import train_networks

ROOT = Path(__file__).resolve().parents[1]
DEV = "cuda" if torch.cuda.is_available() else "cpu"

try:
    import triton

    _why = None
    if DEV == "cpu" and tuple(int(x) for x in triton.__version__.split(".")[:2]) < (3, 7):
        _why = f"Triton {triton.__version__}'s interpreter cannot run loops of a runtime length (3.7 or newer can)"
except ImportError as exc:
    _why = f"triton is not installed ({exc}; pip install -e '.[dev]')"
    if os.environ.get("CI"):  # in CI the kernels must be tested, never skipped silently
        raise
needs_triton = pytest.mark.skipif(_why is not None, reason=_why or "")


def _problem(N=100, K=3, T=20, B=128, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale):
        return (torch.randn(*shape, generator=g) * scale).to(DEV)

    return dict(W_rec=rnd(K, N, N, scale=0.15), drive_cue=rnd(K, B, N, scale=0.5), bias=rnd(K, N, scale=0.1),
                W_out=rnd(K, 2, N, scale=0.2), b_out=rnd(K, 2, scale=0.1), DL=rnd(K, T, B, 2, scale=1e-2),
                keys=rng.keys_tensor([0, 5, 123456789][:K], DEV), shape=(K, T, B, N))


def _passes(backend, p, sigma, init_std, epoch=7, C=6):
    K, T, B, N = p["shape"]
    R, Z, L = (torch.empty(s, device=DEV) for s in ((K, T + 1, B, N), (K, T, B, N), (K, T, B, 2)))
    u_cue = torch.nn.functional.one_hot(torch.arange(B, device=DEV) % 2, 2).float()
    with kernels.use_backend(backend):
        assert kernels.backend_for(R) == backend
        kernels.forward_pass(p["W_rec"], p["drive_cue"], p["bias"], C, p["W_out"], p["b_out"], p["keys"], epoch,
                             sigma, 0.5, init_std, R, Z, L)
        Zc = Z.clone()
        G = kernels.backward_pass(p["W_rec"], p["W_out"], u_cue, C, 0.5, R, Z, p["DL"])
    return R, Zc, L, G


@pytest.mark.slow  # Triton's interpreter: seconds to a minute per test on a CPU
@needs_triton
def test_check_passes_and_auto_selects_triton():
    assert kernels.triton_check(DEV) is None
    assert kernels.triton_usable(DEV)
    with kernels.use_backend("triton"):
        assert kernels.backend_for(torch.empty(1, device=DEV)) == "triton"
        assert kernels.backend_for(torch.empty(1, device=DEV, dtype=torch.float64)) == "torch"  # float32 only
    if DEV == "cuda":
        with kernels.use_backend("auto"):
            assert kernels.backend_for(torch.empty(1, device=DEV)) == "triton"
    else:  # on the CPU, auto never picks the interpreter
        with kernels.use_backend("auto"):
            assert kernels.backend_for(torch.empty(1, device=DEV)) != "triton"


@needs_triton
def test_tiny_passes_match_torch_formulas():
    """The fast loop's check of the kernels (one network, 8 steps, 32 trials, odd N), in seconds."""
    p = _problem(N=37, K=1, T=8, B=32)
    R0, Z0, L0, G0 = _passes("torch", p, sigma=1.0, init_std=1.0)
    R1, Z1, L1, G1 = _passes("triton", p, sigma=1.0, init_std=1.0)
    for a, b in ((R0, R1), (Z0, Z1), (L0, L1)):
        assert (a - b).abs().max().item() < 5e-6
    for n in G0:
        assert ((G0[n] - G1[n]).abs().max() / G0[n].abs().max()).item() < 5e-6, n


@pytest.mark.slow  # Triton's interpreter: seconds to a minute per test on a CPU
@needs_triton
@pytest.mark.parametrize("grads", ["gemm", "kernel"])  # weight gradients by torch GEMMs / in the kernel
@pytest.mark.parametrize("N", [100, 37])  # even N: one hash per pair of units; odd N: pairs straddle trials
def test_passes_match_torch_formulas_noise_dominated(N, grads, zoo_settings):
    """sigma = 1 and init_std = 1, so the noise stream itself is compared, not only its 1e-3 trace."""
    zoo_settings(triton_grads=grads)
    p = _problem(N)
    R0, Z0, L0, G0 = _passes("torch", p, sigma=1.0, init_std=1.0)
    R1, Z1, L1, G1 = _passes("triton", p, sigma=1.0, init_std=1.0)
    K, T, B, _ = p["shape"]
    r0 = torch.tanh(rng.normal(p["keys"].cpu(), 7, 0, (B, N)))  # the initial state is tanh(rng.normal(slot 0))
    assert (R1[:, 0].cpu() - r0).abs().max().item() < 1e-6
    for a, b in ((R0, R1), (Z0, Z1), (L0, L1)):
        assert (a - b).abs().max().item() < 5e-6
    for n in G0:
        assert ((G0[n] - G1[n]).abs().max() / G0[n].abs().max()).item() < 5e-6, n


@pytest.mark.slow  # Triton's interpreter: seconds to a minute per test on a CPU
@needs_triton
@pytest.mark.parametrize("grads", ["gemm", "kernel"])
def test_training_matches_autograd_spec(grads, zoo_settings):
    """The fidelity test of the trainer (tests/test_train.py), with the Triton kernels."""
    from test_train import spec_train

    zoo_settings(triton_grads=grads)
    cfg = NetConfig("post", seed=5, lr=0.05, delay_ms=20, post_ms=30, epochs=3)
    out = spec_train(5, 0.05, 4, 3, noise=True, random_init=True, post=6)
    ref_loss, ref_w = (out[0]["loss"] if isinstance(out[0], dict) else out[0]), out[1]  # curves or the losses
    with kernels.use_backend("triton"):
        res = train_networks([cfg], device=DEV)
    assert res.extra["kernels"] == "triton"
    np.testing.assert_allclose(res.curves["loss"][0], ref_loss, rtol=1e-5)
    for n, w in ref_w.items():
        assert (res.weights[n][0].double() - w).abs().max().item() < 1e-5, n


@pytest.mark.slow  # Triton's interpreter: seconds to a minute per test on a CPU
@pytest.mark.bitwise("rerun")
@needs_triton
def test_training_batch_invariant_and_close_to_torch():
    cfgs = [NetConfig("nopost", seed=s, lr=(0.1, 0.01)[s % 2], delay_ms=0, epochs=2 + s % 2) for s in range(3)]
    with kernels.use_backend("triton"):
        batch = train_networks(cfgs, device=DEV, batch_size=3)
        alone = train_networks([cfgs[2]], device=DEV)
        again = train_networks(cfgs, device=DEV, batch_size=3)
    with kernels.use_backend("torch"):
        ref = train_networks(cfgs, device=DEV, batch_size=3)
    for n in batch.weights:
        assert torch.equal(batch.weights[n], again.weights[n])  # a rerun of the same computation: bitwise
        # The kernels treat every network on its own, but the weight gradients are library GEMMs (MKL/oneDNN on
        # the CPU, cuBLAS on a GPU), whose kernel (and so summation order) depends on the batch count, the
        # thread count and the CPU: close only. Bound: a float32 sum over T*B = 16*128 terms in another order
        # differs by at most ~log2(2048) * 2^-24 ~ 7e-7 of its magnitude; these gradients, times lr <= 0.1, over
        # 3 epochs, move the weights (|w| < 1) by far less than 1e-6.
        assert (batch.weights[n][2] - alone.weights[n][0]).abs().max().item() < 1e-6, n
        assert (batch.weights[n] - ref.weights[n]).abs().max().item() < 1e-5
    for c in batch.curves:
        np.testing.assert_allclose(batch.curves[c][1], ref.curves[c][1], rtol=1e-4, atol=1e-6)


@pytest.mark.slow  # Triton's interpreter: seconds to a minute per test on a CPU
@needs_triton
def test_wrong_kernel_is_caught_and_torch_runs(monkeypatch, zoo_log):
    """A kernel that disagrees with the torch formulas is never used: the check says why, training warns once
    and runs the torch formulas."""
    from zoo.kernels import triton_kernels as kt

    real = kt.forward_pass

    def off_by_a_bit(*args, **kwargs):
        real(*args, **kwargs)
        args[-3][:, 5] += 1e-3  # R: one state of every network

    monkeypatch.setattr(kt, "forward_pass", off_by_a_bit)
    monkeypatch.setattr(STATE.triton, "checked", {})
    monkeypatch.setattr(STATE.triton, "warned", set())
    why = kernels.triton_check(DEV)
    assert why is not None and "states differ" in why
    cfg = NetConfig("nopost", seed=1, lr=0.1, delay_ms=0, epochs=1)
    with kernels.use_backend("triton"):
        res = train_networks([cfg], device=DEV)
    assert res.extra["kernels"] == "torch"
    assert sum("triton backend not used" in r.getMessage() for r in zoo_log.records) == 1


@pytest.mark.slow  # Triton's interpreter: seconds to a minute per test on a CPU
@needs_triton
def test_precision_follows_tf32_flag_and_option(zoo_settings):
    from zoo.kernels import triton_kernels as kt

    prev = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        assert kt.precision() == "ieee"
        zoo_settings(triton_precision="tf32x3")
        assert kt.precision() == "tf32x3"
        assert kernels.triton_check(DEV) is None  # float32 accuracy: passes the same check
        with pytest.raises(ValueError, match="'ieee', 'tf32x3'"):
            zoo_settings(triton_precision="bf16")
        with pytest.raises(ValueError, match="'gemm', 'kernel'"):
            zoo_settings(triton_grads="atomic")
        torch.backends.cuda.matmul.allow_tf32 = True
        assert kt.precision() == "tf32"
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev


@pytest.mark.slow  # Triton's interpreter: seconds to a minute per test on a CPU
@needs_triton
def test_block_rows_validated(zoo_settings):
    from zoo.kernels import triton_kernels as kt

    with pytest.raises(ValueError, match="power of two"):
        zoo_settings(triton_bb=24)
    assert kt.block_rows(zoo_settings(triton_bb=16)) == 16
    p = _problem(K=1, T=8)
    a = _passes("triton", p, sigma=1e-3, init_std=0.1)
    zoo_settings(triton_bb=64)
    b = _passes("triton", p, sigma=1e-3, init_std=0.1)
    for x, y in zip(a[:3], b[:3], strict=True):
        assert (x - y).abs().max().item() < 1e-6


@pytest.mark.slow  # Triton's interpreter: seconds to a minute per test on a CPU
def test_unavailable_on_cpu_without_interpreter_falls_back():
    """Asked for on CPU tensors without Triton's interpreter (or with ZOO_TRITON=0): a warning, then torch."""
    code = ("import logging, torch\n"
            "from zoo import kernels\n"
            "from zoo.log import logger\n"
            "w = []\n"
            "h = logging.Handler()\n"
            "h.emit = w.append\n"
            "logger().addHandler(h)\n"
            "print(kernels.backend_for(torch.empty(1)))\n"
            "print(any('triton backend not used' in x.getMessage() for x in w))\n")
    for extra in ({}, {"ZOO_TRITON": "0"}):
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        env.update(ZOO_KERNELS="triton", CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(ROOT), **extra)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["torch", "True"], (extra, out.stdout, out.stderr)


@pytest.mark.slow  # Triton's interpreter: seconds to a minute per test on a CPU
@needs_triton
def test_tf32_variant_is_checked_on_its_own(monkeypatch):
    """train_networks(tf32=True) runs kernels with TF32 products: they get their own check (own cache key, with
    TF32 in the kernels and the GEMMs, the TF32 tolerance), not the exact variant's result."""
    calls = []
    real = kernels.triton_check

    def spy(device, tol=None, tf32=False, settings=None):
        calls.append(tf32)
        return real(device, tol, tf32, settings)

    monkeypatch.setattr(gate, "triton_check", spy)  # what triton_usable calls
    monkeypatch.setattr(STATE.triton, "checked", {})
    prev = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        assert kernels.triton_usable(DEV)
        torch.backends.cuda.matmul.allow_tf32 = True
        assert kernels.triton_usable(DEV)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev
    assert calls == [False, True]
    keys = list(kernels.triton_info()["checked"])
    assert len(keys) == 2 and "(ieee," in keys[0] and "(tf32," in keys[1]


@pytest.mark.slow  # Triton's interpreter: seconds to a minute per test on a CPU
@needs_triton
def test_noise_counter_is_a_scalar_argument():
    """The forward kernel takes the noise counter as an int64 scalar (no tensor copied to the device per
    call) and is not specialised on it: epoch 0 (counter 0) and later epochs share one compiled variant."""
    from zoo.kernels import triton_kernels as kt

    fn = getattr(kt.forward_kernel, "fn", kt.forward_kernel)
    import inspect

    params = inspect.signature(fn).parameters
    assert "ctr0" in params and "CTR" not in params
    if hasattr(kt.forward_kernel, "params"):  # the JIT's view (compiled mode)
        p = next(p for p in kt.forward_kernel.params if p.name == "ctr0")
        assert p.do_not_specialize and p.annotation_type == "i64"
    p = _problem(K=1, T=4)
    a = _passes("triton", p, sigma=1.0, init_std=1.0, epoch=0)
    b = _passes("torch", p, sigma=1.0, init_std=1.0, epoch=0)
    assert (a[0] - b[0]).abs().max().item() < 5e-6
