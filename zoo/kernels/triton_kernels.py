"""Triton kernels of the trainer's forward and backward passes through time (the ``triton`` backend of
:mod:`zoo.kernels`, for CUDA).

One program handles one network and ``BB`` trials of its batch for the whole trial: its recurrent weights stay
on the chip and its state in registers for all T steps, so per time step it only writes the states and tanh
values that the backward pass needs (8 bytes per unit and trial) instead of the dozen full passes over memory
of the eager formulas. Per step and program:

    forward:  pre = r @ W_rec^T + drive;  z = tanh(pre + sigma * normal(key, epoch, t + 1));
              r = r + alpha * (z - r);     logits = r @ W_out^T + b_out
    backward: d = alpha g (1 - z^2)  (written over z);  h = (1 - alpha) g + dlogit @ W_out;  g = h + d @ W_rec

The noise is the counter-based stream of :mod:`zoo.rng` (SplitMix64 + Box-Muller, one hash per pair of
draws); the weight gradients are then large batched GEMMs in torch (:func:`zoo.kernels.backward_pass`), or
with ``ZOO_TRITON_GRADS=kernel`` accumulated per program in the backward kernel (:func:`fused_grads`).
Matrix products use exact float32 (``input_precision="ieee"``; ``ZOO_TRITON_PRECISION=tf32x3`` for float32
accuracy on the tensor cores) unless TF32 is allowed (``torch.backends.cuda.matmul.allow_tf32``, i.e.
``train_networks(tf32=True)``). ``ZOO_TRITON_BB``, ``ZOO_TRITON_WARPS`` and ``ZOO_TRITON_MAXNREG`` set the
trials per program, the warps per program and the registers per thread (default 32 x 8 x 255; all read from
:class:`zoo.settings.Settings`, which every launcher takes, default :func:`zoo.settings.current`);
:data:`LAUNCH_OPTIONS` are the choices that compile for an H200 (``benchmarks/triton_aot.py`` compiles them on a
CPU; ``benchmarks/bench_gpu.py`` times them on a GPU).

Results match the eager torch formulas to float32 rounding (tanh is a Cephes-style polynomial within 2 ulp;
log, sin and cos are the GPU's), not bitwise. Every program depends only on its own network, so a network's
forward and backward passes do not depend on the batch it is in.

On the CPU the same source runs in Triton's interpreter when ``TRITON_INTERPRET=1`` was set before Triton was
imported (:data:`INTERPRETED`): slow, for tests.

The only module of the package that imports Triton; it needs neither torch nor the rest of :mod:`zoo.kernels`
at import time (``benchmarks/triton_aot.py`` compiles the kernels in a venv without torch). The gate that
checks these kernels and decides whether they run is :mod:`zoo.kernels.triton`.
"""

from __future__ import annotations

import dataclasses

import triton
import triton.language as tl

try:  # the kernels themselves need only Triton: benchmarks/triton_aot.py compiles them in a venv without torch
    import torch
except ImportError:  # pragma: no cover
    torch = None

from .. import settings as _settings


@triton.jit
def _mix64(z):
    """SplitMix64 finaliser on uint64 (logical shifts, products mod 2^64)."""
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB
    return z ^ (z >> 31)


@triton.jit
def _normal_pair(key, ctr, p):
    """Box-Muller pair (cos, sin) number ``p`` (uint64) of stream ``key`` at counter ``ctr``: rng.normal."""
    x = _mix64(key + (ctr + p) * 0x9E3779B97F4A7C15)
    u1 = ((x >> 40).to(tl.float32) + 0.5) * 5.9604644775390625e-08  # 2^-24
    u2 = ((x >> 16) & 0xFFFFFF).to(tl.float32) * 5.9604644775390625e-08
    rad = tl.sqrt(-2.0 * tl.log(u1))
    theta = 6.283185307179586 * u2
    return rad * tl.cos(theta), rad * tl.sin(theta)


