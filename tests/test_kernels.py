"""The elementwise kernel backends: C vs torch equivalence, noise statistics, invariance, fallback."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from zoo import kernels, rng, settings
from zoo.config import NetConfig
from zoo.kernels import c as kc
from zoo.kernels import compiled
from zoo.kernels.state import STATE
from zoo.train import train_networks

HAS_C = kernels.c_library() is not None
needs_c = pytest.mark.skipif(not HAS_C, reason=f"C kernels unavailable: {kernels.c_backend_info()['error']}")
ROOT = Path(__file__).resolve().parents[1]


def _step(backend, pre, r, keys, epoch, slot, sigma, alpha, w_out=None, b_out=None):
    z, rn = torch.empty_like(pre), torch.empty_like(pre)
    logits = None if w_out is None else torch.empty(pre.shape[0], pre.shape[1], w_out.shape[1])
    with kernels.use_backend(backend):
        kernels.noisy_tanh_step(pre.clone(), r, keys, epoch, slot, sigma, alpha, z, rn, w_out=w_out, b_out=b_out,
                                logits_out=logits)
    return z, rn, logits


def test_backend_selection():
    with kernels.use_backend("torch"):
        assert kernels.backend_for(torch.empty(1)) == "torch"
    with kernels.use_backend("c"):
        assert kernels.backend_for(torch.empty(1, dtype=torch.float64)) == "torch"  # float64: torch
        assert kernels.backend_for(torch.empty(1, device="meta")) == "torch"
    with pytest.raises(ValueError):
        kernels.set_backend("fortran")
    if HAS_C:
        with kernels.use_backend("auto"):
            assert kernels.backend_for(torch.empty(1)) == "c"


@pytest.mark.bitwise("rerun")
def test_counter_formula_is_rng_normal():
    """The tensor-counter formula (what torch.compile fuses on CUDA) is rng.normal, bitwise."""
    keys = rng.keys_tensor([0, 5, 123456789])
    for epoch, slot in ((0, 0), (7, 33), (rng.ANALYSIS_EPOCH, 1000)):
        base = torch.tensor(rng.counter(epoch, slot))
        got = rng.normal_from_counter(keys, base, 600)
        assert torch.equal(got, rng.normal(keys, epoch, slot, (600,)))
        assert torch.equal(rng.normal_from_counter(keys, rng.counter(epoch, slot), 600), got)  # int counter


@pytest.mark.bitwise("rerun")
def test_compiled_formulas_are_the_torch_step():
    """The formulas torch.compile fuses, run eagerly, give the torch backend's numbers (noise bitwise)."""
    g = torch.Generator().manual_seed(3)
    K, B, N = 2, 8, 10
    pre, r = torch.randn(K, B, N, generator=g), torch.randn(K, B, N, generator=g).tanh()
    keys = rng.keys_tensor([1, 2])
    z0, r0, _ = _step("torch", pre, r, keys, 4, 9, 0.5, 0.25)
    z1, r1 = torch.empty_like(pre), torch.empty_like(pre)
    compiled.fwd_formula(pre.clone(), r, keys, compiled.counter_tensor(4, 9, "cpu"), 0.5, 0.25, z1, r1)
    assert (z0 - z1).abs().max().item() < 1e-6 and (r0 - r1).abs().max().item() < 1e-6
    init = torch.empty(K, B, N)
    compiled.init_formula(keys, compiled.counter_tensor(4, 0, "cpu"), 0.1, init)
    assert torch.equal(init, torch.tanh(0.1 * rng.normal(keys, 4, 0, (B, N))))


def test_backend_state_and_settings():
    """set_backend / use_backend live in the one state object; the kernels setting is read from the Settings
    passed (or the process's), never from the environment."""
    prev = STATE.override
    with kernels.use_backend("torch"):
        assert STATE.override == "torch" and kernels.requested_backend() == "torch"
    assert STATE.override == prev
    if prev is None:
        with settings.override(kernels="torch"):
            assert kernels.requested_backend() == "torch"
            assert kernels.backend_for(torch.empty(1)) == "torch"
        assert kernels.backend_for(torch.empty(1), settings.Settings(kernels="torch")) == "torch"
        assert kernels.compile_info(settings.Settings(compile=False))["disabled"]


