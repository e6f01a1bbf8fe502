"""Hot spots of the trainer, behind one small interface so faster backends can replace them.

``forward_pass`` / ``backward_pass`` run a whole trial forward and the backward pass through time for K
networks at once; per step they need

    z      = tanh(pre + noise_std * normal(keys, epoch, slot))      # (K, B, N)
    r_next = r + alpha * (z - r)

(``noisy_tanh_step``), where ``normal`` is the counter-based stream of :mod:`zoo.rng`; ``initial_state`` draws
``tanh(std * normal(keys, epoch, 0))``; ``backward_step`` is the elementwise part of one backward step.

Backends (choose with the environment variable ``ZOO_KERNELS`` or :func:`set_backend` / :func:`use_backend`):

- ``torch``: the reference, plain torch operations (any device, any dtype).
- ``c``: C kernels (``zoo/_csrc/zoo_kernels.c``) for float32 tensors on the CPU: one pass per step draws the
  noise (SplitMix64 + Box-Muller, exactly the formula of :mod:`zoo.rng`), applies tanh, the leaky update and
  the readout. The whole forward and backward passes run in C, one network at a time (its weights and state
  stay in cache, no Python per step), with matrix products of our own on x86-64 CPUs with AVX2 + FMA
  (``ZOO_C_GEMM=blas`` uses torch's MKL ``sgemm`` instead) or else with MKL's (looked up in ``libtorch_cpu``;
  ``ZOO_C_BLAS=0`` disables it); with neither, the steps run with batched torch matmuls and the fused
  elementwise kernels.
  It is compiled on first use with the system C compiler into a cache folder (``$ZOO_CACHE_DIR`` or
  ``~/.cache/rnn-stm-zoo``) and called through ctypes; it splits work over ``torch.get_num_threads()``
  threads with OpenMP (torch's own OpenMP runtime when torch ships libgomp).
- ``compile``: the torch formula fused by ``torch.compile`` (inductor): used for CUDA tensors, where it
  turns the noise hash, Box-Muller, tanh and update into one kernel; if compiling fails it falls back to
  ``torch`` with a warning (``ZOO_COMPILE=0`` disables it). The compiled functions must not receive two
  views of one tensor (AOTAutograd would replay the first call's view offsets); such calls run eagerly.
- ``triton``: Triton kernels of the whole forward pass and of the backward steps (:mod:`zoo.kernels_triton`)
  for float32 CUDA tensors: one program per network and block of trials keeps the weights on the chip and the
  state in registers for all T steps, so memory traffic falls from ~370 to ~28 bytes per unit, trial and
  step (16 with ``ZOO_TRITON_GRADS=kernel``, which also folds the weight-gradient GEMMs into the backward
  kernel). Before its first use on a device (and launch
  options) it is checked against the ``torch`` formulas on a small problem (:func:`triton_check`); if Triton is
  missing, fails to compile, or disagrees, ``torch`` runs instead, with a warning (``ZOO_TRITON=0`` disables
  it). On CPU tensors (only when asked for, and only with ``TRITON_INTERPRET=1`` set before Triton is
  imported) it runs in Triton's interpreter: slow, for tests.
- ``auto`` (default): ``c`` for float32 CPU tensors when a compiler is available, else ``torch``; on CUDA,
  ``triton`` when it passed its check, else ``torch`` (``compile`` is opt-in). Asking for ``c`` where it cannot
  run (no compiler, float64, CUDA) falls back the same way (with a warning if no compiler could build it).

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
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import math
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch

from . import rng

BACKENDS = ("auto", "c", "torch", "compile", "triton")
_ABI_VERSION = 8
#: rows per unit of parallel work in the C kernels (bias-gradient partial sums are kept per such chunk)
_ROWS = 16
_SRC = Path(__file__).resolve().parent / "_csrc" / "zoo_kernels.c"

_override: str | None = None
_lock = threading.Lock()
_lib_state: dict = {"lib": None, "tried": False, "error": None, "path": None}
_compile_state: dict = {"fns": None, "failed": False}
_triton_state: dict = {"module": None, "error": None, "checked": {}, "warned": set()}


# ----------------------------------------------------------------------------------------------------------
# backend selection


def requested_backend() -> str:
    """The backend asked for: :func:`set_backend` override, else ``$ZOO_KERNELS``, else ``auto``."""
    name = _override or os.environ.get("ZOO_KERNELS", "auto").strip().lower() or "auto"
    if name not in BACKENDS:
        raise ValueError(f"ZOO_KERNELS={name!r}: choose one of {', '.join(BACKENDS)}")
    return name


def set_backend(name: str | None) -> None:
    """Select the kernel backend for this process (``None`` returns to ``$ZOO_KERNELS`` / auto)."""
    global _override
    if name is not None and name not in BACKENDS:
        raise ValueError(f"unknown kernel backend {name!r}: choose one of {', '.join(BACKENDS)}")
    _override = name


@contextlib.contextmanager
def use_backend(name: str | None):
    """Context manager: run the enclosed code with kernel backend ``name``."""
    global _override
    prev = _override
    set_backend(name)
    try:
        yield
    finally:
        _override = prev


def backend_for(t: torch.Tensor) -> str:
    """The backend that actually runs for tensors like ``t`` (``c``, ``triton``, ``compile`` or ``torch``)."""
    req = requested_backend()
    if req == "torch":
        return "torch"
    if t.device.type == "cpu":
        if req in ("auto", "c") and t.dtype == torch.float32 and c_library(warn=req == "c") is not None:
            return "c"
        if req == "triton" and t.dtype == torch.float32 and triton_usable(t.device, warn=True):
            return "triton"
        return "compile" if req == "compile" and _compile_usable() else "torch"
    if t.device.type == "cuda":
        if req in ("auto", "triton") and t.dtype == torch.float32 and triton_usable(t.device, warn=req == "triton"):
            return "triton"
        # the compiled path stays opt-in: an earlier version of it trained networks that never learned on a GPU
        # (aliased state views, fixed and tested on the CPU since, not yet run on a GPU)
        if req == "compile" and _compile_usable():
            return "compile"
    return "torch"


def _compile_usable() -> bool:
    return not _compile_state["failed"] and os.environ.get("ZOO_COMPILE", "1") != "0"


def compile_info() -> dict:
    """Diagnostics of the torch.compile path: disabled (ZOO_COMPILE=0), failed (and why), or usable."""
    return {"usable": _compile_usable(), "disabled": os.environ.get("ZOO_COMPILE", "1") == "0",
            "failed": _compile_state["failed"], "error": _compile_state.get("error")}


# ----------------------------------------------------------------------------------------------------------
# the Triton kernels: imported on first use, checked once per device


def _triton_module(device: torch.device):
    """zoo.kernels_triton if it runs on ``device`` (else None, the reason in ``_triton_state``)."""
    if _triton_state["module"] is None and _triton_state["error"] is None:
        try:
            from . import kernels_triton

            _triton_state["module"] = kernels_triton
        except Exception as exc:  # noqa: BLE001 - no triton (CPU-only torch), or a broken install
            _triton_state["error"] = f"{type(exc).__name__}: {exc}"
    mod = _triton_state["module"]
    if mod is None or (device.type == "cpu") != mod.INTERPRETED:
        return None
    return mod


def _triton_unavailable(device: torch.device) -> str:
    if _triton_state["error"] is not None:
        return f"Triton unavailable ({_triton_state['error']})"
    if device.type == "cpu":
        return "on the CPU the Triton kernels run only in Triton's interpreter (TRITON_INTERPRET=1 before importing it)"
    return "Triton was imported in interpreter mode (TRITON_INTERPRET=1): GPU kernels are not compiled"


def triton_usable(device: torch.device | str, warn: bool = False) -> bool:
    """Whether the ``triton`` backend runs on ``device``: Triton imports, and the kernels passed
    :func:`triton_check` there (run once per device and launch options, on first use; ``ZOO_TRITON=0``
    disables the backend). A failed check always warns (once); a missing Triton only if ``warn``."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    key = str(device)
    mod = _triton_module(device)
    tf32 = False
    if mod is not None:  # a new choice of precision (TF32 included) or block size is checked anew
        tf32 = mod._precision() == "tf32"
        key += f" ({mod.config_str(tf32=tf32)})"
    if os.environ.get("ZOO_TRITON", "1") == "0":
        why = "disabled by ZOO_TRITON=0"
    elif mod is None:
        why = _triton_unavailable(device)
    else:
        if key not in _triton_state["checked"]:
            _triton_state["checked"][key] = "running"  # the check itself runs the torch formulas
            _triton_state["checked"][key] = triton_check(device, tf32=tf32)
        why = _triton_state["checked"][key]
        if why in (None, "running"):
            return why is None
        warn = True  # kernels that fail their check are worth a warning even when nobody asked for them
    if warn and key not in _triton_state["warned"]:
        _triton_state["warned"].add(key)
        warnings.warn(f"zoo.kernels: triton backend not used on {key}: {why}; using torch", stacklevel=3)
    return False


