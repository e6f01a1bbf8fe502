"""Which backend runs, and the public kernels that pick one per call (re-exported by :mod:`zoo.kernels`).

The requested backend is the :func:`set_backend` override (``STATE.override``), else the ``kernels`` setting
(``$ZOO_KERNELS``); :func:`backend_for` turns it into the one that actually runs for a tensor's device and
dtype. Every function takes an optional :class:`zoo.settings.Settings` (default :func:`zoo.settings.current`).
The whole passes run in one call where a backend has them (Triton, C), else step by step: the loop of
:mod:`zoo.kernels.reference` with this module's per-step kernels.
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch

from .. import cache, rng
from .. import settings as _settings
from ..errors import InvalidChoiceError
from . import c, compiled, reference
from . import triton as _triton
from .reference import bias_total
from .state import STATE

#: the kernel backends one may ask for (``auto`` picks one per device)
BACKENDS = _settings.BACKENDS


# ----------------------------------------------------------------------------------------------------------
# backend selection


def requested_backend(settings: _settings.Settings | None = None) -> str:
    """The backend asked for: :func:`set_backend` override, else ``$ZOO_KERNELS`` (settings), else ``auto``."""
    return STATE.override or (settings or _settings.current()).kernels


def set_backend(name: str | None) -> None:
    """Select the kernel backend for this process (``None`` returns to ``$ZOO_KERNELS`` / auto)."""
    if name is not None and name not in BACKENDS:
        raise InvalidChoiceError("kernel backend", name, BACKENDS)
    STATE.override = name


@contextlib.contextmanager
def use_backend(name: str | None):
    """Context manager: run the enclosed code with kernel backend ``name``."""
    prev = STATE.override
    set_backend(name)
    try:
        yield
    finally:
        STATE.override = prev


def backend_for(t: torch.Tensor, settings: _settings.Settings | None = None) -> str:
    """The backend that actually runs for tensors like ``t`` (``c``, ``triton``, ``compile`` or ``torch``)."""
    s = settings or _settings.current()
    req = requested_backend(s)
    if req == "torch":
        return "torch"
    if t.device.type == "cpu":
        if req in ("auto", "c") and t.dtype == torch.float32 and c.c_library(warn=req == "c", settings=s) is not None:
            return "c"
        if req == "triton" and t.dtype == torch.float32 and _triton.triton_usable(t.device, warn=True, settings=s):
            return "triton"
        return "compile" if req == "compile" and compiled.usable(s) else "torch"
    if t.device.type == "cuda":
        if req in ("auto", "triton") and t.dtype == torch.float32 and _triton.triton_usable(
                t.device, warn=req == "triton", settings=s):
            return "triton"
        # the compiled path stays opt-in: an earlier version of it trained networks that never learned on a GPU
        # (aliased state views, fixed and tested on the CPU since, not yet run on a GPU)
        if req == "compile" and compiled.usable(s):
            return "compile"
    return "torch"


def kernels_report(device: str | torch.device = "cpu", settings: _settings.Settings | None = None) -> dict:
    """Build (or load) the C kernels now and say which backend trains on ``device``: what ``zoo kernels``
    prints. Only builders need the kernels: loading, simulating and analysing a zoo never compiles anything.
    Keys: ``requested`` (``ZOO_KERNELS`` or :func:`set_backend`), ``device``, ``cache`` (the folder of the
    compiled kernels), ``backend`` (the one that trains there), ``c`` (:func:`~zoo.kernels.c_backend_info`),
    ``compile`` (:func:`~zoo.kernels.compile_info`), ``triton`` (:func:`~zoo.kernels.triton_info`, on CUDA
    after its check), and ``advice`` (one line when the C kernels are missing)."""
    s = settings or _settings.current()
    dev = torch.device(device)
    info = c.c_backend_info(s)  # compiles on first use; the result is cached under cache.cache_root()
    report = {"requested": requested_backend(s), "device": str(dev), "cache": str(cache.cache_root(s)), "c": info,
              "compile": compiled.compile_info(s), "backend": backend_for(torch.empty(0, device=dev), s)}
    if dev.type == "cuda":
        _triton.triton_usable(dev, settings=s)
        report["triton"] = _triton.triton_info(s)
    if not info["available"]:
        report["advice"] = (f"C kernels unavailable ({info['error']}): CPU training runs the torch backend, "
                            "slower, with results close to (not bitwise equal to) C-built zoos. Install a C "
                            "compiler (gcc) or set CC, then run `zoo kernels` again. Reading and analysing "
                            "zoos needs no compiler.")
    return report


# ----------------------------------------------------------------------------------------------------------
# the per-step kernels


def noisy_tanh_step(pre: torch.Tensor, r: torch.Tensor, keys: torch.Tensor, epoch: int, slot: int,
                    noise_std: float, alpha: float, z_out: torch.Tensor, r_out: torch.Tensor,
                    counter: torch.Tensor | None = None, *, w_out: torch.Tensor | None = None,
                    b_out: torch.Tensor | None = None, logits_out: torch.Tensor | None = None,
                    stream_z: bool = False, r_next: torch.Tensor | None = None,
                    settings: _settings.Settings | None = None) -> None:
    """z_out = tanh(pre + noise_std * normal(keys, epoch, slot)); r_out = r + alpha * (z_out - r).

    pre, r, z_out, r_out: (K, B, N) (each [k] block contiguous for the C backend); keys: (K,) int64. ``pre``
    is scratch (the torch backend adds the noise into it). ``counter`` (optional) is
    ``rng.counter(epoch, slot)`` as a 0-dim int64 tensor on the device, to spare the compiled CUDA path a
    host-to-device copy. With ``w_out`` (K, O, N) and ``b_out`` (K, O), also writes the readout logits of the
    new state, ``logits_out`` (K, B, O) = b_out + r_out @ w_out^T. ``stream_z``: a hint that z_out is not
    read again soon (the C backend then bypasses the cache when writing it). ``r_next`` (optional) receives a
    second copy of r_out (the compiled path needs the state in a buffer that does not alias ``r``).
    """
    be = backend_for(pre, settings)
    if pre[0].numel() % 2:
        raise ValueError(f"noise draws come in pairs: B * N = {pre[0].numel()} must be even")
    if be == "c" and c.fwd_step(pre, r, keys, epoch, slot, noise_std, alpha, z_out, r_out, w_out, b_out, logits_out,
                                stream_z, r_next):
        return
    if be == "compile":
        base = counter if counter is not None else compiled.counter_tensor(epoch, slot, pre.device)
        compiled.run("fwd", pre, r, keys, base, compiled.scalar(noise_std, pre), compiled.scalar(alpha, pre), z_out,
                     r_out, r_next)
        if w_out is not None:
            reference.readout(r_out, w_out, b_out, logits_out)
        return
    reference.noisy_tanh_step(pre, r, keys, epoch, slot, noise_std, alpha, z_out, r_out, w_out=w_out, b_out=b_out,
                              logits_out=logits_out, r_next=r_next)


def initial_state(keys: torch.Tensor, epoch: int, shape: tuple[int, int], std: float, dtype,
                  out: torch.Tensor | None = None, settings: _settings.Settings | None = None) -> torch.Tensor:
    """(K, B, N) initial states tanh(std * z), z from slot 0 of each network's stream (into ``out`` if given)."""
    if out is None:
        out = torch.empty((keys.shape[0], *shape), dtype=dtype, device=keys.device)
    be = backend_for(out, settings)
    if be == "c" and c.initial_state(keys, epoch, math.prod(shape), std, out):
        return out
    if be == "compile":
        compiled.run("init", keys, compiled.counter_tensor(epoch, 0, keys.device), compiled.scalar(std, out), out)
        return out
    return reference.initial_state(keys, epoch, shape, std, dtype, out=out)