def test_kernels_read_no_environment():
    """Every ZOO_* value reaches zoo.kernels through zoo.settings (CC is the compiler's own variable), and the
    noise formula through zoo.rng's public functions."""
    for p in sorted((ROOT / "zoo" / "kernels").glob("*.py")):
        text = p.read_text()
        for needle in ("os.environ", "getenv"):
            for line in (ln for ln in text.splitlines() if needle in ln):
                assert 'os.environ.get("CC")' in line, f"{p.name}: {line.strip()}"
    for p in sorted((ROOT / "zoo").rglob("*.py")):
        assert p.name == "rng.py" or "rng._" not in p.read_text(), f"{p}: uses a private name of zoo.rng"


def test_kernels_package_is_layered():
    """The package's imports form a DAG with the torch formulas and the state at the bottom; no kernel module
    imports the package itself (whose __init__ re-exports them)."""
    from test_architecture import cycles, import_graph

    graph = import_graph()
    sub = {m: {d for d in deps if d.startswith("zoo.kernels.")} for m, deps in graph.items()
           if m.startswith("zoo.kernels.")}
    assert set(sub) >= {"zoo.kernels.reference", "zoo.kernels.state", "zoo.kernels.dispatch", "zoo.kernels.c",
                        "zoo.kernels.compiled", "zoo.kernels.triton", "zoo.kernels.triton_kernels"}
    assert sub["zoo.kernels.reference"] == set() and sub["zoo.kernels.state"] == set()
    assert not any("zoo.kernels" in graph[m] for m in sub), {m: graph[m] for m in sub}
    assert cycles(sub) == []
    assert "zoo.kernels.dispatch" not in set().union(*(sub[m] for m in sub if m != "zoo.kernels.dispatch"))


@needs_c
@pytest.mark.parametrize("epoch,slot,n", [(0, 0, 12800), (3, 17, 12800), (999, 81, 200), (rng.ANALYSIS_EPOCH, 700, 6),
                                          (12, 5, 12802)])
def test_c_normal_matches_rng(epoch, slot, n):
    keys = rng.keys_tensor(range(7))
    ref = rng.normal(keys, epoch, slot, (n,))
    with kernels.use_backend("c"):
        got = kernels.normal(keys, epoch, slot, (n,))
    assert (got - ref).abs().max().item() < 2e-6  # float32 rounding of log/sin/cos, |z| < 6
    assert (got == ref).float().mean().item() > 0.5  # most draws are bitwise equal


@needs_c
def test_c_noise_statistics():
    """Mean, std, Kolmogorov-Smirnov distance to N(0, 1), and no correlation within pairs or across streams."""
    keys = rng.keys_tensor(range(16))
    with kernels.use_backend("c"):
        z = torch.cat([kernels.normal(keys, e, s, (12800,)).double() for e, s in ((0, 1), (1, 50), (9, 7))], 1)
    x = z.flatten()
    n = x.numel()  # 614,400
    assert abs(x.mean().item()) < 5 / math.sqrt(n)
    assert abs(x.std().item() - 1) < 5 * math.sqrt(0.5 / n)
    xs = x.sort().values
    cdf = 0.5 * (1 + torch.erf(xs / math.sqrt(2)))
    emp = torch.arange(1, n + 1, dtype=torch.float64) / n
    ks = torch.maximum((emp - cdf).abs(), (emp - 1 / n - cdf).abs()).max().item()
    assert ks < 1.95 / math.sqrt(n)  # p > 0.001
    assert abs(((x**4).mean() - 3).item()) < 0.05  # Gaussian kurtosis (tails, not just the middle)
    even, odd = z[:, 0::2].flatten(), z[:, 1::2].flatten()
    assert abs(torch.corrcoef(torch.stack((even, odd)))[0, 1].item()) < 5 / math.sqrt(even.numel())
    c = torch.corrcoef(z[:, :12800])
    off = c[~torch.eye(16, dtype=torch.bool)]
    assert off.abs().max().item() < 5 / math.sqrt(12800)