def triton_info() -> dict:
    """Diagnostics of the Triton path: importable or not (and why), and the result of each device's check."""
    return {"available": _triton_state["module"] is not None, "error": _triton_state["error"],
            "checked": {k: ("ok" if v is None else v) for k, v in _triton_state["checked"].items()},
            "disabled": os.environ.get("ZOO_TRITON", "1") == "0"}


#: relative tolerance of :func:`triton_check` for the kernels with TF32 products (10-bit mantissas)
TF32_CHECK_TOL = 1e-2


def triton_check(device: torch.device | str, tol: float | None = None, tf32: bool = False) -> str | None:
    """Run the Triton forward and backward passes on a small random problem (3 networks, 12 steps, 128 trials,
    100 units, cue and post-cue steps, noise) on ``device`` and compare them with the ``torch`` formulas there,
    with TF32 off. ``tf32``: check the variant ``train_networks(tf32=True)`` runs (TF32 products, also in the
    torch GEMMs of the weight gradients) against the same exact reference, within ``TF32_CHECK_TOL``.
    Returns None if every state, tanh value, logit and gradient agrees within ``tol`` (relative to the largest
    value; default 2e-5), else what went wrong."""
    tol = tol if tol is not None else TF32_CHECK_TOL if tf32 else 2e-5
    device = torch.device(device)
    mod = _triton_module(device)
    if mod is None:
        return _triton_unavailable(device)
    gen = torch.Generator().manual_seed(1234)
    K, T, B, N, C = 3, 12, 128, 100, 6

    def rnd(*shape, scale):
        return (torch.randn(*shape, generator=gen) * scale).to(device)

    W, dc, bias = rnd(K, N, N, scale=0.15), rnd(K, B, N, scale=0.5), rnd(K, N, scale=0.1)
    W_out, b_out, DL = rnd(K, 2, N, scale=0.2), rnd(K, 2, scale=0.1), rnd(K, T, B, 2, scale=1e-3)
    u_cue = torch.nn.functional.one_hot(torch.arange(B, device=device) % 2, 2).float()
    keys = rng.keys_tensor([0, 7, 123456789], device)

    def torch_passes(R, Z, L):
        with use_backend("torch"):
            forward_pass(W, dc, bias, C, W_out, b_out, keys, 3, 0.05, 0.5, 0.1, R, Z, L)
            return Z.clone(), backward_pass(W, W_out, u_cue, C, 0.5, R, Z, DL)

    def triton_passes(R, Z, L):
        mod.forward_pass(W, dc, bias, C, W_out, b_out, keys, rng.counter(3, 0), 0.05, 0.5, 0.1, R, Z, L)
        Zc = Z.clone()
        g = mod.backward_steps(W, W_out, 0.5, Z, DL, R, u_cue, C)
        return Zc, g if "W_rec" in g else _backward_tail(W_out, u_cue, C, R, Z, DL, g["b"])

    prev_tf32 = torch.backends.cuda.matmul.allow_tf32
    out = {}
    try:
        for name, passes, flag in (("torch", torch_passes, False), ("triton", triton_passes, tf32)):
            torch.backends.cuda.matmul.allow_tf32 = flag  # the kernels' precision follows it
            R, Z, L = (torch.empty(s, device=device) for s in ((K, T + 1, B, N), (K, T, B, N), (K, T, B, 2)))
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


# ----------------------------------------------------------------------------------------------------------
# the C library: built on first use, cached on disk


def _cache_root() -> Path:
    if os.environ.get("ZOO_CACHE_DIR"):
        return Path(os.environ["ZOO_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rnn-stm-zoo"


def _cpu_signature() -> str:
    """What -march=native depends on: the CPU's model and feature flags."""
    sig = [platform.machine(), platform.system()]
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "model name", "Features", "CPU part")):
                    sig.append(line.strip())
                    if len(sig) > 6:
                        break
    except OSError:
        pass
    return "\n".join(sig)


