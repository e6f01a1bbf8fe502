"""The gate of the ``triton`` backend: whether the Triton kernels (:mod:`zoo.kernels.triton_kernels`) run on a
device, decided once per device and launch options by checking them against the torch formulas.

Triton is imported on first use (never at import: CPU-only installs have no Triton). Before its first use on
a device (and launch options, TF32 included) the kernels run a small problem and are compared with
:mod:`zoo.kernels.reference` (:func:`triton_check`); if Triton is missing, fails to compile, or disagrees,
``torch`` runs instead, with a warning (``ZOO_TRITON=0`` disables the backend). On CPU tensors the kernels run
only in Triton's interpreter (``TRITON_INTERPRET=1`` set before Triton is imported): slow, for tests.
"""

from __future__ import annotations

import torch

from .. import rng
from .. import settings as _settings
from ..log import logger
from . import reference
from .state import STATE

#: relative tolerance of :func:`triton_check` for the kernels with TF32 products (10-bit mantissas)
TF32_CHECK_TOL = 1e-2


def module(device: torch.device):
    """:mod:`zoo.kernels.triton_kernels` if it runs on ``device`` (else None, the reason in ``STATE.triton``)."""
    st = STATE.triton
    if st.module is None and st.error is None:
        try:
            from . import triton_kernels

            st.module = triton_kernels
        except Exception as exc:  # noqa: BLE001 - no triton (CPU-only torch), or a broken install
            st.error = f"{type(exc).__name__}: {exc}"
    mod = st.module
    if mod is None or (device.type == "cpu") != mod.INTERPRETED:
        return None
    return mod


def unavailable(device: torch.device) -> str:
    """Why the Triton kernels do not run on ``device`` (after :func:`module` returned None)."""
    if STATE.triton.error is not None:
        return f"Triton unavailable ({STATE.triton.error})"
    if device.type == "cpu":
        return "on the CPU the Triton kernels run only in Triton's interpreter (TRITON_INTERPRET=1 before importing it)"
    return "Triton was imported in interpreter mode (TRITON_INTERPRET=1): GPU kernels are not compiled"


def triton_usable(device: torch.device | str, warn: bool = False, settings: _settings.Settings | None = None) -> bool:
    """Whether the ``triton`` backend runs on ``device``: Triton imports, and the kernels passed
    :func:`triton_check` there (run once per device and launch options, on first use; ``ZOO_TRITON=0``
    disables the backend). A failed check always warns (once); a missing Triton only if ``warn``."""
    s = settings or _settings.current()
    st = STATE.triton
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    key = str(device)
    mod = module(device)
    tf32 = False
    if mod is not None:  # a new choice of precision (TF32 included) or block size is checked anew
        tf32 = mod.precision(None, s) == "tf32"
        key += f" ({mod.config_str(tf32=tf32, settings=s)})"
    if not s.triton:
        why = "disabled by ZOO_TRITON=0"
    elif mod is None:
        why = unavailable(device)
    else:
        if key not in st.checked:
            st.checked[key] = "running"  # the check itself runs the torch formulas
            st.checked[key] = triton_check(device, tf32=tf32, settings=s)
        why = st.checked[key]
        if why in (None, "running"):
            return why is None
        warn = True  # kernels that fail their check are worth a warning even when nobody asked for them
    if warn and key not in st.warned:
        st.warned.add(key)
        logger().warning(f"warning: zoo.kernels: triton backend not used on {key}: {why}; using torch")
    return False


def triton_info(settings: _settings.Settings | None = None) -> dict:
    """Diagnostics of the Triton path: importable or not (and why), and the result of each device's check."""
    st = STATE.triton
    return {"available": st.module is not None, "error": st.error,
            "checked": {k: ("ok" if v is None else v) for k, v in st.checked.items()},
            "disabled": not (settings or _settings.current()).triton}


def triton_check(device: torch.device | str, tol: float | None = None, tf32: bool = False,
                 settings: _settings.Settings | None = None) -> str | None:
    """Run the Triton forward and backward passes on a small random problem (3 networks, 12 steps, 128 trials,
    100 units, cue and post-cue steps, noise) on ``device`` and compare them with the ``torch`` formulas there,
    with TF32 off. ``tf32``: check the variant ``train_networks(tf32=True)`` runs (TF32 products, also in the
    torch GEMMs of the weight gradients) against the same exact reference, within ``TF32_CHECK_TOL``.
    Returns None if every state, tanh value, logit and gradient agrees within ``tol`` (relative to the largest
    value; default 2e-5), else what went wrong. ``settings``: the launch options (default: the process's)."""
    s = settings or _settings.current()
    tol = tol if tol is not None else TF32_CHECK_TOL if tf32 else 2e-5
    device = torch.device(device)
    mod = module(device)
    if mod is None:
        return unavailable(device)
    gen = torch.Generator().manual_seed(1234)
    K, T, B, N, C = 3, 12, 128, 100, 6

    def rnd(*shape, scale):
        return (torch.randn(*shape, generator=gen) * scale).to(device)

    W, dc, bias = rnd(K, N, N, scale=0.15), rnd(K, B, N, scale=0.5), rnd(K, N, scale=0.1)
    W_out, b_out, DL = rnd(K, 2, N, scale=0.2), rnd(K, 2, scale=0.1), rnd(K, T, B, 2, scale=1e-3)
    u_cue = torch.nn.functional.one_hot(torch.arange(B, device=device) % 2, 2).float()
    keys = rng.keys_tensor([0, 7, 123456789], device)

    def torch_passes(R, Z, L):
        reference.forward_pass(W, dc, bias, C, W_out, b_out, keys, 3, 0.05, 0.5, 0.1, R, Z, L)
        return Z.clone(), reference.backward_pass(W, W_out, u_cue, C, 0.5, R, Z, DL)

    def triton_passes(R, Z, L):
        mod.forward_pass(W, dc, bias, C, W_out, b_out, keys, rng.counter(3, 0), 0.05, 0.5, 0.1, R, Z, L, settings=s)
        Zc = Z.clone()
        g = mod.backward_steps(W, W_out, 0.5, Z, DL, R, u_cue, C, settings=s)
        return Zc, g if "W_rec" in g else reference.backward_tail(W_out, u_cue, C, R, Z, DL, g["b"])

    prev_tf32 = torch.backends.cuda.matmul.allow_tf32
    out = {}
    try:
        for name, passes, flag in (("torch", torch_passes, False), ("triton", triton_passes, tf32)):
            torch.backends.cuda.matmul.allow_tf32 = flag  # the kernels' precision follows it
            R, Z, L = (torch.empty(shape, device=device) for shape in ((K, T + 1, B, N), (K, T, B, N), (K, T, B, 2)))
            out[name] = (R, L, *passes(R, Z, L))
    except Exception as exc:  # noqa: BLE001 - a compile or launch failure means: do not use it
        return f"the kernels failed: {type(exc).__name__}: {exc}"
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev_tf32
    (R0, L0, Z0, G0), (R1, L1, Z1, G1) = out["torch"], out["triton"]
    pairs = {"states": (R0, R1), "tanh values": (Z0, Z1), "logits": (L0, L1), **{f"grad {n}": (G0[n], G1[n]) for n in G0}}
    for what, (a, b) in pairs.items():
        err = ((a - b).abs().max() / a.abs().max().clamp_min(1e-30)).item()
        if not err <= tol:
            return f"{what} differ from the torch formulas by {err:.3g} (relative; tolerance {tol:g})"
    return None