@triton.jit
def _normal_block(key, ctr, rows, N, NP: tl.constexpr, EVEN_N: tl.constexpr):
    """(BB, NP) standard normals of the state elements j = row * N + col, j < B * N (pairs (2p, 2p + 1))."""
    if EVEN_N:  # a pair never straddles two rows: one hash per pair, interleaved into (cos, sin) columns
        q = tl.arange(0, NP // 2)
        p = (rows[:, None] * (N // 2) + q[None, :]).to(tl.uint64)
        c, s = _normal_pair(key, ctr, p)
        eps = tl.interleave(c, s)
    else:
        j = (rows[:, None] * N + tl.arange(0, NP)[None, :]).to(tl.uint64)
        c, s = _normal_pair(key, ctr, j >> 1)
        eps = tl.where((j & 1) == 0, c, s)
    return eps


@triton.jit
def _tanh(x):
    """tanh as the C kernels compute it (Cephes tanhf: odd polynomial below 0.625, else 1 - 2/(e^2|x| + 1))."""
    ax = tl.abs(x)
    e = tl.exp(2.0 * tl.minimum(ax, 10.0))
    big = 1.0 - 2.0 / (e + 1.0)
    z = ax * ax
    s = -5.70498872745e-3
    s = s * z + 2.06390887954e-2
    s = s * z - 5.37397155531e-2
    s = s * z + 1.33314422036e-1
    s = s * z - 3.33332819422e-1
    s = s * z * ax + ax
    t = tl.where(ax >= 0.625, big, s)
    return tl.where(x < 0.0, -t, t)


@triton.jit
def _outer(dl, wo, outs, j):
    """dl[:, j] (x) wo[j, :]; the column and the row are selected exactly (x + 0 = x)."""
    dl_j = tl.sum(tl.where(outs[None, :] == j, dl, 0.0), axis=1)  # (BB,)
    wo_j = tl.sum(tl.where(outs[:, None] == j, wo, 0.0), axis=0)  # (NP,)
    return dl_j[:, None] * wo_j[None, :]


@triton.jit
def _readout_grad(dl, wo, outs, OP: tl.constexpr):
    """dl @ wo, (BB, OP) x (OP, NP), as OP outer products summed in order j = 0, 1, ...: exact float32.
    Never written as sum(dl[:, :, None] * wo[None, :, :], axis=1), which Triton <= 3.6 rewrites into a dot
    with TF32 inputs (triton-lang/triton#9609)."""
    acc = _outer(dl, wo, outs, 0)
    for j in tl.static_range(1, OP):
        acc = acc + _outer(dl, wo, outs, j)
    return acc


# one compiled variant for every epoch (counter 0 and 2^40 k alike) and every trial length
@triton.jit(do_not_specialize=["ctr0", "T", "C"])
def forward_kernel(W, DC, BIAS, WO, BO, KEYS, R, Z, L,
                   w_ks, dc_ks, bias_ks, wo_ks, bo_ks, r_ks, z_ks, l_ks,
                   T, C, B, N, ctr0: tl.int64, sigma, alpha, init_std,
                   NO: tl.constexpr, OP: tl.constexpr, BB: tl.constexpr, NP: tl.constexpr,
                   EVEN_N: tl.constexpr, PRECISION: tl.constexpr):
    """Forward pass of one network's BB trials over all T steps: states R, tanh values Z and logits L."""
    k = tl.program_id(0).to(tl.int64)  # network (64-bit: K x T x B x N exceeds 2^31)
    rows = tl.program_id(1) * BB + tl.arange(0, BB)  # trials of this program
    cols = tl.arange(0, NP)
    outs = tl.arange(0, OP)
    rmask, cmask, omask = rows < B, cols < N, outs < NO
    m2 = rmask[:, None] & cmask[None, :]
    # weights, loaded once for the whole trial; zero-padded to NP so padded units stay exactly 0
    wt = tl.load(W + k * w_ks + cols[None, :] * N + cols[:, None], mask=cmask[:, None] & cmask[None, :],
                 other=0.0)  # (NP, NP) W_rec^T
    dc = tl.load(DC + k * dc_ks + rows[:, None] * N + cols[None, :], mask=m2, other=0.0)  # (BB, NP) cue drive
    bias = tl.load(BIAS + k * bias_ks + cols, mask=cmask, other=0.0)  # (NP,) drive after the cue
    wo = tl.load(WO + k * wo_ks + outs[:, None] * N + cols[None, :], mask=omask[:, None] & cmask[None, :],
                 other=0.0)  # (OP, NP)
    bo = tl.load(BO + k * bo_ks + outs, mask=omask, other=0.0)  # (OP,)
    key = tl.load(KEYS + k).to(tl.uint64, bitcast=True)
    ctr = ctr0.to(tl.int64).to(tl.uint64, bitcast=True)  # rng.counter(epoch, 0); slot s adds s << 24
    state = rows[:, None] * N + cols[None, :]  # offset of (trial, unit) inside one step
    lout = rows[:, None] * NO + outs[None, :]
    lmask = rmask[:, None] & omask[None, :]
    BN = B * N
    # r[0] = tanh(init_std * normal(slot 0)) and its logits
    eps = _normal_block(key, ctr, rows, N, NP, EVEN_N)
    r = tl.where(m2, _tanh(init_std * eps), 0.0)  # (BB, NP)
    tl.store(R + k * r_ks + state, r, mask=m2)
    logit = tl.sum(r[:, None, :] * wo[None, :, :], axis=2) + bo[None, :]  # (BB, OP)
    tl.store(L + k * l_ks + lout, logit, mask=lmask)
    for t in range(T):
        drive = tl.where(t < C, dc, bias[None, :])
        pre = tl.dot(r, wt, input_precision=PRECISION) + drive
        ctr += 16777216  # slot t + 1
        eps = _normal_block(key, ctr, rows, N, NP, EVEN_N)
        z = _tanh(pre + sigma * tl.where(m2, eps, 0.0))
        r = r + alpha * (z - r)
        tl.store(Z + k * z_ks + t * BN + state, z, mask=m2)
        tl.store(R + k * r_ks + (t + 1) * BN + state, r, mask=m2)
        logit = tl.sum(r[:, None, :] * wo[None, :, :], axis=2) + bo[None, :]
        more = (outs * 0 + t + 1) < T  # (OP,) all true except after the last step (a tensor in both modes)
        tl.store(L + k * l_ks + (t + 1) * (B * NO) + lout, logit, mask=lmask & more[None, :])


@triton.jit(do_not_specialize=["T", "C"])
def backward_kernel(W, WO, Z, DL, R, U, GB, GW, GWO, GWI,
                    w_ks, wo_ks, z_ks, dl_ks, r_ks, gb_ks, gw_ks, gwo_ks, gwi_ks,
                    T, C, B, N, alpha,
                    NO: tl.constexpr, OP: tl.constexpr, NI: tl.constexpr, IP: tl.constexpr,
                    BB: tl.constexpr, NP: tl.constexpr, PRECISION: tl.constexpr, FUSED: tl.constexpr):
    """Backward steps of one network's BB trials. FUSED: also this program's part of the W_rec, W_out and W_in
    gradients (reads R instead of writing dL/dpre over Z); else dL/dpre is written over Z for torch GEMMs."""
    k = tl.program_id(0).to(tl.int64)
    rb = tl.program_id(1)
    rows = rb * BB + tl.arange(0, BB)
    cols = tl.arange(0, NP)
    outs = tl.arange(0, OP)
    rmask, cmask, omask = rows < B, cols < N, outs < NO
    m2 = rmask[:, None] & cmask[None, :]
    w = tl.load(W + k * w_ks + cols[:, None] * N + cols[None, :], mask=cmask[:, None] & cmask[None, :],
                other=0.0)  # (NP, NP) W_rec
    wo = tl.load(WO + k * wo_ks + outs[:, None] * N + cols[None, :], mask=omask[:, None] & cmask[None, :],
                 other=0.0)  # (OP, NP)
    state = rows[:, None] * N + cols[None, :]
    lout = rows[:, None] * NO + outs[None, :]
    lmask = rmask[:, None] & omask[None, :]
    BN = B * N
    g = tl.zeros((BB, NP), dtype=tl.float32)  # dL/dr[t + 1]
    gb = tl.zeros((NP,), dtype=tl.float32)  # this program's part of the bias gradient
    if FUSED:
        ins = tl.arange(0, IP)
        u = tl.load(U + rows[:, None] * NI + ins[None, :], mask=rmask[:, None] & (ins < NI)[None, :],
                    other=0.0)  # (BB, IP) the input during the cue
        gw = tl.zeros((NP, NP), dtype=tl.float32)  # sum over steps of dL/dpre^T r
        gwo = tl.zeros((OP, NP), dtype=tl.float32)  # sum over steps of dL/dlogit^T r
        gwi = tl.zeros((IP, NP), dtype=tl.float32)  # sum over cue steps of u^T dL/dpre
    for s in range(T):
        t = T - 1 - s
        z = tl.load(Z + k * z_ks + t * BN + state, mask=m2, other=0.0)
        d = ((z * z - 1.0) * g) * (-alpha)  # dL/dpre[t]
        gb += tl.sum(d, axis=0)
        dl = tl.load(DL + k * dl_ks + t * (B * NO) + lout, mask=lmask, other=0.0)  # (BB, OP)
        if FUSED:
            r = tl.load(R + k * r_ks + t * BN + state, mask=m2, other=0.0)  # r[t], read out at step t
            gw += tl.dot(tl.trans(d), r, input_precision=PRECISION)
            gwo += tl.sum(dl[:, :, None] * r[:, None, :], axis=0)
            cue = ((ins * 0 + t) < C).to(tl.float32)  # (IP,) 1 during the cue steps
            gwi += tl.sum(u[:, :, None] * d[:, None, :], axis=0) * cue[:, None]
        else:
            tl.store(Z + k * z_ks + t * BN + state, d, mask=m2)
        h = g * (1.0 - alpha) + _readout_grad(dl, wo, outs, OP)
        g = h + tl.dot(d, w, input_precision=PRECISION)  # dL/dr[t] (unused after t = 0)
    tl.store(GB + k * gb_ks + rb * N + cols, gb, mask=cmask)
    if FUSED:
        tl.store(GW + k * gw_ks + rb * (N * N) + cols[:, None] * N + cols[None, :], gw,
                 mask=cmask[:, None] & cmask[None, :])
        tl.store(GWO + k * gwo_ks + rb * (NO * N) + outs[:, None] * N + cols[None, :], gwo,
                 mask=omask[:, None] & cmask[None, :])
        tl.store(GWI + k * gwi_ks + rb * (NI * N) + ins[:, None] * N + cols[None, :], gwi,
                 mask=(ins < NI)[:, None] & cmask[None, :])


# ----------------------------------------------------------------------------------------------------------
# launch options (from the settings: ZOO_TRITON_PRECISION, _BB, _WARPS, _MAXNREG, _GRADS)

PRECISIONS = _settings.TRITON_PRECISIONS


def block_rows(settings: _settings.Settings | None = None) -> int:
    """Trials per program (``$ZOO_TRITON_BB``, default 32; a power of two >= 16)."""
    return (settings or _settings.current()).triton_bb


def num_warps(settings: _settings.Settings | None = None) -> int:
    """Warps per program (``$ZOO_TRITON_WARPS``, default 8)."""
    return (settings or _settings.current()).triton_warps


def max_registers(settings: _settings.Settings | None = None) -> int | None:
    """Cap on registers per thread (``$ZOO_TRITON_MAXNREG``, default 255; 0: the compiler's choice (None), which
    gave the forward kernel 32 registers and ~7 KB of spills per thread at 4 warps)."""
    return (settings or _settings.current()).triton_maxnreg or None


def fused_grads(settings: _settings.Settings | None = None) -> bool:
    """Whether the backward kernel also computes the weight gradients (``$ZOO_TRITON_GRADS=kernel``) instead of
    leaving them to three batched torch GEMMs (``gemm``, the default): 16 instead of 28 bytes per unit, trial
    and step, but a 100 x 100 accumulator per program."""
    return (settings or _settings.current()).triton_grads == "kernel"


def precision(tf32: bool | None = None, settings: _settings.Settings | None = None) -> str:
    """``tl.dot`` input precision: ``tf32`` when TF32 matmuls are allowed (``tf32``; None: as
    ``torch.backends.cuda.matmul.allow_tf32``, i.e. ``train_networks(tf32=True)``), else
    ``$ZOO_TRITON_PRECISION``: ``ieee`` (default: float32 products on the CUDA cores) or ``tf32x3`` (each
    operand split into two TF32 parts, three tensor-core products: float32 accuracy, often faster)."""
    if torch.backends.cuda.matmul.allow_tf32 if tf32 is None else tf32:
        return "tf32"
    return (settings or _settings.current()).triton_precision


def _launch_opts(settings: _settings.Settings) -> dict:
    mr = max_registers(settings)
    return {"num_warps": num_warps(settings), **({"maxnreg": mr} if mr and not INTERPRETED else {})}


def launch_option(precision: str, bb: int, warps: int, grads: str, maxnreg: int | None = None) -> dict:
    """A launch option as :data:`LAUNCH_OPTIONS` lists them (precision, trials per program, warps, where the
    weight gradients are summed, register cap)."""
    return {"precision": precision, "bb": bb, "warps": warps, "grads": grads, "maxnreg": maxnreg}


#: the launch options ``benchmarks/bench_gpu.py`` may try, fastest expected first: tensor-core products
#: (``tf32x3``, float32 accuracy) with the weight gradients in the kernel (fewest bytes) or by GEMMs, then exact
#: float32 with the fewest spills, the default last. Each compiles for sm_90 within an H200 block's 232,448
#: bytes of shared memory (``tests/test_triton_compile.py``, which also reports registers and spills; the table
#: is in docs/benchmarks.md). 255 registers x 8 warps is exactly one SM's 64K registers.
LAUNCH_OPTIONS = (
    launch_option("tf32x3", 16, 4, "kernel"), launch_option("tf32x3", 16, 4, "gemm"), launch_option("ieee", 16, 8, "kernel", 255),
    launch_option("ieee", 32, 8, "kernel", 255), launch_option("ieee", 16, 8, "gemm", 255), launch_option("ieee", 32, 8, "gemm", 255),
)


def current_option(settings: _settings.Settings | None = None) -> dict:
    """The launch option the settings select (the defaults: ``ieee``, 32 trials x 8 warps, 255 registers, GEMMs)."""
    s = settings or _settings.current()
    return launch_option(precision(False, s), block_rows(s), num_warps(s), "kernel" if fused_grads(s) else "gemm",
                max_registers(s))


def option_settings(option: dict) -> dict:
    """The :class:`zoo.settings.Settings` fields that select a launch option of :data:`LAUNCH_OPTIONS`
    (for ``settings.override(**option_settings(option))``)."""
    return {"triton_precision": option["precision"], "triton_bb": option["bb"], "triton_warps": option["warps"],
            "triton_grads": option["grads"], "triton_maxnreg": option.get("maxnreg") or 0}


def option_env(option: dict) -> dict[str, str]:
    """The environment variables that select a launch option of :data:`LAUNCH_OPTIONS` (for a subprocess, or
    this process after :func:`zoo.settings.reload`)."""
    env = {f.name: f.metadata["env"] for f in dataclasses.fields(_settings.Settings)}
    return {env[name]: str(value) for name, value in option_settings(option).items()}


def config_str(tf32: bool = False, settings: _settings.Settings | None = None) -> str:
    """The launch options in use; ``tf32``: with the TF32 products that the trainer switches on per call."""
    s = settings or _settings.current()
    grads = "weight gradients in the kernel" if fused_grads(s) else "weight gradients by GEMMs"
    mr = max_registers(s)
    regs = f", at most {mr} registers" if mr else ""
    return f"{precision(tf32, s)}, {block_rows(s)} trials x {num_warps(s)} warps per program{regs}, {grads}"


def launch_meta(B: int, N: int, n_out: int, bb: int | None = None, settings: _settings.Settings | None = None) -> dict:
    """The kernels' block sizes for B trials of N units and ``n_out`` outputs (``bb``: trials per program)."""
    return {"OP": max(2, triton.next_power_of_2(n_out)), "BB": bb or block_rows(settings),
            "NP": max(16, triton.next_power_of_2(N)), "NO": n_out}


# ----------------------------------------------------------------------------------------------------------
# launchers


def forward_pass(W_rec, drive_cue, bias, cue_steps, W_out, b_out, keys, counter, noise_std, alpha, init_std,
                 R, Z, L, settings: _settings.Settings | None = None) -> None:
    """Launch the forward kernel (shapes as :func:`zoo.kernels.forward_pass`; every [k] block contiguous;
    ``counter`` = ``rng.counter(epoch, 0)``)."""
    s = settings or _settings.current()
    K, T1, B, N = R.shape
    m = launch_meta(B, N, W_out.shape[1], settings=s)
    grid = (K, triton.cdiv(B, m["BB"]))
    forward_kernel[grid](
        W_rec, drive_cue, bias, W_out, b_out, keys, R, Z, L,
        W_rec.stride(0), drive_cue.stride(0), bias.stride(0), W_out.stride(0), b_out.stride(0), R.stride(0),
        Z.stride(0), L.stride(0), T1 - 1, cue_steps, B, N, int(counter), float(noise_std), float(alpha),
        float(init_std), EVEN_N=N % 2 == 0, PRECISION=precision(None, s), **_launch_opts(s), **m)


def backward_steps(W_rec, W_out, alpha, Z, DL, R=None, u_cue=None, cue_steps=0,
                   settings: _settings.Settings | None = None) -> dict[str, torch.Tensor]:
    """Launch the backward kernel. Z (K, T, B, N): the tanh values; DL (K, T, B, O): dL/dlogits.

    Returns ``{"b": bias gradient (K, N)}`` and Z overwritten with dL/dpre (for the weight-gradient GEMMs);
    with :func:`fused_grads` and R (K, T + 1, B, N), u_cue (B, I) given, also the ``W_rec``, ``W_out`` and
    ``W_in`` gradients (as :func:`zoo.kernels.backward_pass`), and Z is left as it was."""
    from .reference import bias_total  # the programs' partial sums, added in a fixed order (torch: lazily)

    s = settings or _settings.current()
    K, T, B, N = Z.shape
    n_out = W_out.shape[1]
    m = launch_meta(B, N, n_out, settings=s)
    nb = triton.cdiv(B, m["BB"])
    fused = R is not None and fused_grads(s)
    n_in = u_cue.shape[1] if fused else 1
    dev = Z.device
    gb = torch.empty((K, nb, N), dtype=Z.dtype, device=dev)
    if fused:
        gw, gwo = torch.empty((K, nb, N, N), device=dev), torch.empty((K, nb, n_out, N), device=dev)
        gwi, u = torch.empty((K, nb, n_in, N), device=dev), u_cue.to(dev, torch.float32).contiguous()
    else:
        gw = gwo = gwi = gb  # unused
        R = u = Z
    backward_kernel[(K, nb)](
        W_rec, W_out, Z, DL, R, u, gb, gw, gwo, gwi,
        W_rec.stride(0), W_out.stride(0), Z.stride(0), DL.stride(0), R.stride(0), gb.stride(0), gw.stride(0),
        gwo.stride(0), gwi.stride(0), T, cue_steps, B, N, float(alpha), NI=n_in,
        IP=max(2, triton.next_power_of_2(n_in)), PRECISION=precision(None, s), FUSED=fused, **_launch_opts(s), **m)
    out = {"b": bias_total(gb)}
    if fused:
        out.update(W_rec=bias_total(gw), W_out=bias_total(gwo), W_in=bias_total(gwi).transpose(1, 2))
    return out


#: whether the kernels were defined for Triton's interpreter (numpy, CPU tensors) instead of the GPU compiler
INTERPRETED = not isinstance(forward_kernel, triton.JITFunction)
