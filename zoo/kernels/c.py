"""The ``c`` backend: C kernels (``zoo/_csrc/zoo_kernels.c``) for float32 tensors on the CPU, through ctypes.

One pass per step draws the noise (SplitMix64 + Box-Muller, exactly the formula of :mod:`zoo.rng`), applies
tanh, the leaky update and the readout; the whole forward and backward passes run in C, one network at a time,
with matrix products of our own on x86-64 CPUs with AVX2 + FMA (16-float register tiles where the CPU has
AVX-512, the same bits; ``ZOO_C_GEMM=own8``: 8-float tiles, ``ZOO_C_GEMM=blas``: MKL's ``sgemm``) or
else with MKL's (looked up in ``libtorch_cpu``; ``ZOO_C_BLAS=0`` disables it). The library is compiled on
first use with the system C compiler (``$CC``, else cc, gcc or clang) into the per-user cache
(:func:`zoo.cache.cache_root`, ``kernels-<hash>/``) and loaded once per process (``STATE.c``); the
settings ``no_cc``, ``c_gemm`` and ``c_blas`` apply when it is loaded. It splits work over
``torch.get_num_threads()`` threads with OpenMP.

The wrappers at the bottom run one kernel if its tensors fit (float32 CPU tensors whose every [k] block is
contiguous) and say whether they did; :mod:`zoo.kernels.dispatch` decides when to call them.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from .. import cache, rng
from .. import settings as _settings
from ..log import logger
from .state import STATE

ABI_VERSION = 9
#: rows per unit of parallel work in the C kernels (bias-gradient partial sums are kept per such chunk)
ROWS = 16
SRC = Path(__file__).resolve().parents[1] / "_csrc" / "zoo_kernels.c"


# ----------------------------------------------------------------------------------------------------------
# building: compiler, flags, cache folder


def cpu_signature() -> str:
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


def compiler() -> str | None:
    """The C compiler: ``$CC`` if it exists, else the first of cc, gcc, clang on the PATH (None: none)."""
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


def build(cc: str, root: Path) -> Path:
    """Compile the kernels with ``cc`` into ``root/kernels-<hash>/`` (once per source, compiler, flags and
    CPU; under a file lock), trying the flag sets in turn; the library's path."""
    import fcntl  # POSIX only; elsewhere the import error means: no C backend

    src = SRC.read_bytes()
    try:
        ver = subprocess.run([*cc.split(), "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        ver = ""
    errors = []
    for extra in _FLAG_SETS:
        flags = _BASE_FLAGS + extra
        key = hashlib.sha256(b"\0".join([src, ver.encode(), " ".join(flags).encode(),
                                         cpu_signature().encode(), str(ABI_VERSION).encode()])).hexdigest()[:16]
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
                cmd = [*cc.split(), *flags, "-o", tmp, str(SRC)]
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


# ----------------------------------------------------------------------------------------------------------
# the library: ctypes declarations, MKL lookup, loading


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


#: ``ZOO_C_GEMM`` -> the mode ``zoo_set_gemm`` takes (``own``: 16-float tiles where compiled in, else 8-float;
#: ``own8``: 8-float tiles, the same bits, to compare)
GEMM_MODES = {"own": 0, "blas": 1, "own8": 3}


def gemm_mode(settings: _settings.Settings | None = None) -> int:
    """The C passes' matrix products: ours where compiled in (default), or BLAS with ``ZOO_C_GEMM=blas``."""
    return GEMM_MODES[(settings or _settings.current()).c_gemm]


def c_gemm(lib: ctypes.CDLL | None = None) -> str | None:
    """Which matrix products the C passes use: ``"own"``, ``"blas"`` (MKL's sgemm), or None (no C passes)."""
    lib = lib if lib is not None else c_library()
    if lib is None:
        return None
    return {1: "own", 2: "blas", 3: "none (profiling)", 4: "own"}.get(lib.zoo_gemm_kind())


def c_gemm_tiles(lib: ctypes.CDLL | None = None) -> str | None:
    """The register tiles of our own matrix products now: ``"16-float"`` (AVX-512), ``"8-float"`` (AVX2, or
    ``ZOO_C_GEMM=own8``), or None (BLAS or no C passes). Both give the same bits."""
    lib = lib if lib is not None else c_library()
    if lib is None:
        return None
    return {1: "8-float", 4: "16-float"}.get(lib.zoo_gemm_kind())


def torch_blas(settings: _settings.Settings | None = None) -> tuple[int, int] | None:
    """Addresses of the BLAS sgemm_ (Fortran interface, 32-bit ints) and MKL_Set_Num_Threads_Local (C
    interface) in the libraries torch loaded (its MKL on x86-64 builds), or None (also with ``ZOO_C_BLAS=0``)."""
    if not (settings or _settings.current()).c_blas:
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


def _declare(lib: ctypes.CDLL, settings: _settings.Settings) -> ctypes.CDLL:
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
    lib.zoo_has_gemm16.restype = ci
    lib.zoo_set_gemm.argtypes = [ci]
    lib.zoo_set_gemm.restype = None
    lib.zoo_gemm_kind.restype = ci
    lib.zoo_matmul_f32.argtypes = [i64, ci, i64, i64, i64, P, i64, i64, P, i64, i64, P, i64, i64, ci, ci]
    lib.zoo_matmul_f32.restype = ci
    lib.zoo_fwd_pass_f32.argtypes = [ctypes.POINTER(_FwdPassArgs), ci]
    lib.zoo_fwd_pass_f32.restype = ci
    lib.zoo_bwd_pass_f32.argtypes = [ctypes.POINTER(_BwdPassArgs), ci]
    lib.zoo_bwd_pass_f32.restype = ci
    blas = torch_blas(settings)
    if blas is not None:
        lib.zoo_set_blas(*blas)
    lib.zoo_set_gemm(gemm_mode(settings))
    return lib


def c_library(warn: bool = False, settings: _settings.Settings | None = None) -> ctypes.CDLL | None:
    """The compiled C kernels (built and loaded on first call, with these settings), or None if they cannot be
    built (``ZOO_NO_CC=1``, no compiler, a failed build)."""
    st = STATE.c
    if not st.tried:
        with STATE.lock:
            if not st.tried:
                s = settings or _settings.current()
                try:
                    if s.no_cc:
                        raise RuntimeError("disabled by ZOO_NO_CC")
                    cc = compiler()
                    if cc is None:
                        raise RuntimeError("no C compiler found (set CC, or install gcc / clang)")
                    path = build(cc, cache.cache_root(s))
                    lib = _declare(ctypes.CDLL(str(path)), s)
                    if lib.zoo_abi_version() != ABI_VERSION:
                        raise RuntimeError(f"{path}: ABI version {lib.zoo_abi_version()} != {ABI_VERSION}")
                    st.lib, st.path = lib, str(path)
                except Exception as exc:  # noqa: BLE001 - any failure means: use the torch backend
                    st.error = f"{type(exc).__name__}: {exc}"
                st.tried = True
    if st.lib is None and warn and not st.warned:
        st.warned = True
        logger().warning(f"warning: zoo.kernels: C backend unavailable, using torch ({st.error})")
    return st.lib


def c_backend_info(settings: _settings.Settings | None = None) -> dict:
    """Diagnostics: whether the C kernels loaded, from where, built by which compiler (its ``--version``
    line), with OpenMP or not, whose matrix products the passes use (and our products' register tiles), and
    the error if any."""
    lib = c_library(settings=settings)
    st = STATE.c
    return {"available": lib is not None, "path": st.path, "error": st.error,
            "compiler": compiler_version(st.path),
            "openmp": bool(lib.zoo_has_openmp()) if lib is not None else False,
            "blas": bool(lib.zoo_has_blas()) if lib is not None else False,
            "gemm": c_gemm(lib) if lib is not None else None,
            "gemm_tiles": c_gemm_tiles(lib) if lib is not None else None}


def compiler_version(lib_path: str | None) -> str | None:
    """The first line of ``cc --version`` recorded in build.txt beside the library (the C results' bits can
    depend on the compiler), or None."""
    try:
        lines = (Path(lib_path).parent / "build.txt").read_text().splitlines()
    except (OSError, TypeError):
        return None
    return lines[1].strip() if len(lines) > 1 and lines[1].strip() else None


def block_ptr(t: torch.Tensor) -> tuple[int, int] | None:
    """(data pointer, stride of dim 0) if every t[k] is a contiguous float32 CPU block, else None."""
    if t.dtype != torch.float32 or t.device.type != "cpu":
        return None
    expect = 1
    for size, stride in zip(reversed(t.shape[1:]), reversed(t.stride()[1:]), strict=True):
        if size != 1 and stride != expect:
            return None
        expect *= size
    return t.data_ptr(), (t.stride(0) if t.dim() else 0)


def threads() -> int:
    return max(1, torch.get_num_threads())


# ----------------------------------------------------------------------------------------------------------
# the kernels: each runs if its tensors fit and returns whether it did (the library must be loaded)


def fwd_step(pre, r, keys, epoch, slot, noise_std, alpha, z_out, r_out, w_out=None, b_out=None, logits_out=None,
             stream_z=False, r_next=None) -> bool:
    """:func:`zoo.kernels.noisy_tanh_step` with the readout (if ``w_out``) in one pass."""
    ptrs = [block_ptr(t) for t in (pre, r, z_out, r_out)]
    lptrs = [block_ptr(t) for t in (w_out, b_out, logits_out)] if w_out is not None else []
    if not (all(p is not None for p in ptrs + lptrs) and keys.is_contiguous() and pre.dim() == 3):
        return False
    (pp, pk), (rp, rk), (zp, zk), (op, ok) = ptrs
    a = _FwdArgs(pre.shape[0], pre.shape[1], pre.shape[2], pp, pk, rp, rk, keys.data_ptr(), rng.counter(epoch, slot),
                 float(noise_std), float(alpha), zp, zk, op, ok)
    if lptrs:
        (a.wout, a.wout_ks), (a.bout, a.bout_ks), (a.logit, a.logit_ks) = lptrs
        a.O = w_out.shape[1]
    a.stream_z = int(stream_z)
    c_library().zoo_fwd_step_f32(ctypes.byref(a), threads())
    if r_next is not None:
        r_next.copy_(r_out)
    return True


def initial_state(keys, epoch, n, std, out) -> bool:
    """tanh(std * normal(slot 0)) into ``out`` (K, ...) of n values per network."""
    p = block_ptr(out)
    if p is None or not keys.is_contiguous():
        return False
    c_library().zoo_normal_f32(keys.shape[0], n, keys.data_ptr(), rng.counter(epoch, 0), float(std), 1, *p, threads())
    return True


def bwd_step(g, z, dlogit, w_out, alpha, h_out, bias_acc=None) -> bool:
    """:func:`zoo.kernels.backward_step` (``bias_acc`` with one partial sum per :data:`ROWS` trials)."""
    ptrs = [block_ptr(t) for t in (g, z, dlogit, w_out, h_out)]
    gb = (0, 0) if bias_acc is None else block_ptr(bias_acc)
    K, B, N = z.shape
    if not (all(p is not None for p in ptrs) and gb is not None
            and (bias_acc is None or bias_acc.shape[1] == -(-B // ROWS))):
        return False
    (gp, gk), (zp, zk), (dp, dk), (wp, wk), (hp, hk) = ptrs
    a = _BwdArgs(K, B, N, dlogit.shape[2], gp, gk, zp, zk, dp, dk, wp, wk, float(alpha), hp, hk, *gb)
    c_library().zoo_bwd_step_f32(ctypes.byref(a), threads())
    return True


def passes_ok(*tensors) -> bool:
    """Whether the whole C passes can run on these tensors (library loaded, with matrix products)."""
    lib = c_library()
    return lib is not None and c_gemm(lib) is not None and all(block_ptr(t) is not None for t in tensors)


def forward_pass(W_rec, drive_cue, bias, cue_steps, W_out, b_out, keys, epoch, noise_std, alpha, init_std,
                 R, Z, L) -> int:
    """The whole forward pass in C (shapes as :func:`zoo.kernels.forward_pass`; :func:`passes_ok` first);
    0 or the library's error code."""
    K, T1, B, N = R.shape
    ptrs = [block_ptr(t) for t in (W_rec, drive_cue, bias, W_out, b_out, R, Z, L)]
    a = _FwdPassArgs(K, T1 - 1, B, N, W_out.shape[1], cue_steps, *ptrs[0], *ptrs[1], *ptrs[2], *ptrs[3], *ptrs[4],
                     keys.data_ptr(), rng.counter(epoch, 0), float(noise_std), float(alpha), float(init_std),
                     *ptrs[5], *ptrs[6], *ptrs[7])
    return c_library().zoo_fwd_pass_f32(ctypes.byref(a), threads())


def backward_pass(W_rec, W_out, u_cue, cue_steps, alpha, R, Z, DL) -> dict[str, torch.Tensor] | None:
    """The whole backward pass in C (as :func:`zoo.kernels.backward_pass`; :func:`passes_ok` first): the
    gradients, or None with a warning if the library failed."""
    K, T1, B, N = R.shape
    n_out, n_in = W_out.shape[1], u_cue.shape[1]
    out = {"W_rec": torch.empty((K, N, N)), "b": torch.empty((K, N)), "W_in": torch.empty((K, N, n_in)),
           "W_out": torch.empty((K, n_out, N))}
    ptrs = [block_ptr(t) for t in (W_rec, W_out)]
    optrs = [block_ptr(out[n]) for n in ("W_rec", "b", "W_in", "W_out")]
    a = _BwdPassArgs(K, T1 - 1, B, N, n_out, cue_steps, n_in, *ptrs[0], *ptrs[1], u_cue.data_ptr(), float(alpha),
                     *block_ptr(R), *block_ptr(Z), *block_ptr(DL), *optrs[0], *optrs[1], *optrs[2], *optrs[3])
    err = c_library().zoo_bwd_pass_f32(ctypes.byref(a), threads())
    if err == 0:
        return out
    report_failure("backward", err)
    return None


def report_failure(which: str, err: int) -> None:
    """Log that the C ``which`` pass failed with ``err`` (once per process and error) before the step-by-step
    path takes over."""
    message = f"warning: zoo.kernels: C {which} pass failed ({err}); using the step-by-step path"
    if message not in STATE.c.failures:
        STATE.c.failures.add(message)
        logger().warning(message)


def normal(keys, epoch, slot, n) -> torch.Tensor:
    """(K, n) draws of ``rng.normal`` computed in C (n even)."""
    out = torch.empty((keys.shape[0], n), dtype=torch.float32)
    c_library().zoo_normal_f32(keys.shape[0], n, keys.contiguous().data_ptr(), rng.counter(epoch, slot), 1.0, 0,
                               out.data_ptr(), n, threads())
    return out


def tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh of a contiguous float32 CPU tensor, the C kernels' approximation."""
    out = torch.empty_like(x)
    c_library().zoo_tanh_f32(x.numel(), x.data_ptr(), out.data_ptr())
    return out


def matmul(a, b, out, trans_a: bool, accumulate: bool) -> bool:
    """``out (+)= op(a) @ b`` with the passes' matrix products (contiguous float32 CPU tensors); whether it ran."""
    if not (passes_ok(a, b, out) and all(t.is_contiguous() for t in (a, b, out))):
        return False
    nb, M, N = out.shape
    K = a.shape[1] if trans_a else a.shape[2]
    err = c_library().zoo_matmul_f32(nb, int(trans_a), M, N, K, a.data_ptr(), a.stride(0), a.shape[2], b.data_ptr(),
                                     b.stride(0), N, out.data_ptr(), out.stride(0), N, int(accumulate), threads())
    return err == 0