def _compiler() -> str | None:
    cc = os.environ.get("CC")
    if cc and shutil.which(cc.split()[0]):
        return cc
    for name in ("cc", "gcc", "clang"):
        if shutil.which(name):
            return name
    return None


# no -ffast-math (no reassociation: the order of every sum is fixed by the source); fused multiply-adds where
# the CPU has them (-ffp-contract=fast: 10-30% faster polynomials; results then depend on the CPU's FMA support)
_BASE_FLAGS = ["-std=gnu11", "-O3", "-fPIC", "-shared", "-fno-fast-math", "-fno-math-errno", "-fno-trapping-math",
               "-ffp-contract=fast", "-Wno-psabi"]  # (-fno-fast-math first: it would reset -fno-math-errno)
_FLAG_SETS = (["-march=native", "-fopenmp"], ["-fopenmp"], ["-march=native"], [])


def _build(cc: str) -> Path:
    import fcntl  # POSIX only; elsewhere the import error means: no C backend

    src = _SRC.read_bytes()
    try:
        ver = subprocess.run([*cc.split(), "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        ver = ""
    errors = []
    root = _cache_root()
    for extra in _FLAG_SETS:
        flags = _BASE_FLAGS + extra
        key = hashlib.sha256(b"\0".join([src, ver.encode(), " ".join(flags).encode(),
                                         _cpu_signature().encode(), str(_ABI_VERSION).encode()])).hexdigest()[:16]
        folder = root / f"kernels-{key}"
        lib = folder / "libzoo_kernels.so"
        if lib.exists():
            return lib
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:  # read-only home: a private folder in the temp dir
            root = Path(tempfile.gettempdir()) / f"rnn-stm-zoo-{os.getuid()}"
            folder = root / f"kernels-{key}"
            lib = folder / "libzoo_kernels.so"
            if lib.exists():
                return lib
            folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".lock", "w") as lockf:
            fcntl.flock(lockf, fcntl.LOCK_EX)  # one compile per cache entry, whoever comes first
            try:
                if lib.exists():
                    return lib
                fd, tmp = tempfile.mkstemp(dir=folder, suffix=".so.tmp")
                os.close(fd)
                cmd = [*cc.split(), *flags, "-o", tmp, str(_SRC)]
                try:
                    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
                except (OSError, subprocess.SubprocessError) as exc:
                    errors.append(f"{' '.join(cmd)}: {exc}")
                    os.unlink(tmp)
                    continue
                if res.returncode != 0:
                    errors.append(f"{' '.join(cmd)}:\n{res.stderr.strip()[-2000:]}")
                    os.unlink(tmp)
                    continue
                (folder / "build.txt").write_text(" ".join(cmd) + "\n" + ver)
                os.replace(tmp, lib)
                return lib
            finally:
                fcntl.flock(lockf, fcntl.LOCK_UN)
    raise RuntimeError("could not compile the C kernels:\n" + "\n".join(errors))


class _FwdArgs(ctypes.Structure):
    _fields_ = [("K", ctypes.c_int64), ("B", ctypes.c_int64), ("N", ctypes.c_int64),
                ("pre", ctypes.c_void_p), ("pre_ks", ctypes.c_int64), ("r", ctypes.c_void_p), ("r_ks", ctypes.c_int64),
                ("keys", ctypes.c_void_p), ("base", ctypes.c_uint64), ("sigma", ctypes.c_float),
                ("alpha", ctypes.c_float), ("z", ctypes.c_void_p), ("z_ks", ctypes.c_int64),
                ("rn", ctypes.c_void_p), ("rn_ks", ctypes.c_int64), ("wout", ctypes.c_void_p),
                ("wout_ks", ctypes.c_int64), ("bout", ctypes.c_void_p), ("bout_ks", ctypes.c_int64),
                ("logit", ctypes.c_void_p), ("logit_ks", ctypes.c_int64), ("O", ctypes.c_int64),
                ("stream_z", ctypes.c_int)]


class _BwdArgs(ctypes.Structure):
    _fields_ = [("K", ctypes.c_int64), ("B", ctypes.c_int64), ("N", ctypes.c_int64), ("O", ctypes.c_int64),
                ("g", ctypes.c_void_p), ("g_ks", ctypes.c_int64), ("z", ctypes.c_void_p), ("z_ks", ctypes.c_int64),
                ("dl", ctypes.c_void_p), ("dl_ks", ctypes.c_int64), ("wout", ctypes.c_void_p),
                ("wout_ks", ctypes.c_int64), ("alpha", ctypes.c_float), ("h", ctypes.c_void_p),
                ("h_ks", ctypes.c_int64), ("gb", ctypes.c_void_p), ("gb_ks", ctypes.c_int64)]


class _FwdPassArgs(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int64) for n in ("K", "T", "B", "N", "O", "C")] + [
        ("W", ctypes.c_void_p), ("W_ks", ctypes.c_int64), ("drive_cue", ctypes.c_void_p), ("dc_ks", ctypes.c_int64),
        ("bias", ctypes.c_void_p), ("bias_ks", ctypes.c_int64), ("wout", ctypes.c_void_p), ("wout_ks", ctypes.c_int64),
        ("bout", ctypes.c_void_p), ("bout_ks", ctypes.c_int64), ("keys", ctypes.c_void_p),
        ("epoch_ctr", ctypes.c_uint64), ("sigma", ctypes.c_float), ("alpha", ctypes.c_float),
        ("init_std", ctypes.c_float), ("R", ctypes.c_void_p), ("R_ks", ctypes.c_int64), ("Z", ctypes.c_void_p),
        ("Z_ks", ctypes.c_int64), ("L", ctypes.c_void_p), ("L_ks", ctypes.c_int64)]


class _BwdPassArgs(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int64) for n in ("K", "T", "B", "N", "O", "C", "I")] + [
        ("W", ctypes.c_void_p), ("W_ks", ctypes.c_int64), ("wout", ctypes.c_void_p), ("wout_ks", ctypes.c_int64),
        ("U", ctypes.c_void_p), ("alpha", ctypes.c_float), ("R", ctypes.c_void_p), ("R_ks", ctypes.c_int64),
        ("Z", ctypes.c_void_p), ("Z_ks", ctypes.c_int64), ("DL", ctypes.c_void_p), ("DL_ks", ctypes.c_int64),
        ("gW", ctypes.c_void_p), ("gW_ks", ctypes.c_int64), ("gb", ctypes.c_void_p), ("gb_ks", ctypes.c_int64),
        ("gWin", ctypes.c_void_p), ("gWin_ks", ctypes.c_int64), ("gWout", ctypes.c_void_p),
        ("gWout_ks", ctypes.c_int64)]