@needs_c
def test_c_tanh_accuracy():
    x = torch.cat([torch.linspace(-12, 12, 200001), torch.logspace(-30, 1.2, 20001), -torch.logspace(-8, 1, 2001)])
    with kernels.use_backend("c"):
        y = kernels.tanh(x)
    ref = torch.tanh(x.double())
    ulp = torch.from_numpy(np.spacing(ref.abs().float().numpy())).double()
    assert ((y.double() - ref).abs() / ulp).max().item() <= 2.0
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, 20.0, -20.0])
    with kernels.use_backend("c"):
        ys = kernels.tanh(special)
    assert math.isnan(ys[0]) and ys[1:].tolist() == [1.0, -1.0, 0.0, 1.0, -1.0]


@needs_c
@pytest.mark.parametrize("sigma", [1e-3, 0.0, 0.5])
def test_c_step_matches_torch(sigma):
    g = torch.Generator().manual_seed(0)
    K, B, N = 5, 128, 100
    pre = 2 * torch.randn(K, B, N, generator=g)
    r = torch.randn(K, B, N, generator=g).tanh()
    keys = rng.keys_tensor([3, 1, 4, 1, 5])
    w_out, b_out = 0.1 * torch.randn(K, 2, N, generator=g), torch.randn(K, 2, generator=g)
    zc, rc, lc = _step("c", pre, r, keys, 4, 9, sigma, 0.5, w_out, b_out)
    zt, rt, lt = _step("torch", pre, r, keys, 4, 9, sigma, 0.5, w_out, b_out)
    # pre-activations agree within ~sigma * 1e-6; tanh within ~1 ulp
    assert (zc - zt).abs().max().item() < 1e-5
    assert (rc - rt).abs().max().item() < 1e-5
    assert (lc - lt).abs().max().item() < 1e-5


@pytest.mark.bitwise("c")
@needs_c
def test_c_step_strided_and_thread_invariant():
    """Strided K views (as R[:, t] in the trainer) and any thread count give bitwise the same numbers."""
    K, T, B, N = 3, 4, 128, 100
    R = torch.randn(K, T, B, N).tanh()
    pre = torch.randn(K, B, N)
    keys = rng.keys_tensor([11, 12, 13])
    outs = []
    for threads in (1, 2):
        prev = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            Z = torch.zeros(K, T, B, N)
            with kernels.use_backend("c"):
                kernels.noisy_tanh_step(pre.clone(), R[:, 0], keys, 2, 3, 1e-3, 0.25, Z[:, 1], R[:, 2], stream_z=True)
            outs.append((Z[:, 1].clone(), R[:, 2].clone()))
        finally:
            torch.set_num_threads(prev)
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    z1, r1, _ = _step("c", pre[1:2].contiguous(), R[1:2, 0].contiguous(), keys[1:2], 2, 3, 1e-3, 0.25)
    assert torch.equal(z1[0], outs[0][0][1]) and torch.equal(r1[0], outs[0][1][1])


@needs_c
def test_c_backward_step_matches_torch():
    gen = torch.Generator().manual_seed(1)
    K, B, N = 4, 128, 100
    g, z = torch.randn(K, B, N, generator=gen), torch.randn(K, B, N, generator=gen).tanh()
    dl, w = torch.randn(K, B, 2, generator=gen), torch.randn(K, 2, N, generator=gen)
    res = {}
    for be in ("c", "torch"):
        with kernels.use_backend(be):
            zz, h = z.clone(), torch.empty(K, B, N)
            acc = kernels.bias_accumulator(K, B, N)
            kernels.backward_step(g, zz, dl, w, 0.5, h, acc)
            kernels.backward_step(g, zz.clone(), dl, w, 0.5, torch.empty(K, B, N), acc)
            res[be] = (zz, h, kernels.bias_total(acc))
    for a, b in zip(res["c"], res["torch"], strict=True):
        assert (a - b).abs().max().item() < 1e-5


@needs_c
def test_c_initial_state_matches_torch():
    keys = rng.keys_tensor([0, 9])
    with kernels.use_backend("c"):
        c = kernels.initial_state(keys, 5, (128, 100), 0.1, torch.float32)
    with kernels.use_backend("torch"):
        t = kernels.initial_state(keys, 5, (128, 100), 0.1, torch.float32)
    assert (c - t).abs().max().item() < 1e-6