def bias_accumulator(K: int, B: int, N: int, dtype=torch.float32, device=None,
                     settings: _settings.Settings | None = None) -> torch.Tensor:
    """Zeroed accumulator of the bias gradient (sum of dL/dpre over trials and steps) for :func:`backward_step`.

    Shape (K, P, N): P partial sums per network (one per chunk of rows in the C backend, so that threads never
    share one; 1 otherwise). :func:`bias_total` adds them up in a fixed order."""
    probe = torch.empty(0, dtype=dtype, device=device)
    P = -(-B // c.ROWS) if backend_for(probe, settings) == "c" else 1
    return torch.zeros((K, P, N), dtype=dtype, device=device)


def backward_step(g: torch.Tensor, z: torch.Tensor, dlogit: torch.Tensor, w_out: torch.Tensor, alpha: float,
                  h_out: torch.Tensor, bias_acc: torch.Tensor | None = None,
                  settings: _settings.Settings | None = None) -> None:
    """Elementwise part of one backward step through r[t+1] = r[t] + alpha (tanh(pre[t]) - r[t]).

    g (K, B, N): dL/dr[t+1]; z (K, B, N): tanh(pre[t]), overwritten with dL/dpre[t] = alpha g (1 - z^2);
    dlogit (K, B, O) and w_out (K, O, N): the readout gradient at step t; h_out (K, B, N) receives
    (1 - alpha) g + dlogit @ w_out. The caller completes dL/dr[t] = h_out + dL/dpre[t] @ W_rec.
    ``bias_acc`` (from :func:`bias_accumulator`) accumulates the sum of dL/dpre[t] over trials.
    """
    be = backend_for(z, settings)
    if be == "c":
        if c.bwd_step(g, z, dlogit, w_out, alpha, h_out, bias_acc):
            return
    elif be == "compile":
        compiled.run("bwd", g, z, dlogit, w_out, compiled.scalar(alpha, z), h_out, bias_acc)
        return
    reference.backward_step(g, z, dlogit, w_out, alpha, h_out, bias_acc)


# ----------------------------------------------------------------------------------------------------------
# the whole passes


def _c_pass_ok(s: _settings.Settings, *tensors) -> bool:
    return backend_for(tensors[0], s) == "c" and c.passes_ok(*tensors)


def _blocks_contiguous(t: torch.Tensor) -> bool:
    """Whether every t[k] is one contiguous block (any device)."""
    return t[0].is_contiguous() if t.shape[0] else True


def _triton_pass_ok(s: _settings.Settings, *tensors) -> bool:
    return (backend_for(tensors[0], s) == "triton" and all(t.dtype == torch.float32 for t in tensors)
            and all(_blocks_contiguous(t) for t in tensors))


def forward_pass(W_rec: torch.Tensor, drive_cue: torch.Tensor, bias: torch.Tensor, cue_steps: int,
                 W_out: torch.Tensor, b_out: torch.Tensor, keys: torch.Tensor, epoch: int, noise_std: float,
                 alpha: float, init_std: float, R: torch.Tensor, Z: torch.Tensor, L: torch.Tensor,
                 settings: _settings.Settings | None = None) -> None:
    """Forward pass of K networks over a whole trial (training).

    W_rec (K, N, N); drive_cue (K, B, N) = W_in u_cue + b_in + b_rec: the drive during the first
    ``cue_steps`` steps; bias (K, N) = b_in + b_rec: the drive afterwards; W_out (K, O, N), b_out (K, O);
    keys (K,). Writes R (K, T + 1, B, N): r[0] = tanh(init_std z0) and the states r[1..T]; Z (K, T, B, N):
    the tanh values; L (K, T, B, O): the readout logits of r[0..T-1] (before the readout nonlinearity).

    The C backend (with its own matrix products or a BLAS) runs the whole pass in C, network by network, and
    the Triton backend in one kernel launch; the other backends loop over the time steps with batched matmuls
    and :func:`noisy_tanh_step`.
    """
    s = settings or _settings.current()
    K, T1, B, N = R.shape
    reference.check_trial_length(T1 - 1)
    args = (W_rec, drive_cue.contiguous(), bias.contiguous(), W_out, b_out, R, Z, L)
    if K and _triton_pass_ok(s, *args) and keys.is_contiguous():
        _triton.module(R.device).forward_pass(*args[:3], cue_steps, W_out, b_out, keys, rng.counter(epoch, 0),
                                              noise_std, alpha, init_std, R, Z, L, settings=s)
        return
    if K and _c_pass_ok(s, *args) and keys.is_contiguous() and (B * N) % 2 == 0:
        err = c.forward_pass(*args[:3], cue_steps, W_out, b_out, keys, epoch, noise_std, alpha, init_std, R, Z, L)
        if err == 0:
            return
        c.report_failure("forward", err)
    # the compiled (CUDA) path reads the state from ping-pong buffers that do not alias R
    reference.forward_pass(W_rec, drive_cue, bias, cue_steps, W_out, b_out, keys, epoch, noise_std, alpha, init_std,
                           R, Z, L, step=functools.partial(noisy_tanh_step, settings=s),
                           init=functools.partial(initial_state, settings=s),
                           pingpong=backend_for(R, s) == "compile")


def backward_pass(W_rec: torch.Tensor, W_out: torch.Tensor, u_cue: torch.Tensor, cue_steps: int, alpha: float,
                  R: torch.Tensor, Z: torch.Tensor, DL: torch.Tensor,
                  settings: _settings.Settings | None = None) -> dict[str, torch.Tensor]:
    """Backward pass through time of K networks, after :func:`forward_pass` and the loss.

    u_cue (B, I): the input during the cue steps (0 afterwards); DL (K, T, B, O): dL/dlogits. R and Z as
    written by the forward pass (Z may be overwritten). Returns the gradients ``W_rec`` (K, N, N), ``b``
    (K, N) (of b_in and of b_rec alike), ``W_in`` (K, N, I) and ``W_out`` (K, O, N); the readout bias
    gradient is DL summed over steps and trials.
    """
    s = settings or _settings.current()
    K, T1, B, N = R.shape
    if K and _c_pass_ok(s, W_rec, W_out, R, Z, DL) and u_cue.is_contiguous() and u_cue.dtype == torch.float32:
        out = c.backward_pass(W_rec, W_out, u_cue, cue_steps, alpha, R, Z, DL)
        if out is not None:
            return out
    if K and _triton_pass_ok(s, W_rec, W_out, R, Z, DL):
        out = _triton.module(R.device).backward_steps(W_rec, W_out, alpha, Z, DL, R, u_cue, cue_steps, settings=s)
        if "W_rec" in out:  # the kernel computed the weight gradients too
            return out
        return reference.backward_tail(W_out, u_cue, cue_steps, R, Z, DL, out["b"])
    return reference.backward_pass(W_rec, W_out, u_cue, cue_steps, alpha, R, Z, DL,
                                   step=functools.partial(backward_step, settings=s),
                                   bias_acc=bias_accumulator(K, B, N, R.dtype, R.device, settings=s))


# ----------------------------------------------------------------------------------------------------------
# single operations (tests, diagnostics, benchmarks)


def normal(keys: torch.Tensor, epoch: int, slot: int, shape: tuple[int, ...],
           settings: _settings.Settings | None = None) -> torch.Tensor:
    """``rng.normal`` computed by the active backend (float32; for tests and diagnostics)."""
    n = math.prod(shape)
    probe = torch.empty(0, dtype=torch.float32, device=keys.device)
    if backend_for(probe, settings) == "c" and n % 2 == 0:
        return c.normal(keys, epoch, slot, n).view(keys.shape[0], *shape)
    return rng.normal(keys, epoch, slot, shape)


def tanh(x: torch.Tensor, settings: _settings.Settings | None = None) -> torch.Tensor:
    """tanh computed by the active backend (for tests of the C approximation)."""
    if backend_for(x, settings) == "c" and x.is_contiguous():
        return c.tanh(x)
    return torch.tanh(x)


def matmul(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None, *, trans_a: bool = False,
           accumulate: bool = False, settings: _settings.Settings | None = None) -> torch.Tensor:
    """Batched ``op(a) @ b`` (``op(a) = a.mT`` if ``trans_a``) with the C passes' matrix products (ours, or
    MKL's: :func:`~zoo.kernels.c_gemm`), into ``out`` (added to it if ``accumulate``); torch's where the C
    passes cannot run. a: (nb, M, K) or (nb, K, M), b: (nb, K, N), out: (nb, M, N); float32, contiguous. For
    tests and benchmarks of the products the trainer uses."""
    nb = a.shape[0]
    M, K = (a.shape[2], a.shape[1]) if trans_a else (a.shape[1], a.shape[2])
    if b.shape[:2] != (nb, K) or (out is not None and out.shape != (nb, M, b.shape[2])):
        raise ValueError(f"shapes do not fit: a {tuple(a.shape)} (trans_a={trans_a}), b {tuple(b.shape)}, "
                         f"out {None if out is None else tuple(out.shape)}")
    if out is None:
        out = torch.zeros((nb, M, b.shape[2]), dtype=a.dtype, device=a.device)
    if backend_for(a, settings) == "c" and c.matmul(a, b, out, trans_a, accumulate):
        return out
    prod = torch.bmm(a.mT if trans_a else a, b)
    return out.add_(prod) if accumulate else out.copy_(prod)


__all__ = ["BACKENDS", "backend_for", "backward_pass", "backward_step", "bias_accumulator", "bias_total",
           "forward_pass", "initial_state", "kernels_report", "matmul", "noisy_tanh_step", "normal",
           "requested_backend", "set_backend", "tanh", "use_backend"]