_GEMM_MODES = {"own": 0, "blas": 1}


def _gemm_mode() -> int:
    """The C passes' matrix products: ours where compiled in (default), or BLAS with ``ZOO_C_GEMM=blas``."""
    mode = os.environ.get("ZOO_C_GEMM", "own").strip().lower() or "own"
    if mode not in _GEMM_MODES:
        warnings.warn(f"ZOO_C_GEMM={mode!r} is not one of {sorted(_GEMM_MODES)}; using 'own'", stacklevel=4)
        mode = "own"
    return _GEMM_MODES[mode]


def c_gemm(lib: ctypes.CDLL | None = None) -> str | None:
    """Which matrix products the C passes use: ``"own"``, ``"blas"`` (MKL's sgemm), or None (no C passes)."""
    lib = lib if lib is not None else c_library()
    if lib is None:
        return None
    return {1: "own", 2: "blas", 3: "none (profiling)"}.get(lib.zoo_gemm_kind())


def _torch_blas() -> tuple[int, int] | None:
    """Addresses of the BLAS sgemm_ (Fortran interface, 32-bit ints) and MKL_Set_Num_Threads_Local (C
    interface) in the libraries torch loaded (its MKL on x86-64 builds), or None."""
    if os.environ.get("ZOO_C_BLAS", "1") == "0":
        return None
    libdir = Path(torch.__file__).resolve().parent / "lib"
    for name in ("libtorch_cpu.so", "libtorch_cpu.dylib"):
        path = libdir / name
        if not path.exists():
            continue
        try:
            lib = ctypes.CDLL(str(path))
            sgemm = ctypes.cast(lib.sgemm_, ctypes.c_void_p).value
        except (OSError, AttributeError):
            continue
        try:  # the C interface (by value); the lower-case names are MKL's Fortran interface (by reference)
            local = ctypes.cast(lib.MKL_Set_Num_Threads_Local, ctypes.c_void_p).value
        except AttributeError:
            local = None
        return sgemm, local
    return None


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    i64, u64, f32, ci, P = ctypes.c_int64, ctypes.c_uint64, ctypes.c_float, ctypes.c_int, ctypes.c_void_p
    lib.zoo_abi_version.restype = ci
    lib.zoo_has_openmp.restype = ci
    lib.zoo_fwd_step_f32.argtypes = [ctypes.POINTER(_FwdArgs), ci]
    lib.zoo_fwd_step_f32.restype = None
    lib.zoo_normal_f32.argtypes = [i64, i64, P, u64, f32, ci, P, i64, ci]
    lib.zoo_normal_f32.restype = None
    lib.zoo_tanh_f32.argtypes = [i64, P, P]
    lib.zoo_tanh_f32.restype = None
    lib.zoo_bwd_step_f32.argtypes = [ctypes.POINTER(_BwdArgs), ci]
    lib.zoo_bwd_step_f32.restype = None
    lib.zoo_set_blas.argtypes = [P, P]
    lib.zoo_set_blas.restype = None
    lib.zoo_has_blas.restype = ci
    lib.zoo_has_own_gemm.restype = ci
    lib.zoo_set_gemm.argtypes = [ci]
    lib.zoo_set_gemm.restype = None
    lib.zoo_gemm_kind.restype = ci
    lib.zoo_matmul_f32.argtypes = [i64, ci, i64, i64, i64, P, i64, i64, P, i64, i64, P, i64, i64, ci, ci]
    lib.zoo_matmul_f32.restype = ci
    lib.zoo_fwd_pass_f32.argtypes = [ctypes.POINTER(_FwdPassArgs), ci]
    lib.zoo_fwd_pass_f32.restype = ci
    lib.zoo_bwd_pass_f32.argtypes = [ctypes.POINTER(_BwdPassArgs), ci]
    lib.zoo_bwd_pass_f32.restype = ci
    blas = _torch_blas()
    if blas is not None:
        lib.zoo_set_blas(*blas)
    lib.zoo_set_gemm(_gemm_mode())
    return lib


def c_library(warn: bool = False) -> ctypes.CDLL | None:
    """The compiled C kernels (built and loaded on first call), or None if they cannot be built."""
    if not _lib_state["tried"]:
        with _lock:
            if not _lib_state["tried"]:
                try:
                    if os.environ.get("ZOO_NO_CC"):
                        raise RuntimeError("disabled by ZOO_NO_CC")
                    cc = _compiler()
                    if cc is None:
                        raise RuntimeError("no C compiler found (set CC, or install gcc / clang)")
                    path = _build(cc)
                    lib = _declare(ctypes.CDLL(str(path)))
                    if lib.zoo_abi_version() != _ABI_VERSION:
                        raise RuntimeError(f"{path}: ABI version {lib.zoo_abi_version()} != {_ABI_VERSION}")
                    _lib_state.update(lib=lib, path=str(path))
                except Exception as exc:  # noqa: BLE001 - any failure means: use the torch backend
                    _lib_state["error"] = f"{type(exc).__name__}: {exc}"
                _lib_state["tried"] = True
    if _lib_state["lib"] is None and warn and not _lib_state.get("warned"):
        _lib_state["warned"] = True
        warnings.warn(f"zoo.kernels: C backend unavailable, using torch ({_lib_state['error']})", stacklevel=3)
    return _lib_state["lib"]


def c_backend_info() -> dict:
    """Diagnostics: whether the C kernels loaded, from where, built by which compiler (its ``--version``
    line), with OpenMP or not, whose matrix products the passes use, and the error if any."""
    lib = c_library()
    return {"available": lib is not None, "path": _lib_state["path"], "error": _lib_state["error"],
            "compiler": _compiler_version(_lib_state["path"]),
            "openmp": bool(lib.zoo_has_openmp()) if lib is not None else False,
            "blas": bool(lib.zoo_has_blas()) if lib is not None else False,
            "gemm": c_gemm(lib) if lib is not None else None}


