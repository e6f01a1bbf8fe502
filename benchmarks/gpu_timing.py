"""What ``bench_gpu.py`` measures with: the device (CUDA, or the CPU in a dry run), the results file, timed
training runs, the largest batch that fits and the kernels' epoch time.

``RESULTS`` is the one results record of a run, rewritten atomically by :func:`save` after every stage;
:func:`log` prints with the seconds since the start.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import statistics
import time

import numpy as np
import torch

from zoo import kernels
from zoo.config import NetConfig
from zoo.model import PARAM_NAMES, init_state_dict
from zoo.train import default_batch_size, train_networks, training_bytes_per_net

FLOP_PER_NET_STEP = 3 * 2 * 128 * 100 * 100
T0 = time.perf_counter()
RESULTS: dict = {}
DEV = torch.device("cuda")
#: --dry-run-cpu: the whole script on the CPU with tiny sizes (pretends that batches above this K do not fit)
DRY_LIMIT = 48


def use_cpu() -> None:
    """The dry run: measure on the CPU (tiny sizes; the numbers mean nothing)."""
    global DEV
    DEV = torch.device("cpu")


def dry() -> bool:
    return DEV.type != "cuda"


def sync() -> None:
    if not dry():
        torch.cuda.synchronize()


def reset_peak() -> None:
    if not dry():
        torch.cuda.reset_peak_memory_stats()


def peak_mem() -> int:
    return torch.cuda.max_memory_allocated() if not dry() else 0


def free_cache() -> None:
    gc.collect()
    if not dry():
        torch.cuda.empty_cache()


OOM = (torch.cuda.OutOfMemoryError, MemoryError)


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f} s] {msg}", flush=True)


def out_path() -> str:
    out = os.environ.get("OUT")
    if not out:
        return os.path.abspath("gpu_results.json")
    if os.path.isdir(out) or not out.endswith(".json"):  # a folder (created if need be)
        os.makedirs(out, exist_ok=True)
        return os.path.join(out, "gpu_results.json")
    return out


def save() -> None:
    """Rewrite the results file atomically (a time-out never leaves half a file)."""
    RESULTS["elapsed_s"] = time.perf_counter() - T0
    path = out_path()
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(RESULTS, f, indent=2, default=str)
    os.replace(tmp, path)


def family_config(family: str, delay_ms: int, seed: int = 0, lr: float = 0.01, epochs: int = 4) -> NetConfig:
    """A representative network of each paper family (fields as in the family definitions)."""
    if family in ("nopost", "nopost-narrow"):
        return NetConfig(family, seed=seed, lr=lr, delay_ms=delay_ms, epochs=epochs)
    if family == "post":
        return NetConfig(family, seed=seed, lr=lr, delay_ms=delay_ms, epochs=epochs, post_ms=30)
    if family == "longtau":
        return NetConfig(family, seed=seed, lr=lr, delay_ms=delay_ms, epochs=epochs, tau_ms=20.0)
    if family == "nomemory":  # delay_ms here = the response length
        return NetConfig(family, seed=seed, lr=lr, delay_ms=0, epochs=epochs, response_ms=delay_ms, nomemory=True,
                         diverge_loss=100.0)
    raise ValueError(family)


def stacked_init(cfg: NetConfig, K: int, dev) -> dict[str, torch.Tensor]:
    """K copies of one network's initial weights (skips K separate CPU initialisations in timing runs)."""
    sd = init_state_dict(cfg.seed, cfg.model_config())
    return {n: sd[n].to(dev).expand(K, *sd[n].shape).clone() for n in PARAM_NAMES}


def max_weight_diff(a, b) -> float:
    return max((a.weights[n] - b.weights[n]).abs().max().item() for n in PARAM_NAMES)


def max_loss_diff(a, b) -> float:
    return max(float(np.max(np.abs(x - y) / np.abs(y))) for x, y in zip(a.curves["loss"], b.curves["loss"], strict=True))


def kernel_epoch_s(K: int, T: int = 56, reps: int = 2) -> float:
    """Seconds per epoch of the active backend's forward + backward passes alone (random weights; K networks)."""
    B, N, C = 128, 100, 6
    g = torch.Generator(device=DEV).manual_seed(0)
    W = torch.randn(K, N, N, device=DEV, generator=g) * 0.1
    dc, bias = torch.randn(K, B, N, device=DEV, generator=g), torch.randn(K, N, device=DEV, generator=g) * 0.1
    W_out, b_out = torch.randn(K, 2, N, device=DEV, generator=g) * 0.1, torch.zeros(K, 2, device=DEV)
    keys = torch.arange(K, device=DEV, dtype=torch.int64)
    R, Z = torch.empty(K, T + 1, B, N, device=DEV), torch.empty(K, T, B, N, device=DEV)
    L, DL = torch.empty(K, T, B, 2, device=DEV), torch.randn(K, T, B, 2, device=DEV, generator=g) * 1e-3
    u = torch.nn.functional.one_hot(torch.arange(B, device=DEV) % 2, 2).float()
    times = []
    for i in range(reps + 1):  # the first one compiles
        sync()
        t = time.perf_counter()
        kernels.forward_pass(W, dc, bias, C, W_out, b_out, keys, i, 1e-3, 0.5, 0.1, R, Z, L)
        kernels.backward_pass(W, W_out, u, C, 0.5, R, Z, DL)
        sync()
        times.append(time.perf_counter() - t)
    del W, dc, R, Z, L, DL
    free_cache()
    return min(times[1:])


