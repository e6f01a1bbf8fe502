"""Our matrix products in 16-float register tiles (AVX-512) and in 8-float ones: the same bits, selectable."""

import os
import subprocess
import sys

import pytest
import torch

from zoo import kernels
from zoo.config import NetConfig
from zoo.kernels import c as kc
from zoo.train import train_networks

LIB = kernels.c_library()
needs_both = pytest.mark.skipif(
    LIB is None or not LIB.zoo_has_gemm16(),
    reason="the C kernels have no 16-float tiles here (no C compiler, or a CPU without AVX-512F + VL): "
           "only one tile width to compare")


def _with_mode(mode: str, fn, *args):
    LIB.zoo_set_gemm(kc.GEMM_MODES[mode])
    try:
        return fn(*args)
    finally:
        LIB.zoo_set_gemm(kc.gemm_mode())


#: shapes with every kind of tile: rows not a multiple of 3, a column tail of 1-8 columns (an 8-float vector),
#: of 9-15 (a masked 16-float one), none, one lone vector, and more than one 112-column panel
SHAPES = [(1, 1, 1), (3, 7, 5), (4, 8, 1), (5, 16, 9), (2, 17, 3), (7, 24, 6), (6, 25, 2), (128, 100, 100),
          (100, 100, 128), (9, 96, 33), (13, 112, 64), (4, 113, 20), (5, 121, 7), (3, 230, 4), (31, 200, 50)]


def _products(a, b, c0, trans_a):
    return (kernels.matmul(a, b, trans_a=trans_a),
            kernels.matmul(a, b, c0.clone(), trans_a=trans_a, accumulate=True))


@pytest.mark.bitwise("c")
@needs_both
def test_wide_and_narrow_tiles_give_the_same_bits():
    """Every product, both layouts of A, with and without accumulating: bitwise equal between the two tile
    widths, and right (against float64)."""
    assert _with_mode("own", kernels.c_gemm_tiles) == "16-float"
    assert _with_mode("own8", kernels.c_gemm_tiles) == "8-float"
    assert _with_mode("own8", kernels.c_gemm) == _with_mode("own", kernels.c_gemm) == "own"
    g = torch.Generator().manual_seed(11)
    for M, N, K in SHAPES:
        for trans_a in (False, True):
            a = torch.randn((2, K, M) if trans_a else (2, M, K), generator=g)
            b = torch.randn(2, K, N, generator=g)
            c0 = torch.randn(2, M, N, generator=g)
            outs = {mode: _with_mode(mode, _products, a, b, c0, trans_a) for mode in ("own", "own8")}
            for wide, narrow in zip(outs["own"], outs["own8"], strict=True):
                assert torch.equal(wide, narrow), (M, N, K, trans_a)
            ref = torch.bmm((a.mT if trans_a else a).double(), b.double())
            tol = 1e-5 * (K ** 0.5) * ref.abs().max().item() + 1e-6
            assert (outs["own"][0].double() - ref).abs().max().item() < tol, (M, N, K, trans_a)


@pytest.mark.bitwise("c")
@needs_both
def test_training_gives_the_same_bits_with_either_tile_width():
    """The whole C passes (forward, backward, weight gradients) train to the same weights and curves."""
    cfgs = [NetConfig("nopost", seed=s, lr=lr, delay_ms=40, epochs=3) for s in (1, 2) for lr in (0.02, 0.2)]
    with kernels.use_backend("c"):
        res = {mode: _with_mode(mode, train_networks, cfgs) for mode in ("own", "own8")}
    assert res["own"].extra["kernels"] == "c"
    for name, w in res["own"].weights.items():
        assert torch.equal(w, res["own8"].weights[name]), name
    for name, curve in res["own"].curves.items():
        assert all((x == y).all() for x, y in zip(curve, res["own8"].curves[name], strict=True)), name


@pytest.mark.skipif(LIB is None or not LIB.zoo_has_own_gemm(), reason="no own matrix products here")
def test_setting_forces_the_narrow_tiles():
    """``ZOO_C_GEMM=own8`` selects the 8-float tiles when the library loads; the default takes the widest."""
    code = "from zoo import kernels; print(kernels.c_gemm(), kernels.c_gemm_tiles())"
    env = {**os.environ, "ZOO_C_GEMM": "own8"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["own", "8-float"]
    widest = "16-float" if LIB.zoo_has_gemm16() else "8-float"
    assert _with_mode("own", kernels.c_gemm_tiles) == widest