def kernels_report(device: str | torch.device = "cpu") -> dict:
    """Build (or load) the C kernels now and say which backend trains on ``device``: what ``zoo kernels``
    prints. Only builders need the kernels: loading, simulating and analysing a zoo never compiles anything.
    Keys: ``requested`` (``ZOO_KERNELS`` or :func:`set_backend`), ``device``, ``backend`` (the one that
    trains there), ``c`` (:func:`c_backend_info`), ``compile`` (:func:`compile_info`), ``triton``
    (:func:`triton_info`, on CUDA after its check), and ``advice`` (one line when the C kernels are missing)."""
    dev = torch.device(device)
    c = c_backend_info()  # compiles on first use; the result is cached under _cache_root()
    report = {"requested": requested_backend(), "device": str(dev), "cache": str(_cache_root()), "c": c,
              "compile": compile_info(), "backend": backend_for(torch.empty(0, device=dev))}
    if dev.type == "cuda":
        triton_usable(dev)
        report["triton"] = triton_info()
    if not c["available"]:
        report["advice"] = (f"C kernels unavailable ({c['error']}): CPU training runs the torch backend, "
                            "slower, with results close to (not bitwise equal to) C-built zoos. Install a C "
                            "compiler (gcc) or set CC, then run `zoo kernels` again. Reading and analysing "
                            "zoos needs no compiler.")
    return report


def _compiler_version(lib_path: str | None) -> str | None:
    """The first line of ``cc --version`` recorded in build.txt beside the library (the C results' bits can
    depend on the compiler), or None."""
    try:
        lines = (Path(lib_path).parent / "build.txt").read_text().splitlines()
    except (OSError, TypeError):
        return None
    return lines[1].strip() if len(lines) > 1 and lines[1].strip() else None


def _block_ptr(t: torch.Tensor) -> tuple[int, int] | None:
    """(data pointer, stride of dim 0) if every t[k] is a contiguous float32 CPU block, else None."""
    if t.dtype != torch.float32 or t.device.type != "cpu":
        return None
    expect = 1
    for size, stride in zip(reversed(t.shape[1:]), reversed(t.stride()[1:]), strict=True):
        if size != 1 and stride != expect:
            return None
        expect *= size
    return t.data_ptr(), (t.stride(0) if t.dim() else 0)


def _c_threads() -> int:
    return max(1, torch.get_num_threads())


# ----------------------------------------------------------------------------------------------------------
# torch formulas (reference; also what torch.compile fuses on CUDA)