def timed_run(cfg: NetConfig, K: int, *, warm: int = 1, timed: int = 3, tf32: bool = False) -> dict:
    """Train K copies of ``cfg`` (distinct seeds -> distinct noise) for warm + timed epochs; time the timed ones."""
    dev = DEV
    if dry() and K > DRY_LIMIT:
        raise torch.cuda.OutOfMemoryError(f"dry run: pretending that {K} > {DRY_LIMIT} networks do not fit")
    cfgs = [dataclasses.replace(cfg, seed=i, epochs=warm + timed) for i in range(K)]
    stamps: list[float] = []

    def progress(_k):
        sync()
        stamps.append(time.perf_counter())

    reset_peak()
    t0 = time.perf_counter()
    train_networks(cfgs, device=dev, batch_size=K, tf32=tf32, init_weights=stacked_init(cfg, K, "cpu"),
                   progress=progress)
    total = time.perf_counter() - t0
    durations = [b - a for a, b in zip(stamps[warm - 1:], stamps[warm:], strict=False)] if warm else []
    epoch_s = statistics.median(durations) if durations else total / (warm + timed)
    T = cfg.task().n_steps
    return {"family": cfg.family, "T": T, "K": K, "epoch_s": epoch_s, "first_epoch_s": stamps[0] - t0 if stamps else None,
            "net_epochs_per_s": K / epoch_s, "net_steps_per_s": K * T / epoch_s,
            "tflops": K * T * FLOP_PER_NET_STEP / epoch_s / 1e12,
            "peak_mem_bytes": peak_mem(), "tf32": tf32}


def run_fitting(cfg: NetConfig, K: int, tries: int = 6, **kw) -> dict:
    """timed_run with K networks, or 0.8 K, 0.64 K, ... if that runs out of memory."""
    for _ in range(tries - 1):
        try:
            return timed_run(cfg, K, **kw)
        except OOM:
            free_cache()
            log(f"  batch {K} ran out of memory at T = {cfg.task().n_steps}; trying {int(K * 0.8)}")
            K = max(1, int(K * 0.8))
    return timed_run(cfg, K, **kw)


def fits(cfg: NetConfig, K: int) -> tuple[bool, int]:
    """Does one epoch of K networks of ``cfg`` fit in memory? (ok, peak bytes)"""
    try:
        r = timed_run(dataclasses.replace(cfg, epochs=1), K, warm=0, timed=1)
        return True, r["peak_mem_bytes"] or K * 1000
    except OOM:
        return False, 0
    except RuntimeError as exc:  # some allocator failures surface as plain RuntimeErrors (cuBLAS workspaces)
        msg = str(exc).lower()
        if "out of memory" not in msg and "alloc_failed" not in msg:
            raise
        return False, 0
    finally:
        free_cache()


def largest_batch(cfg: NetConfig, start: int, tries: int = 7) -> dict:
    """Largest K that trains one epoch without running out of memory (grow x1.25 / shrink x0.8 from start)."""
    T = cfg.task().n_steps
    ok_k, bad_k, peak_at_ok, log_rows = 0, None, 0, []
    K = max(1, start)
    for _ in range(tries):
        ok, peak = fits(cfg, K)
        log_rows.append({"K": K, "fits": ok, "peak_mem_bytes": peak})
        log(f"  batch {K}: {'fits' if ok else 'out of memory'}" + (f" (peak {peak / 2**30:.1f} GiB)" if ok else ""))
        if ok:
            ok_k, peak_at_ok = max(ok_k, K), peak if K >= ok_k else peak_at_ok
            nxt = int(K * 1.25) if bad_k is None else (K + bad_k) // 2
        else:
            bad_k = K if bad_k is None else min(bad_k, K)
            nxt = int(K * 0.8) if ok_k == 0 else (ok_k + K) // 2
        if nxt in (K, ok_k) or (bad_k is not None and bad_k - ok_k <= max(64, ok_k // 50)):
            break
        K = nxt
    per_net = peak_at_ok / ok_k if ok_k else None
    return {"T": T, "largest_fitting": ok_k, "first_failing": bad_k, "tries": log_rows,
            "measured_bytes_per_net": per_net,
            "model_bytes_per_net": training_bytes_per_net(T),
            "default_batch_size": default_batch_size(DEV, T)}


def kmax_for(T: int, lb: dict, total_mem: int) -> int:
    """Largest batch at trial length T, scaled from the measured one (memory ~ bytes_per_step x (T + 1) + c)."""
    if lb.get("largest_fitting"):
        return max(1, int(lb["largest_fitting"] * training_bytes_per_net(lb["T"]) / training_bytes_per_net(T)))
    return max(1, int(0.8 * total_mem / training_bytes_per_net(T) / 1.1))
