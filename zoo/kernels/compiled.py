"""The ``compile`` backend: the torch formulas of one step fused by ``torch.compile`` (inductor).

Used for CUDA tensors when asked for (``ZOO_KERNELS=compile``), where it turns the noise hash, Box-Muller, tanh
and update into one kernel. The formulas here take the noise counter (:func:`zoo.rng.normal_from_counter`) and
the scalars as tensors, so a new epoch, learning rule or tau does not trigger a recompilation. If compiling
fails, the eager formulas run instead, with a warning, for the rest of the process (``ZOO_COMPILE=0``
disables the backend). The compiled functions must not receive two views of one tensor (AOTAutograd would
replay the first call's view offsets): such calls run eagerly (:func:`aliased`).
"""

from __future__ import annotations

import torch

from .. import rng
from .. import settings as _settings
from ..log import logger
from .state import STATE


def fwd_formula(pre, r, keys, base, noise_std, alpha, z_out, r_out, r_next=None) -> None:
    """noise_std, alpha: Python floats (eager) or 0-dim tensors on the device (compiled: no recompiles)."""
    eps = rng.normal_from_counter(keys, base, pre[0].numel()).view(pre.shape).to(pre.dtype)
    z = torch.tanh(pre + noise_std * eps)
    rn = r + alpha * (z - r)
    z_out.copy_(z)
    r_out.copy_(rn)
    if r_next is not None:
        r_next.copy_(rn)


def init_formula(keys, base, std, out) -> None:
    out.copy_(torch.tanh(std * rng.normal_from_counter(keys, base, out[0].numel()).view(out.shape).to(out.dtype)))


def bwd_formula(g, z, dl, w_out, alpha, h, bias_acc=None) -> None:
    d = ((z * z - 1.0) * g) * (-alpha)
    z.copy_(d)
    h.copy_(torch.baddbmm(g * (1.0 - alpha), dl, w_out))
    if bias_acc is not None:
        bias_acc[:, 0] += d.sum(1)


#: the eager formulas by name (what :func:`run` compiles)
FORMULAS = {"fwd": fwd_formula, "init": init_formula, "bwd": bwd_formula}


def usable(settings: _settings.Settings | None = None) -> bool:
    """Whether the compiled path may run: allowed by the settings and not failed before."""
    return not STATE.compiled.failed and (settings or _settings.current()).compile


def compile_info(settings: _settings.Settings | None = None) -> dict:
    """Diagnostics of the torch.compile path: disabled (ZOO_COMPILE=0), failed (and why), or usable."""
    s = settings or _settings.current()
    return {"usable": usable(s), "disabled": not s.compile, "failed": STATE.compiled.failed,
            "error": STATE.compiled.error}


def scalar(value: float, like: torch.Tensor) -> torch.Tensor:
    """A cached 0-dim tensor holding ``value`` on ``like``'s device and dtype (compiled functions take scalars
    as tensors, so a new learning rule or tau does not trigger a recompilation)."""
    key = (float(value), like.device, like.dtype)
    cache = STATE.compiled.scalars
    t = cache.get(key)
    if t is None:
        t = cache[key] = torch.tensor(float(value), dtype=like.dtype, device=like.device)
    return t


def counter_tensor(epoch: int, slot: int, device) -> torch.Tensor:
    """``rng.counter(epoch, slot)`` as a 0-dim int64 tensor on ``device``."""
    return torch.tensor(rng.counter(epoch, slot), dtype=torch.int64, device=device)


def _compiled() -> dict | None:
    """torch.compile'd versions of the formulas (built lazily; None if torch.compile is unusable)."""
    st = STATE.compiled
    if st.fns is None and not st.failed:
        try:
            # dynamic shapes from the start: one graph per function for every K, T, B, N and stride
            opts = {"dynamic": True, "fullgraph": True}
            st.fns = {name: torch.compile(fn, **opts) for name, fn in FORMULAS.items()}
        except Exception as exc:  # noqa: BLE001
            _failed(exc)
    return st.fns


def _failed(exc: BaseException) -> None:
    st = STATE.compiled
    st.failed = True
    st.error = f"{type(exc).__name__}: {exc}"
    logger().warning(f"warning: zoo.kernels: torch.compile failed, using eager torch kernels ({st.error})")


def aliased(args) -> bool:
    """Whether two (non-scalar) tensor arguments share memory (compiled functions must not get aliased views:
    AOTAutograd would rebuild them from the first call's offsets)."""
    ptrs = [a.untyped_storage().data_ptr() for a in args if isinstance(a, torch.Tensor) and a.dim() and a.numel()]
    return len(set(ptrs)) < len(ptrs)


def run(name: str, *args) -> None:
    """Run formula ``name`` compiled (or eagerly: after a failure, or with aliased arguments)."""
    fns = _compiled()
    if fns is not None and not aliased(args):
        try:
            fns[name](*args)
            return
        except Exception as exc:  # noqa: BLE001 - fall back to eager, once and for all
            _failed(exc)
    FORMULAS[name](*args)