def _normal_from_counter(keys: torch.Tensor, base: torch.Tensor, n: int) -> torch.Tensor:
    """(K, n) standard normals, the formula of :func:`zoo.rng.normal` with the counter as a tensor."""
    pair = torch.arange(n // 2, dtype=torch.int64, device=keys.device) + base
    x = rng._mix(keys[:, None] + pair[None, :] * rng._signed(rng.GOLDEN))
    u1 = (rng._shr(x, 40).to(torch.float32) + 0.5) * 2.0**-24
    u2 = (rng._shr(x, 16) & 0xFFFFFF).to(torch.float32) * 2.0**-24
    rad = torch.sqrt(-2.0 * torch.log(u1))
    theta = (2.0 * math.pi) * u2
    return torch.stack((rad * torch.cos(theta), rad * torch.sin(theta)), dim=-1).reshape(keys.shape[0], n)


def _fwd_formula(pre, r, keys, base, noise_std, alpha, z_out, r_out, r_next=None) -> None:
    """noise_std, alpha: Python floats (eager) or 0-dim tensors on the device (compiled: no recompiles)."""
    eps = _normal_from_counter(keys, base, pre[0].numel()).view(pre.shape).to(pre.dtype)
    z = torch.tanh(pre + noise_std * eps)
    rn = r + alpha * (z - r)
    z_out.copy_(z)
    r_out.copy_(rn)
    if r_next is not None:
        r_next.copy_(rn)


def _init_formula(keys, base, std, out) -> None:
    out.copy_(torch.tanh(std * _normal_from_counter(keys, base, out[0].numel()).view(out.shape).to(out.dtype)))


def _bwd_formula(g, z, dl, w_out, alpha, h, bias_acc=None) -> None:
    d = ((z * z - 1.0) * g) * (-alpha)
    z.copy_(d)
    h.copy_(torch.baddbmm(g * (1.0 - alpha), dl, w_out))
    if bias_acc is not None:
        bias_acc[:, 0] += d.sum(1)


_scalars: dict = {}


def _scalar(value: float, like: torch.Tensor) -> torch.Tensor:
    """A cached 0-dim tensor holding ``value`` on ``like``'s device and dtype (compiled functions take scalars
    as tensors, so a new learning rule or tau does not trigger a recompilation)."""
    key = (float(value), like.device, like.dtype)
    t = _scalars.get(key)
    if t is None:
        t = _scalars[key] = torch.tensor(float(value), dtype=like.dtype, device=like.device)
    return t


def _compiled():
    """torch.compile'd versions of the formulas (built lazily; None if torch.compile is unusable)."""
    if _compile_state["fns"] is None and not _compile_state["failed"]:
        try:
            # dynamic shapes from the start: one graph per function for every K, T, B, N and stride
            opts = {"dynamic": True, "fullgraph": True}
            _compile_state["fns"] = {"fwd": torch.compile(_fwd_formula, **opts),
                                     "init": torch.compile(_init_formula, **opts),
                                     "bwd": torch.compile(_bwd_formula, **opts)}
        except Exception as exc:  # noqa: BLE001
            _compile_failed(exc)
    return _compile_state["fns"]


def _compile_failed(exc: BaseException) -> None:
    _compile_state["failed"] = True
    _compile_state["error"] = f"{type(exc).__name__}: {exc}"
    warnings.warn(f"zoo.kernels: torch.compile failed, using eager torch kernels ({_compile_state['error']})",
                  stacklevel=3)


def _aliased(args) -> bool:
    """Whether two (non-scalar) tensor arguments share memory (compiled functions must not get aliased views:
    AOTAutograd would rebuild them from the first call's offsets)."""
    ptrs = [a.untyped_storage().data_ptr() for a in args if isinstance(a, torch.Tensor) and a.dim() and a.numel()]
    return len(set(ptrs)) < len(ptrs)


def _run_compiled(name: str, eager, *args) -> None:
    fns = _compiled()
    if fns is not None and not _aliased(args):
        try:
            fns[name](*args)
            return
        except Exception as exc:  # noqa: BLE001 - fall back to eager, once and for all
            _compile_failed(exc)
    eager(*args)


def _counter_tensor(epoch: int, slot: int, device) -> torch.Tensor:
    return torch.tensor(rng.counter(epoch, slot), dtype=torch.int64, device=device)


# ----------------------------------------------------------------------------------------------------------
# public kernels


def noisy_tanh_step(pre: torch.Tensor, r: torch.Tensor, keys: torch.Tensor, epoch: int, slot: int,
                    noise_std: float, alpha: float, z_out: torch.Tensor, r_out: torch.Tensor,
                    counter: torch.Tensor | None = None, *, w_out: torch.Tensor | None = None,
                    b_out: torch.Tensor | None = None, logits_out: torch.Tensor | None = None,
                    stream_z: bool = False, r_next: torch.Tensor | None = None) -> None:
    """z_out = tanh(pre + noise_std * normal(keys, epoch, slot)); r_out = r + alpha * (z_out - r).

    pre, r, z_out, r_out: (K, B, N) (each [k] block contiguous for the C backend); keys: (K,) int64. ``pre``
    is scratch (the torch backend adds the noise into it). ``counter`` (optional) is
    ``rng.counter(epoch, slot)`` as a 0-dim int64 tensor on the device, to spare the compiled CUDA path a
    host-to-device copy. With ``w_out`` (K, O, N) and ``b_out`` (K, O), also writes the readout logits of the
    new state, ``logits_out`` (K, B, O) = b_out + r_out @ w_out^T. ``stream_z``: a hint that z_out is not
    read again soon (the C backend then bypasses the cache when writing it). ``r_next`` (optional) receives a
    second copy of r_out (the compiled path needs the state in a buffer that does not alias ``r``).
    """
    be = backend_for(pre)
    K, n = pre.shape[0], pre[0].numel()
    if n % 2:
        raise ValueError(f"noise draws come in pairs: B * N = {n} must be even")
    if be == "c":
        ptrs = [_block_ptr(t) for t in (pre, r, z_out, r_out)]
        lptrs = [_block_ptr(t) for t in (w_out, b_out, logits_out)] if w_out is not None else []
        if all(p is not None for p in ptrs + lptrs) and keys.is_contiguous() and pre.dim() == 3:
            (pp, pk), (rp, rk), (zp, zk), (op, ok) = ptrs
            a = _FwdArgs(K, pre.shape[1], pre.shape[2], pp, pk, rp, rk, keys.data_ptr(), rng.counter(epoch, slot),
                         float(noise_std), float(alpha), zp, zk, op, ok)
            if lptrs:
                (a.wout, a.wout_ks), (a.bout, a.bout_ks), (a.logit, a.logit_ks) = lptrs
                a.O = w_out.shape[1]
            a.stream_z = int(stream_z)
            c_library().zoo_fwd_step_f32(ctypes.byref(a), _c_threads())
            if r_next is not None:
                r_next.copy_(r_out)
            return
        be = "torch"
    if be == "compile":
        base = counter if counter is not None else _counter_tensor(epoch, slot, pre.device)
        _run_compiled("fwd", _fwd_formula, pre, r, keys, base, _scalar(noise_std, pre), _scalar(alpha, pre), z_out,
                      r_out, r_next)
    else:  # torch reference
        if noise_std:
            eps = rng.normal(keys, epoch, slot, tuple(pre.shape[1:])).to(pre.dtype)
            pre.add_(eps, alpha=noise_std)
        torch.tanh(pre, out=z_out)
        torch.add(r, torch.sub(z_out, r), alpha=alpha, out=r_out)
        if r_next is not None:
            r_next.copy_(r_out)
    if w_out is not None:
        torch.baddbmm(b_out[:, None, :], r_out, w_out.transpose(1, 2), out=logits_out)


def initial_state(keys: torch.Tensor, epoch: int, shape: tuple[int, int], std: float, dtype,
                  out: torch.Tensor | None = None) -> torch.Tensor:
    """(K, B, N) initial states tanh(std * z), z from slot 0 of each network's stream (into ``out`` if given)."""
    K = keys.shape[0]
    if out is None:
        out = torch.empty((K, *shape), dtype=dtype, device=keys.device)
    be = backend_for(out)
    n = math.prod(shape)
    if be == "c" and keys.is_contiguous() and _block_ptr(out) is not None:
        p, ks = _block_ptr(out)
        c_library().zoo_normal_f32(K, n, keys.data_ptr(), rng.counter(epoch, 0), float(std), 1, p, ks,
                                   _c_threads())
        return out
    if be == "compile":
        _run_compiled("init", _init_formula, keys, _counter_tensor(epoch, 0, keys.device),
                      _scalar(std, out), out)
        return out
    out.copy_(torch.tanh(std * rng.normal(keys, epoch, 0, shape).to(dtype)))
    return out


def bias_accumulator(K: int, B: int, N: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """Zeroed accumulator of the bias gradient (sum of dL/dpre over trials and steps) for :func:`backward_step`.

    Shape (K, P, N): P partial sums per network (one per chunk of rows in the C backend, so that threads never
    share one; 1 otherwise). :func:`bias_total` adds them up in a fixed order."""
    probe = torch.empty(0, dtype=dtype, device=device)
    P = -(-B // _ROWS) if backend_for(probe) == "c" else 1
    return torch.zeros((K, P, N), dtype=dtype, device=device)


def bias_total(acc: torch.Tensor) -> torch.Tensor:
    """(K, ...) total of (K, P, ...) partial sums, e.g. a :func:`bias_accumulator` (added in order: deterministic)."""
    total = acc[:, 0].clone()
    for p in range(1, acc.shape[1]):
        total += acc[:, p]
    return total


def backward_step(g: torch.Tensor, z: torch.Tensor, dlogit: torch.Tensor, w_out: torch.Tensor, alpha: float,
                  h_out: torch.Tensor, bias_acc: torch.Tensor | None = None) -> None:
    """Elementwise part of one backward step through r[t+1] = r[t] + alpha (tanh(pre[t]) - r[t]).

    g (K, B, N): dL/dr[t+1]; z (K, B, N): tanh(pre[t]), overwritten with dL/dpre[t] = alpha g (1 - z^2);
    dlogit (K, B, O) and w_out (K, O, N): the readout gradient at step t; h_out (K, B, N) receives
    (1 - alpha) g + dlogit @ w_out. The caller completes dL/dr[t] = h_out + dL/dpre[t] @ W_rec.
    ``bias_acc`` (from :func:`bias_accumulator`) accumulates the sum of dL/dpre[t] over trials.
    """
    be = backend_for(z)
    if be == "c":
        ptrs = [_block_ptr(t) for t in (g, z, dlogit, w_out, h_out)]
        gb = (0, 0) if bias_acc is None else _block_ptr(bias_acc)
        K, B, N = z.shape
        if all(p is not None for p in ptrs) and gb is not None and (
                bias_acc is None or bias_acc.shape[1] == -(-B // _ROWS)):
            (gp, gk), (zp, zk), (dp, dk), (wp, wk), (hp, hk) = ptrs
            a = _BwdArgs(K, B, N, dlogit.shape[2], gp, gk, zp, zk, dp, dk, wp, wk, float(alpha), hp, hk, *gb)
            c_library().zoo_bwd_step_f32(ctypes.byref(a), _c_threads())
            return
    elif be == "compile":
        _run_compiled("bwd", _bwd_formula, g, z, dlogit, w_out, _scalar(alpha, z), h_out, bias_acc)
        return
    z.mul_(z).sub_(1.0).mul_(g).mul_(-alpha)
    torch.baddbmm(g * (1.0 - alpha), dlogit, w_out, out=h_out)
    if bias_acc is not None:
        bias_acc[:, 0] += z.sum(1)


def _c_pass_ok(*tensors) -> bool:
    if backend_for(tensors[0]) != "c":
        return False
    lib = c_library()
    return lib is not None and c_gemm(lib) is not None and all(_block_ptr(t) is not None for t in tensors)


def _blocks_contiguous(t: torch.Tensor) -> bool:
    """Whether every t[k] is one contiguous block (any device)."""
    return t[0].is_contiguous() if t.shape[0] else True


def _triton_pass_ok(*tensors) -> bool:
    return (backend_for(tensors[0]) == "triton" and all(t.dtype == torch.float32 for t in tensors)
            and all(_blocks_contiguous(t) for t in tensors))


def forward_pass(W_rec: torch.Tensor, drive_cue: torch.Tensor, bias: torch.Tensor, cue_steps: int,
                 W_out: torch.Tensor, b_out: torch.Tensor, keys: torch.Tensor, epoch: int, noise_std: float,
                 alpha: float, init_std: float, R: torch.Tensor, Z: torch.Tensor, L: torch.Tensor) -> None:
    """Forward pass of K networks over a whole trial (training).

    W_rec (K, N, N); drive_cue (K, B, N) = W_in u_cue + b_in + b_rec: the drive during the first
    ``cue_steps`` steps; bias (K, N) = b_in + b_rec: the drive afterwards; W_out (K, O, N), b_out (K, O);
    keys (K,). Writes R (K, T + 1, B, N): r[0] = tanh(init_std z0) and the states r[1..T]; Z (K, T, B, N):
    the tanh values; L (K, T, B, O): the readout logits of r[0..T-1] (before the readout nonlinearity).

    The C backend (with its own matrix products or a BLAS) runs the whole pass in C, network by network, and
    the Triton backend in one kernel launch; the other backends loop over the time steps with batched matmuls
    and :func:`noisy_tanh_step`.
    """
    K, T1, B, N = R.shape
    T = T1 - 1
    if T + 1 > rng.MAX_SLOT:
        raise ValueError(f"trial of {T} steps is too long for the noise counter (at most {rng.MAX_SLOT - 1})")
    args = (W_rec, drive_cue.contiguous(), bias.contiguous(), W_out, b_out, R, Z, L)
    if K and _triton_pass_ok(*args) and keys.is_contiguous():
        _triton_module(R.device).forward_pass(*args[:3], cue_steps, W_out, b_out, keys, rng.counter(epoch, 0),
                                              noise_std, alpha, init_std, R, Z, L)
        return
    if K and _c_pass_ok(*args) and keys.is_contiguous() and (B * N) % 2 == 0:
        ptrs = [_block_ptr(t) for t in args]
        a = _FwdPassArgs(K, T, B, N, W_out.shape[1], cue_steps, *ptrs[0], *ptrs[1], *ptrs[2], *ptrs[3], *ptrs[4],
                         keys.data_ptr(), rng.counter(epoch, 0), float(noise_std), float(alpha), float(init_std),
                         *ptrs[5], *ptrs[6], *ptrs[7])
        err = c_library().zoo_fwd_pass_f32(ctypes.byref(a), _c_threads())
        if err == 0:
            return
        warnings.warn(f"zoo.kernels: C forward pass failed ({err}); using the step-by-step path", stacklevel=2)
    pre = torch.empty((K, B, N), dtype=R.dtype, device=R.device)
    initial_state(keys, epoch, (B, N), init_std, R.dtype, out=R[:, 0])
    torch.baddbmm(b_out[:, None, :], R[:, 0], W_out.transpose(1, 2), out=L[:, 0])
    W_rec_T = W_rec.transpose(1, 2)
    bias3 = bias[:, None, :]
    # the compiled (CUDA) path reads the state from ping-pong buffers that do not alias R
    pingpong = backend_for(pre) == "compile"
    if pingpong:
        r_cur, r_nxt = R[:, 0].clone(), torch.empty_like(pre)
        ctr = torch.tensor([rng.counter(epoch, s) for s in range(T + 1)], device=R.device)
    for t in range(T):
        r_t = r_cur if pingpong else R[:, t]
        torch.baddbmm(drive_cue if t < cue_steps else bias3, r_t, W_rec_T, out=pre)
        nxt = t + 1 < T
        noisy_tanh_step(pre, r_t, keys, epoch, t + 1, noise_std, alpha, Z[:, t], R[:, t + 1],
                        counter=ctr[t + 1] if pingpong else None, w_out=W_out if nxt else None,
                        b_out=b_out if nxt else None, logits_out=L[:, t + 1] if nxt else None, stream_z=True,
                        r_next=r_nxt if pingpong else None)
        if pingpong:
            r_cur, r_nxt = r_nxt, r_cur


def backward_pass(W_rec: torch.Tensor, W_out: torch.Tensor, u_cue: torch.Tensor, cue_steps: int, alpha: float,
                  R: torch.Tensor, Z: torch.Tensor, DL: torch.Tensor) -> dict[str, torch.Tensor]:
    """Backward pass through time of K networks, after :func:`forward_pass` and the loss.

    u_cue (B, I): the input during the cue steps (0 afterwards); DL (K, T, B, O): dL/dlogits. R and Z as
    written by the forward pass (Z may be overwritten). Returns the gradients ``W_rec`` (K, N, N), ``b``
    (K, N) (of b_in and of b_rec alike), ``W_in`` (K, N, I) and ``W_out`` (K, O, N); the readout bias
    gradient is DL summed over steps and trials.
    """
    K, T1, B, N = R.shape
    T, n_out, dtype, dev = T1 - 1, W_out.shape[1], R.dtype, R.device
    if K and _c_pass_ok(W_rec, W_out, R, Z, DL) and u_cue.is_contiguous() and u_cue.dtype == torch.float32:
        n_in = u_cue.shape[1]
        out = {"W_rec": torch.empty((K, N, N)), "b": torch.empty((K, N)), "W_in": torch.empty((K, N, n_in)),
               "W_out": torch.empty((K, n_out, N))}
        ptrs = [_block_ptr(t) for t in (W_rec, W_out)]
        optrs = [_block_ptr(out[n]) for n in ("W_rec", "b", "W_in", "W_out")]
        a = _BwdPassArgs(K, T, B, N, n_out, cue_steps, n_in, *ptrs[0], *ptrs[1], u_cue.data_ptr(), float(alpha),
                         *_block_ptr(R), *_block_ptr(Z), *_block_ptr(DL), *optrs[0], *optrs[1], *optrs[2], *optrs[3])
        err = c_library().zoo_bwd_pass_f32(ctypes.byref(a), _c_threads())
        if err == 0:
            return out
        warnings.warn(f"zoo.kernels: C backward pass failed ({err}); using the step-by-step path", stacklevel=2)
    if K and _triton_pass_ok(W_rec, W_out, R, Z, DL):
        out = _triton_module(R.device).backward_steps(W_rec, W_out, alpha, Z, DL, R, u_cue, cue_steps)
        if "W_rec" in out:  # the kernel computed the weight gradients too
            return out
        return _backward_tail(W_out, u_cue, cue_steps, R, Z, DL, out["b"])
    g = torch.zeros((K, B, N), dtype=dtype, device=dev)  # dL/dr[t+1]
    h = torch.empty_like(g)
    gb_acc = bias_accumulator(K, B, N, dtype, dev)
    for t in range(T - 1, -1, -1):
        # Z[:, t] <- dL/dpre[t] = a g (1 - z^2); h <- (1 - a) g + dlogit[t] @ W_out (readout gradient wrt r[t])
        backward_step(g, Z[:, t], DL[:, t], W_out, alpha, h, gb_acc)
        if t:  # dL/dr[t] = h + dL/dpre[t] @ W_rec (not needed for r[0])
            h.baddbmm_(Z[:, t], W_rec)
            g, h = h, g
    return _backward_tail(W_out, u_cue, cue_steps, R, Z, DL, bias_total(gb_acc))


def _backward_tail(W_out, u_cue, cue_steps, R, D, DL, g_bias) -> dict[str, torch.Tensor]:
    """The weight gradients as large batched GEMMs, once D (K, T, B, N) holds dL/dpre at every step."""
    K, T, B, N = D.shape
    Rf = R[:, :T].reshape(K, T * B, N)  # (K, TB, N) states read out at steps 0..T-1 (a view)
    Df = D.view(K, T * B, N)  # (K, TB, N) dL/dpre
    dlogit = DL.reshape(K, T * B, W_out.shape[1])
    return {"W_rec": torch.bmm(Df.transpose(1, 2), Rf), "b": g_bias,
            "W_in": torch.matmul(D[:, :cue_steps].sum(1).transpose(1, 2), u_cue.to(D.dtype)),
            "W_out": torch.bmm(dlogit.transpose(1, 2), Rf)}


def normal(keys: torch.Tensor, epoch: int, slot: int, shape: tuple[int, ...]) -> torch.Tensor:
    """``rng.normal`` computed by the active backend (float32; for tests and diagnostics)."""
    n = math.prod(shape)
    probe = torch.empty(0, dtype=torch.float32, device=keys.device)
    if backend_for(probe) == "c" and n % 2 == 0:
        out = torch.empty((keys.shape[0], n), dtype=torch.float32)
        c_library().zoo_normal_f32(keys.shape[0], n, keys.contiguous().data_ptr(), rng.counter(epoch, slot), 1.0, 0,
                                   out.data_ptr(), n, _c_threads())
        return out.view(keys.shape[0], *shape)
    return rng.normal(keys, epoch, slot, shape)


def tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh computed by the active backend (for tests of the C approximation)."""
    if backend_for(x) == "c" and x.is_contiguous():
        out = torch.empty_like(x)
        c_library().zoo_tanh_f32(x.numel(), x.data_ptr(), out.data_ptr())
        return out
    return torch.tanh(x)


def matmul(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None, *, trans_a: bool = False,
           accumulate: bool = False) -> torch.Tensor:
    """Batched ``op(a) @ b`` (``op(a) = a.mT`` if ``trans_a``) with the C passes' matrix products (ours, or
    MKL's: :func:`c_gemm`), into ``out`` (added to it if ``accumulate``); torch's where the C passes cannot
    run. a: (nb, M, K) or (nb, K, M), b: (nb, K, N), out: (nb, M, N); float32, contiguous. For tests and
    benchmarks of the products the trainer uses."""
    nb = a.shape[0]
    M, K = (a.shape[2], a.shape[1]) if trans_a else (a.shape[1], a.shape[2])
    if b.shape[:2] != (nb, K) or (out is not None and out.shape != (nb, M, b.shape[2])):
        raise ValueError(f"shapes do not fit: a {tuple(a.shape)} (trans_a={trans_a}), b {tuple(b.shape)}, "
                         f"out {None if out is None else tuple(out.shape)}")
    N = b.shape[2]
    if out is None:
        out = torch.zeros((nb, M, N), dtype=a.dtype, device=a.device)
    lib = c_library()
    if _c_pass_ok(a, b, out) and all(t.is_contiguous() for t in (a, b, out)):
        err = lib.zoo_matmul_f32(nb, int(trans_a), M, N, K, a.data_ptr(), a.stride(0), a.shape[2], b.data_ptr(),
                                 b.stride(0), N, out.data_ptr(), out.stride(0), N, int(accumulate), _c_threads())
        if err == 0:
            return out
    prod = torch.bmm(a.mT if trans_a else a, b)
    return out.add_(prod) if accumulate else out.copy_(prod)


__all__ = ["BACKENDS", "kernels_report", "backend_for", "backward_pass", "backward_step", "bias_accumulator", "bias_total",
           "c_backend_info", "c_gemm", "c_library", "compile_info", "forward_pass", "initial_state", "matmul",
           "noisy_tanh_step", "normal", "requested_backend", "set_backend", "tanh", "triton_check", "triton_info",
           "triton_usable", "use_backend"]

