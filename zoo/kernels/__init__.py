"""Hot spots of the trainer, behind one small interface so faster backends can replace them.

``forward_pass`` / ``backward_pass`` run a whole trial forward and the backward pass through time for K
networks at once; per step they need

    z      = tanh(pre + noise_std * normal(keys, epoch, slot))      # (K, B, N)
    r_next = r + alpha * (z - r)

(``noisy_tanh_step``), where ``normal`` is the counter-based stream of :mod:`zoo.rng`; ``initial_state`` draws
``tanh(std * normal(keys, epoch, 0))``; ``backward_step`` is the elementwise part of one backward step.

Backends (choose with the setting ``ZOO_KERNELS`` (:mod:`zoo.settings`) or :func:`set_backend` /
:func:`use_backend`):

- ``torch``: the reference, plain torch operations (any device, any dtype).
- ``c``: C kernels (``zoo/_csrc/zoo_kernels.c``) for float32 tensors on the CPU: one pass per step draws the
  noise (SplitMix64 + Box-Muller, exactly the formula of :mod:`zoo.rng`), applies tanh, the leaky update and
  the readout. The whole forward and backward passes run in C, one network at a time (its weights and state
  stay in cache, no Python per step), with matrix products of our own on x86-64 CPUs with AVX2 + FMA
  (``ZOO_C_GEMM=blas`` uses torch's MKL ``sgemm`` instead) or else with MKL's (looked up in ``libtorch_cpu``;
  ``ZOO_C_BLAS=0`` disables it); with neither, the steps run with batched torch matmuls and the fused
  elementwise kernels.
  It is compiled on first use with the system C compiler into the per-user cache (:func:`zoo.cache.cache_root`:
  ``$ZOO_CACHE_DIR`` or ``~/.cache/rnn-stm-zoo``) and called through ctypes; it splits work over
  ``torch.get_num_threads()`` threads with OpenMP (torch's own OpenMP runtime when torch ships libgomp).
- ``compile``: the torch formula fused by ``torch.compile`` (inductor): used for CUDA tensors, where it
  turns the noise hash, Box-Muller, tanh and update into one kernel; if compiling fails it falls back to
  ``torch`` with a warning (``ZOO_COMPILE=0`` disables it). The compiled functions must not receive two
  views of one tensor (AOTAutograd would replay the first call's view offsets); such calls run eagerly.
- ``triton``: Triton kernels of the whole forward pass and of the backward steps
  (:mod:`zoo.kernels.triton_kernels`) for float32 CUDA tensors: one program per network and block of trials
  keeps the weights on the chip and the state in registers for all T steps, so memory traffic falls from ~370
  to ~28 bytes per unit, trial and step (16 with ``ZOO_TRITON_GRADS=kernel``, which also folds the
  weight-gradient GEMMs into the backward kernel). Before its first use on a device (and launch options) it is
  checked against the ``torch`` formulas on a small problem (:func:`triton_check`); if Triton is missing,
  fails to compile, or disagrees, ``torch`` runs instead, with a warning (``ZOO_TRITON=0`` disables it). On CPU
  tensors (only when asked for, and only with ``TRITON_INTERPRET=1`` set before Triton is imported) it runs in
  Triton's interpreter: slow, for tests.
- ``auto`` (default): ``c`` for float32 CPU tensors when a compiler is available, else ``torch``; on CUDA,
  ``triton`` when it passed its check, else ``torch`` (``compile`` is opt-in). Asking for ``c`` where it cannot
  run (no compiler, float64, CUDA) falls back the same way (with a warning if no compiler could build it).
  Each fallback is reported once, as a warning record of the package's logger (:mod:`zoo.log`): the
  results are right either way, so there is nothing for the user to change.

Reproducibility: each backend is deterministic and batch-invariant on a given machine (a network's numbers do
not depend on K, its position in the batch or the number of threads; reruns are bitwise equal; on a GPU the
cuBLAS weight-gradient GEMMs may round differently for another K). The ``c``
backend's elementwise code uses IEEE float32 operations in a fixed order (no -ffast-math; its own
log/sin/cos/tanh, within 2 ulp) with fused multiply-adds where the CPU has them; its own matrix products
sum every element in one fixed order (k = 0, 1, ... with fused multiply-adds), so on x86-64 CPUs with AVX2 +
FMA the whole ``c`` path gives the same bits whatever the CPU model, vector width, MKL version or threads
(compiled by GCC 12; checked for AMD and Intel targets, ``tests/test_kernels.py``). With MKL's sgemm instead (no
AVX2/FMA, or ``ZOO_C_GEMM=blas``), another compiler, and between backends, results agree to float
rounding only: ``torch`` and ``c`` noise within ~1e-6 absolute (about 70% of the draws bitwise equal), tanh
within 2 ulp; trained weights drift apart at the level of float32 rounding (~1e-7 relative per epoch).

Layout (each module imports only those below it; :mod:`~zoo.kernels.reference` and
:mod:`~zoo.kernels.state` at the bottom):

- :mod:`zoo.kernels.dispatch`: the backend choice and the public kernels (re-exported here);
- :mod:`zoo.kernels.c`: the C backend (compiler, build into the cache, ctypes, MKL lookup, wrappers);
- :mod:`zoo.kernels.compiled`: the ``torch.compile`` backend;
- :mod:`zoo.kernels.triton`: the Triton gate (import, check, warnings); :mod:`zoo.kernels.triton_kernels`:
  the ``@triton.jit`` kernels, their launch options and launchers (the only module importing Triton);
- :mod:`zoo.kernels.reference`: the torch formulas (the ``torch`` backend, and the whole step-by-step passes);
- :mod:`zoo.kernels.state`: all mutable backend state, one object (:data:`~zoo.kernels.state.STATE`).

Every setting (``ZOO_KERNELS``, ``ZOO_NO_CC``, ``ZOO_C_GEMM``, ``ZOO_C_BLAS``, ``ZOO_COMPILE``, ``ZOO_TRITON*``,
``ZOO_CACHE_DIR``) is read from a :class:`zoo.settings.Settings` (an optional ``settings`` argument, default
:func:`zoo.settings.current`), never from the environment. The public names below are imported on first use,
so ``import zoo.kernels`` (and :mod:`zoo.kernels.triton_kernels`, in a venv without torch) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

#: public name -> the submodule that defines it
_EXPORTS = {
    **dict.fromkeys(("BACKENDS", "backend_for", "backward_pass", "backward_step", "bias_accumulator", "bias_total",
                     "forward_pass", "initial_state", "kernels_report", "matmul", "noisy_tanh_step", "normal",
                     "requested_backend", "set_backend", "tanh", "use_backend"), "dispatch"),
    **dict.fromkeys(("c_backend_info", "c_gemm", "c_gemm_tiles", "c_library"), "c"),
    **dict.fromkeys(("compile_info",), "compiled"),
    **dict.fromkeys(("TF32_CHECK_TOL", "triton_check", "triton_info", "triton_usable"), "triton"),
    **dict.fromkeys(("STATE",), "state"),
}
_SUBMODULES = ("c", "compiled", "dispatch", "reference", "state", "triton", "triton_kernels")

__all__ = ["BACKENDS", "STATE", "TF32_CHECK_TOL", "backend_for", "backward_pass", "backward_step", "bias_accumulator",
           "bias_total", "c_backend_info", "c_gemm", "c_gemm_tiles", "c_library", "compile_info", "forward_pass",
           "initial_state", "kernels_report", "matmul", "noisy_tanh_step", "normal", "requested_backend", "set_backend", "tanh",
           "triton_check", "triton_info", "triton_usable", "use_backend"]

if TYPE_CHECKING:  # what the lazy imports below provide
    from .c import c_backend_info, c_gemm, c_gemm_tiles, c_library
    from .compiled import compile_info
    from .dispatch import (
        BACKENDS,
        backend_for,
        backward_pass,
        backward_step,
        bias_accumulator,
        bias_total,
        forward_pass,
        initial_state,
        kernels_report,
        matmul,
        noisy_tanh_step,
        normal,
        requested_backend,
        set_backend,
        tanh,
        use_backend,
    )
    from .state import STATE
    from .triton import TF32_CHECK_TOL, triton_check, triton_info, triton_usable


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_SUBMODULES})