@pytest.mark.slow
@pytest.mark.bitwise("c")
@needs_c
def test_c_training_batch_invariant_and_close_to_torch():
    cfgs = [NetConfig("post", seed=s, lr=0.05, delay_ms=0, post_ms=30, epochs=2 + s % 2) for s in range(4)]
    with kernels.use_backend("c"):
        batch = train_networks(cfgs, batch_size=4)
        alone = train_networks([cfgs[3]])
        again = train_networks(cfgs[2:], batch_size=2)
    with kernels.use_backend("torch"):
        ref = train_networks(cfgs, batch_size=4)
    assert batch.extra["kernels"] == "c" and ref.extra["kernels"] == "torch"
    for n in batch.weights:
        assert torch.equal(batch.weights[n][3], alone.weights[n][0])
        assert torch.equal(batch.weights[n][3], again.weights[n][1])
        assert torch.equal(batch.weights[n][2], again.weights[n][0])
        assert (batch.weights[n] - ref.weights[n]).abs().max().item() < 1e-5
    for c in batch.curves:
        np.testing.assert_array_equal(batch.curves[c][3], alone.curves[c][0])
        np.testing.assert_allclose(batch.curves[c][3], ref.curves[c][3], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_fallback_without_compiler(tmp_path):
    """No compiler and an empty cache: ZOO_KERNELS=c warns and trains with the torch backend."""
    env = {k: v for k, v in os.environ.items() if k not in ("CC",)}
    env.update(CC="/nonexistent/cc", PATH=str(tmp_path), ZOO_CACHE_DIR=str(tmp_path / "cache"), ZOO_KERNELS="c",
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    code = ("import logging, torch\n"
            "from zoo import kernels\n"
            "from zoo.config import NetConfig\n"
            "from zoo.log import logger\n"
            "from zoo.train import train_networks\n"
            "w = []\n"
            "h = logging.Handler()\n"
            "h.emit = w.append\n"
            "logger().addHandler(h)\n"
            "res = train_networks([NetConfig('nopost', seed=1, lr=0.1, delay_ms=0, epochs=1)])\n"
            "assert res.extra['kernels'] == 'torch', res.extra\n"
            "assert any('C backend unavailable' in x.getMessage() for x in w), [x.getMessage() for x in w]\n"
            "assert not kernels.c_backend_info()['available']\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]


def _pass_inputs(K=3, T=12, B=128, N=100, C=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = 0.15 * torch.randn(K, N, N, generator=g)
    win, bias = torch.randn(K, N, 2, generator=g), 0.1 * torch.randn(K, N, generator=g)
    ch = 1 - torch.arange(B) // (B // 2)
    drive_cue = (win[:, :, ch].transpose(1, 2) + bias[:, None, :]).contiguous()
    w_out, b_out = 0.2 * torch.randn(K, 2, N, generator=g), torch.randn(K, 2, generator=g)
    u_cue = torch.nn.functional.one_hot(ch, 2).float()
    keys = rng.keys_tensor(range(10, 10 + K))
    return W, drive_cue, bias, C, w_out, b_out, keys, u_cue, (K, T, B, N)


def _run_passes(backend, gemm="own", **shape):
    """Both passes with the given backend; for ``c``, ``gemm`` picks the matrix products: ``own``, ``blas``
    (MKL's sgemm) or ``none`` (no whole passes: the step-by-step path with torch matmuls)."""
    W, drive_cue, bias, C, w_out, b_out, keys, u_cue, (K, T, B, N) = _pass_inputs(**shape)
    R, Z, L = torch.empty(K, T + 1, B, N), torch.empty(K, T, B, N), torch.empty(K, T, B, 2)
    lib = kernels.c_library()
    saved = kc.torch_blas()
    if lib is not None:
        lib.zoo_set_gemm(kc.GEMM_MODES["blas" if gemm == "none" else gemm])
        if gemm == "none":
            lib.zoo_set_blas(None, None)
    try:
        with kernels.use_backend(backend):
            kernels.forward_pass(W, drive_cue, bias, C, w_out, b_out, keys, 7, 1e-3, 0.5, 0.1, R, Z, L)
            DL = 1e-3 * torch.sigmoid(L) * (1 - torch.sigmoid(L))  # any readout gradient
            grads = kernels.backward_pass(W, w_out, u_cue, C, 0.5, R, Z.clone(), DL)
    finally:
        if lib is not None:
            if saved is not None:
                lib.zoo_set_blas(*saved)
            lib.zoo_set_gemm(kc.gemm_mode())
    return R, Z, L, grads


def _assert_passes_close(got, ref):
    for a, b in zip(got[:3], ref[:3], strict=True):
        assert (a - b).abs().max().item() < 1e-5
    for n in ref[3]:
        scale = ref[3][n].abs().max().item()
        assert (got[3][n] - ref[3][n]).abs().max().item() < 1e-4 * scale, n


@needs_c
def test_c_whole_passes_match_torch():
    """The C passes (network by network, our matrix products or MKL's) and the C per-step path agree with
    torch."""
    ref = _run_passes("torch")
    modes = ["own", "none"] + (["blas"] if kc.torch_blas() is not None else [])
    if not kernels.c_library().zoo_has_own_gemm():
        modes.remove("own")
    for gemm in modes:
        _assert_passes_close(_run_passes("c", gemm), ref)


@needs_c
@pytest.mark.parametrize("shape", [dict(B=10, N=21, T=5, C=2), dict(B=6, N=45, T=3, C=1), dict(B=2, N=8, T=2, C=1)])
def test_c_own_matrix_products_ragged_shapes(shape):
    """Our matrix products on shapes that leave partial tiles (rows not a multiple of 4, columns not of 8,
    more than one column panel) agree with torch and with MKL's."""
    if not kernels.c_library().zoo_has_own_gemm():
        pytest.skip("no AVX2 + FMA: the C passes use BLAS")
    got = _run_passes("c", "own", **shape)
    _assert_passes_close(got, _run_passes("torch", **shape))
    if kc.torch_blas() is not None:
        _assert_passes_close(got, _run_passes("c", "blas", **shape))


def test_compile_path_logic_with_eager_formulas(monkeypatch):
    """The `compile` code path (ping-pong state buffers, tensor counters and scalars) run with the eager
    formulas in place of torch.compile: same numbers as the torch backend; aliased views are never passed."""
    seen = []

    def spy(fn):
        def wrapped(*args):
            assert not compiled.aliased(args), "compiled function got two views of one tensor"
            seen.append(fn.__name__)
            return fn(*args)
        return wrapped

    fns = {name: spy(fn) for name, fn in compiled.FORMULAS.items()}
    monkeypatch.setattr(STATE.compiled, "fns", fns)
    monkeypatch.setattr(STATE.compiled, "failed", False)
    cfgs = [NetConfig("nopost", seed=s, lr=0.05, delay_ms=20, epochs=2 + s % 2) for s in range(3)]
    with kernels.use_backend("compile"):
        comp = train_networks(cfgs, batch_size=3)
    with kernels.use_backend("torch"):
        ref = train_networks(cfgs, batch_size=3)
    assert comp.extra["kernels"] == "compile" and {"fwd_formula", "init_formula", "bwd_formula"} <= set(seen)
    for n in ref.weights:
        assert (comp.weights[n] - ref.weights[n]).abs().max().item() < 1e-6


def test_aliasing_guard():
    R = torch.zeros(2, 5, 4, 6)
    assert compiled.aliased((R[:, 0], R[:, 1], torch.zeros(3)))
    assert not compiled.aliased((R[:, 0].clone(), R[:, 1], torch.zeros(3), torch.tensor(1.0), torch.tensor(1.0)))


_TRAIN_AND_HASH = (
    "import hashlib, sys, torch\n"
    "from zoo import kernels\n"
    "from zoo.config import NetConfig\n"
    "from zoo.train import train_networks\n"
    "torch.set_num_threads(2)\n"
    "cfgs = [NetConfig('nopost', seed=s, lr=lr, delay_ms=40, epochs=6) for s in (3, 4) for lr in (0.02, 0.2)]\n"
    "res = train_networks(cfgs)\n"
    "h = hashlib.sha256()\n"
    "for n in sorted(res.weights): h.update(res.weights[n].numpy().tobytes())\n"
    "for c in sorted(res.curves): [h.update(a.tobytes()) for a in res.curves[c]]\n"
    "print(res.extra['kernels'], kernels.c_gemm(), h.hexdigest())\n")


@pytest.mark.slow
@pytest.mark.bitwise("c")
@needs_c
def test_c_path_same_bits_compiled_for_plain_avx2(tmp_path):
    """Compiled for plain AVX2 + FMA (``-march=x86-64-v3``: 8-float vectors, generic tuning) the C path trains
    to the same bits as compiled for this CPU (perhaps AVX-512, its own tuning): our matrix products and every
    running sum have one fixed order, so a zoo retrains bitwise on any x86-64 CPU with AVX2 + FMA."""
    if not kernels.c_library().zoo_has_own_gemm():
        pytest.skip("the C kernels were not compiled with AVX2 + FMA here")
    cc = tmp_path / "cc-avx2"
    cc.write_text(f'#!/bin/sh\nexec {kc.compiler()} "$@" -march=x86-64-v3\n')
    cc.chmod(0o755)
    outs = []
    for extra in ({}, {"CC": str(cc), "ZOO_CACHE_DIR": str(tmp_path / "cache")}):
        env = {**os.environ, **extra}
        env.pop("ZOO_KERNELS", None)
        env.pop("ZOO_C_GEMM", None)
        out = subprocess.run([sys.executable, "-c", _TRAIN_AND_HASH], env=env, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        outs.append(out.stdout.split())
    assert outs[0][:2] == outs[1][:2] == ["c", "own"], outs
    assert outs[0][2] == outs[1][2], "compiled for AVX2, the C path gives other bits than compiled for this CPU"
    assert (tmp_path / "cache").is_dir()  # the second run really built its own library


@pytest.mark.bitwise("c")
@needs_c
@pytest.mark.parametrize("gemm", ["own", "own8", "blas"])
def test_c_matrix_products_on_many_shapes(gemm):
    """The passes' matrix products (ours: register tiles of 3 rows x 112 columns with AVX-512, of 4 rows x 40
    or 24 columns in 8-float vectors, masked edges; or MKL's) against float64 products, on shapes with every kind of partial tile, both layouts of A, with and
    without accumulating into C; and each product of a batch equals the same product computed alone."""
    lib = kernels.c_library()
    if gemm.startswith("own") and not lib.zoo_has_own_gemm():
        pytest.skip("no AVX2 + FMA: no own matrix products")
    if gemm == "blas" and kc.torch_blas() is None:
        pytest.skip("no MKL in this torch")
    lib.zoo_set_gemm(kc.GEMM_MODES[gemm])
    try:
        assert kernels.c_gemm() == gemm.rstrip("8")
        g = torch.Generator().manual_seed(5)
        for M, N, K in [(1, 1, 1), (3, 7, 5), (4, 8, 1), (5, 41, 9), (128, 100, 100), (100, 100, 128),
                        (9, 17, 33), (6, 24, 2), (13, 120, 64), (7, 43, 6), (2, 11, 3), (5, 30, 7)]:
            for trans_a in (False, True):
                a = torch.randn((3, K, M) if trans_a else (3, M, K), generator=g)
                b = torch.randn(3, K, N, generator=g)
                c0 = torch.randn(3, M, N, generator=g)
                ref = torch.bmm((a.mT if trans_a else a).double(), b.double())
                tol = 1e-5 * (K ** 0.5) * ref.abs().max().item() + 1e-6
                got = kernels.matmul(a, b, trans_a=trans_a)
                assert (got.double() - ref).abs().max().item() < tol, (M, N, K, trans_a)
                acc = kernels.matmul(a, b, c0.clone(), trans_a=trans_a, accumulate=True)
                assert (acc.double() - (ref + c0.double())).abs().max().item() < tol + 1e-6, (M, N, K, trans_a)
                alone = kernels.matmul(a[1:2].contiguous(), b[1:2].contiguous(), trans_a=trans_a)
                assert torch.equal(alone[0], got[1])
    finally:
        lib.zoo_set_gemm(kc.gemm_mode())


def test_package_exports_resolve():
    """Every public name of zoo.kernels is imported on first use from the module that defines it."""
    import zoo.kernels as pkg

    assert sorted(pkg.__all__) == sorted(pkg._EXPORTS)
    for name in pkg.__all__:
        assert getattr(pkg, name) is getattr(getattr(pkg, pkg._EXPORTS[name]), name), name
    assert pkg.bias_total is pkg.reference.bias_total and pkg.kernels_report.__module__ == "zoo.kernels.dispatch"
    with pytest.raises(AttributeError):
        pkg.no_such_kernel  # noqa: B018
