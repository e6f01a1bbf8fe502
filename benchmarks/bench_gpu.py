"""GPU training throughput and projections for the paper's zoo (one CUDA device; torch, triton and numpy).

    PYTHONPATH=. python benchmarks/bench_gpu.py [--tf32] [--budget-s 330]

Runs ``zoo.train.train_networks`` on CUDA with thousands of networks per batch and records, as JSON in
``$OUT/gpu_results.json`` (``$OUT`` a folder, created if need be; a path ending in .json is used as is;
default ``./gpu_results.json``), in this order (the file is rewritten after every stage):

1. diagnostics (device, memory, torch / triton versions) and correctness: the Triton kernels' own check
   (``zoo.kernels.triton_check``), then for the ``triton`` and eager ``torch`` kernels, 16 networks trained on
   the GPU vs the CPU trainer (max weight and loss differences) and batch invariance on the GPU (a network in a
   batch of 2 vs 64); with ``--compile`` (or ``--kernels compile``) and at least ``--compile-min-s`` of the
   budget left, the ``torch.compile`` kernels (their warm-up = compile time) against eager;
1b. the Triton launch options of ``zoo.kernels.triton_kernels.LAUNCH_OPTIONS`` (those that compile within an
   H200's limits, in order of expected speed; with ``--sweep-from``, only those that passed ``gpu_check.py``), each
   checked, then timed on the forward + backward kernels alone
   (``--sweep-k`` networks, T = 56) next to the eager torch kernels; the fastest is used from then on. The
   measurements use ``triton`` if it passed its checks, else ``compile`` if it matches eager (max weight
   difference < 1e-4), else ``torch``; ``--kernels`` forces one;
2. the largest batch that fits at delay 400 ms (T = 96), found by trying (1 epoch per try; OOM -> smaller),
   and the measured bytes per network;
3. network-epochs/s at delays 400, 40 and 200 ms (largest fitting batch, capped by ``--max-batch``) and with
   512 networks, one ``zoo build`` shard (to model the latency floor); then the projected wall time of each
   paper family and of the whole ``paper`` preset (81,500 networks): the sum over networks of epochs x T
   network-steps at the measured rate ("full batches"), a batch-by-batch simulation in which a batch shrinks
   as its networks finish (``train_networks`` groups by trial shape and chunks in order; families are built
   separately), and the same for ``zoo build``, which trains consecutive shards of one trial shape together;
4. as the budget allows: the other kernel backends and TF32 at delay 400, one representative shape per
   other paper family (the projection is then refined);
5. TF32 effect on outcomes: the same 256-network grid (600 epochs) with and without TF32: max weight
   difference, and how many final accuracy > 0.8 and "learned" decisions differ. With ``--tf32`` all
   throughput runs use TF32.

Every stage prints as it goes; stages are skipped when ``--budget-s`` is about to run out.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import statistics
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from zoo import kernels, settings  # noqa: E402
from zoo.config import NetConfig  # noqa: E402
from zoo.model import PARAM_NAMES, init_state_dict  # noqa: E402
from zoo.train import _BYTES_PER_NET, _BYTES_PER_NET_STEP, default_batch_size, train_networks  # noqa: E402

FLOP_PER_NET_STEP = 3 * 2 * 128 * 100 * 100
T0 = time.perf_counter()
RESULTS: dict = {}
DEV = torch.device("cuda")
#: --dry-run-cpu: the whole script on the CPU with tiny sizes (pretends that batches above this K do not fit)
DRY_LIMIT = 48


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


def triton_sweep(args, left) -> list[dict]:
    """Time the Triton kernels for each launch option (after its check), and eager torch for comparison."""
    K, T, reps = (args.sweep_k, 56, 2) if not dry() else (2, 12, 1)
    rows = []
    with kernels.use_backend("torch"):
        eager_s = kernel_epoch_s(K, T, reps)
    rows.append({"backend": "torch", "epoch_s": eager_s, "K": K, "T": T})
    log(f"  sweep: eager torch kernels {eager_s * 1e3:.1f} ms per epoch of {K} networks (T = {T})")
    from zoo.kernels import triton_kernels as kt

    # the launch options that compile within an H200's limits (tests/test_triton_compile.py), in order of
    # expected speed; with --sweep-from, only those that passed gpu_check.py's check on this machine
    options = list(enumerate(kt.LAUNCH_OPTIONS))
    if args.sweep_from:
        try:
            with open(args.sweep_from) as f:
                passed = {c["index"] for c in json.load(f).get("checks", []) if c.get("check") == "ok" and not c["tf32"]}
            options = [(i, o) for i, o in options if i in passed]
            log(f"  sweep: options that passed their check in {args.sweep_from}: {sorted(passed)}")
        except (OSError, ValueError, KeyError) as exc:
            log(f"  sweep: {args.sweep_from} unreadable ({exc}); trying every option")
    if dry():
        options = options[:2]
    names = tuple(kt.option_env(kt.LAUNCH_OPTIONS[0]))
    saved = {k: os.environ.get(k) for k in names}
    try:
        for _i, option in options:
            if left() < 60:
                log("  sweep: budget, stopping")
                break
            env = kt.option_env(option)
            os.environ.update(env)
            settings.reload()  # the kernels read the settings, not the environment
            row = {"backend": "triton", "env": env, "K": K, "T": T}
            try:
                t = time.perf_counter()
                row["check"] = kernels.triton_check(DEV) or "ok"
                row["check_s"] = time.perf_counter() - t
                if row["check"] == "ok":
                    with kernels.use_backend("triton"):
                        row["epoch_s"] = kernel_epoch_s(K, T, reps)
                    row["vs_eager"] = eager_s / row["epoch_s"]
            except Exception as exc:  # noqa: BLE001 - an option that does not compile or fit is reported
                row["error"] = f"{type(exc).__name__}: {exc}"[:500]
                free_cache()
            rows.append(row)
            log(f"  sweep: {env}: " + (f"{row['epoch_s'] * 1e3:.1f} ms ({row['vs_eager']:.1f}x eager)"
                                       if row.get("epoch_s") else f"not used ({row.get('error') or row['check']})"))
            save()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        settings.reload()
    return rows


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
            "model_bytes_per_net": _BYTES_PER_NET_STEP * (T + 1) + _BYTES_PER_NET,
            "default_batch_size": default_batch_size(DEV, T)}


def kmax_for(T: int, lb: dict, total_mem: int) -> int:
    """Largest batch at trial length T, scaled from the measured one (memory ~ bytes_per_step x (T + 1) + c)."""
    model_T = lambda t: _BYTES_PER_NET_STEP * (t + 1) + _BYTES_PER_NET  # noqa: E731
    if lb.get("largest_fitting"):
        return max(1, int(lb["largest_fitting"] * model_T(lb["T"]) / model_T(T)))
    return max(1, int(0.8 * total_mem / model_T(T) / 1.1))


# ---------------------------------------------------------------------------------------------------------
# projections


def paper_configs() -> tuple[list[NetConfig], str]:
    try:
        from zoo import grids

        return grids.make_grid("paper"), "zoo.grids.make_grid('paper')"
    except Exception as exc:  # noqa: BLE001 - fall back to the spec table of the paper-method page
        log(f"zoo.grids unavailable ({type(exc).__name__}: {exc}); using the spec table")
    out = []

    def logspace(a, b, n):
        return [10 ** (a + k * (b - a) / (n - 1)) for k in range(n)]

    fams = [("nopost", logspace(-1, -3, 15), range(0, 401, 20), 100, 30, {}),
            ("nopost-narrow", logspace(-0.5, -2, 20)[:15], range(0, 401, 20), 100, 30, {}),
            ("post", logspace(-1, -3, 15), range(0, 401, 20), 20, 100, {"post_ms": 30}),
            ("longtau", logspace(-1, -3, 10), range(0, 801, 40), 20, 30, {"tau_ms": 20.0})]
    for fam, lrs, delays, seeds, scale, kw in fams:
        for d in delays:
            for lr in lrs:
                for s in range(seeds):
                    out.append(NetConfig(fam, seed=s, lr=lr, delay_ms=d, epochs=max(1000, int(scale / lr)), **kw))
    for resp in range(20, 401, 20):
        for lr in logspace(0, -3, 20):
            for s in range(20):
                out.append(NetConfig("nomemory", seed=s, lr=lr, delay_ms=0, epochs=3000, response_ms=resp,
                                     nomemory=True, diverge_loss=100.0))
    return out, "spec table (paper-method page)"


def _batch_s(epochs: list[int], T: int, a: float, cpn: float) -> float:
    """Seconds to train one batch whose networks stop after their own epoch counts (the batch shrinks)."""
    eps = sorted(epochs)
    prev, t = 0, 0.0
    for i, e in enumerate(eps):
        t += (e - prev) * T * (a + cpn * (len(eps) - i))
        prev = e
    return t


def project(configs: list[NetConfig], rate_model, kmax_model, shard_size: int | None = None) -> dict:
    """Per family: networks, network-epoch-steps, ideal hours (full batches at the saturated rate), simulated
    hours (train_networks' grouping and chunking; batches shrink as networks finish) and, with ``shard_size``,
    build hours: what one ``zoo build`` process does (consecutive shards of one trial shape share a batch)."""
    fams: dict[str, dict] = {}
    groups: dict[tuple, list[NetConfig]] = {}
    for c in configs:
        groups.setdefault((c.family, c.batch_key()), []).append(c)  # a build trains each family separately
        f = fams.setdefault(c.family, {"networks": 0, "network_epoch_steps": 0, "ideal_s": 0.0, "simulated_s": 0.0,
                                       "build_s": 0.0})
        T = c.task().n_steps
        f["networks"] += 1
        f["network_epoch_steps"] += c.epochs * T
        a, cpn = rate_model(c.family, T)
        f["ideal_s"] += c.epochs * T * cpn
    for cs in groups.values():
        T = cs[0].task().n_steps
        a, cpn = rate_model(cs[0].family, T)
        bs = kmax_model(T)
        for s in range(0, len(cs), bs):
            fams[cs[0].family]["simulated_s"] += _batch_s([c.epochs for c in cs[s:s + bs]], T, a, cpn)
    if shard_size:  # zoo build: consecutive shards of one trial shape share a batch, up to what memory holds
        from zoo import grids
        from zoo.executors import shard_batches

        shards = grids.shards(configs, shard_size)
        Ts = sorted({s.configs[0].task().n_steps for s in shards})
        for T in Ts:  # the batch cap depends on T
            same_T = [s for s in shards if s.configs[0].task().n_steps == T]
            bs = kmax_model(T)
            for group in shard_batches(same_T, "cpu", batch_size=bs, combine=True):
                cs = [c for s in group for c in s.configs]  # train_networks then cuts batches of bs
                a, cpn = rate_model(group[0].family, T)
                for i in range(0, len(cs), bs):
                    fams[group[0].family]["build_s"] += _batch_s([c.epochs for c in cs[i:i + bs]], T, a, cpn)
    tot = {k: sum(f[k] for f in fams.values())
           for k in ("networks", "network_epoch_steps", "ideal_s", "simulated_s", "build_s")}
    for f in (*fams.values(), tot):
        for k in ("ideal", "simulated", "build"):
            f[f"{k}_h"] = f[f"{k}_s"] / 3600
    return {"families": fams, "paper": tot, "shard_size": shard_size}


def project_now(rows, small_k, fam_rows, lb, total, args) -> None:
    """Projected wall times of the paper's families from the throughput measured so far."""
    Ts = [r["T"] for r in rows]
    cs = [r["epoch_s"] / (r["T"] * r["K"]) for r in rows]  # s per network-step at saturation
    a = 0.0
    if small_k is not None:
        a = max(0.0, small_k["epoch_s"] / small_k["T"] - float(np.interp(small_k["T"], Ts, cs)) * small_k["K"])

    def rate_model(fam, T):
        c = float(np.interp(T, Ts, cs))
        if fam in fam_rows:  # family-specific correction at its representative length
            fr = fam_rows[fam]
            c *= (fr["epoch_s"] / (fr["T"] * fr["K"])) / float(np.interp(fr["T"], Ts, cs))
        return a, c

    configs, source = paper_configs()
    try:
        from zoo.grids import load_preset

        shard_size = load_preset("paper").shard_size
    except Exception:  # noqa: BLE001 - the projection without the build's shards
        shard_size = None
    proj = project(configs, rate_model, lambda T: min(args.max_batch, kmax_for(T, lb, total)), shard_size)
    proj["source"] = source
    proj["model"] = {"latency_s_per_step": a, "s_per_network_step_at_T": dict(zip(Ts, cs, strict=True)),
                     "families_measured": sorted(fam_rows),
                     "note": "epoch time = T x (latency + s_per_network_step x active networks)"}
    RESULTS["projection"] = proj
    per_build = ", {:.2f} h as `zoo build` batches its shards" if shard_size else ""
    for fam, f in proj["families"].items():
        log(f"projection {fam}: {f['networks']} networks, {f['network_epoch_steps']:.3g} network-steps, "
            f"{f['ideal_h']:.2f} h at full batches, {f['simulated_h']:.2f} h simulated" + per_build.format(f["build_h"]))
    p = proj["paper"]
    log(f"projection paper preset: {p['networks']} networks, {p['network_epoch_steps']:.3g} network-steps, "
        f"{p['ideal_h']:.2f} h at full batches, {p['simulated_h']:.2f} h simulated" + per_build.format(p["build_h"])
        + " (one GPU)")
    save()


# ---------------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tf32", action="store_true", help="measure throughput with TF32 matmuls")
    ap.add_argument("--budget-s", type=float, default=330.0, help="skip optional parts after this many seconds")
    ap.add_argument("--max-batch", type=int, default=16384, help="cap on networks per batch in throughput runs")
    ap.add_argument("--tf32-epochs", type=int, default=600, help="epochs of the TF32 outcome comparison")
    ap.add_argument("--kernels", choices=["triton", "compile", "torch"], default=None,
                    help="kernels for the measurements (default: triton if it passes its checks, else compile if "
                         "it matches eager torch, else torch)")
    ap.add_argument("--sweep-k", type=int, default=2048, help="networks in the Triton launch-option sweep")
    ap.add_argument("--compile", action="store_true",
                    help="also try the torch.compile kernels (compiling takes a minute or more; skipped by default)")
    ap.add_argument("--compile-min-s", type=float, default=200.0,
                    help="with --compile: only if at least this much of the budget is left")
    ap.add_argument("--sweep-from", default=None,
                    help="gpu_check.py's JSON: sweep only the launch options that passed their check there")
    ap.add_argument("--dry-run-cpu", action="store_true",
                    help="check the script on the CPU with tiny sizes (numbers meaningless)")
    args = ap.parse_args(argv)
    global DEV
    if args.dry_run_cpu:
        DEV = torch.device("cpu")
        os.environ.setdefault("TRITON_INTERPRET", "1")  # Triton kernels in its interpreter (before it is imported)
        args.max_batch, args.tf32_epochs = min(args.max_batch, 64), min(args.tf32_epochs, 3)
    RESULTS["args"] = vars(args)
    env = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
           "cuda_available": torch.cuda.is_available(), "kernels_requested": kernels.requested_backend()}
    try:
        import triton

        env["triton"] = triton.__version__
    except Exception as exc:  # noqa: BLE001
        env["triton"] = f"unavailable ({type(exc).__name__})"
    RESULTS["env"] = env
    log(f"torch {torch.__version__}, triton {env['triton']}, cuda available: {env['cuda_available']}")
    if not torch.cuda.is_available() and not dry():
        RESULTS["error"] = "CUDA is not available: nothing to measure (try --dry-run-cpu to check the script)"
        log(RESULTS["error"])
        save()
        return 2
    dev = DEV
    if dry():
        free = total = 2 * 2**30
        env.update(device="cpu (dry run)", total_mem_bytes=total, free_mem_bytes=free)
    else:
        props = torch.cuda.get_device_properties(dev)
        free, total = torch.cuda.mem_get_info(dev)
        env.update(device=props.name, total_mem_bytes=total, free_mem_bytes=free,
                   sm_count=props.multi_processor_count, cuda=torch.version.cuda,
                   capability=f"{props.major}.{props.minor}")
        log(f"device {props.name}, {total / 2**30:.1f} GiB ({free / 2**30:.1f} free), "
            f"{props.multi_processor_count} SMs")
    save()

    left = lambda: args.budget_s - (time.perf_counter() - T0)  # noqa: E731

    # 1. correctness on a few networks: the Triton kernels' own check, then each backend's training on the GPU
    #    against the CPU trainer and its batch invariance; the compiled kernels (warm-up = compile time) against
    #    eager, when asked for or when the budget allows
    n_seeds, n_more = (8, 48) if not dry() else (1, 2)  # the dry run interprets the Triton kernels: keep it small
    small = [family_config("nopost", 40, seed=s, lr=lr, epochs=3) for s in range(n_seeds) for lr in (0.1, 0.01)]
    if not settings.current().triton:  # ZOO_TRITON=0, e.g. gpu_session.sh after the check crashed the CUDA context
        check: dict = {"triton_check": "disabled by ZOO_TRITON=0"}
    else:
        check = {"triton_check": kernels.triton_check(dev) or "ok"}
    log(f"Triton kernels' check on {dev}: {check['triton_check']}")
    with kernels.use_backend("auto"):  # the CPU's default kernels (C if a compiler is there)
        cpu = train_networks(small, device="cpu", batch_size=len(small))
    check["cpu_backend"] = cpu.extra.get("kernels")
    RESULTS["correctness"] = check
    for be in ("triton", "torch"):
        t = time.perf_counter()
        with kernels.use_backend(be):
            res = train_networks(small, device=dev, batch_size=len(small))
            sync()
            c = {"ran": res.extra.get("kernels"), "warmup_s": time.perf_counter() - t,
                 "vs_cpu_max_abs": max_weight_diff(res, cpu), "vs_cpu_loss_max_rel": max_loss_diff(res, cpu)}
            pair = train_networks(small[:2], device=dev, batch_size=2)
            big = [*small, *[family_config("nopost", 40, seed=100 + s, epochs=3) for s in range(n_more)]]
            big_res = train_networks(big[::-1], device=dev, batch_size=len(big))  # reversed: other positions
        j = len(big) - 1  # small[0] is last in the reversed list
        c["batch_invariance_max_abs"] = max((pair.weights[n][0] - big_res.weights[n][j]).abs().max().item()
                                            for n in PARAM_NAMES)
        c["batch_invariant_bitwise"] = all(torch.equal(pair.weights[n][0], big_res.weights[n][j]) for n in PARAM_NAMES)
        check[be] = c
        log(f"correctness, {be} kernels: {c}")
        save()
    eager = None
    triton_ok = (check["triton_check"] == "ok" and check["triton"]["ran"] == "triton"
                 and check["triton"]["vs_cpu_max_abs"] < 1e-4 and check["triton"]["vs_cpu_loss_max_rel"] < 1e-4)
    check["triton_ok"] = triton_ok
    compile_ok = False
    if args.kernels == "compile" or (args.compile and args.kernels is None and left() > args.compile_min_s):
        t = time.perf_counter()
        with kernels.use_backend("compile"):
            comp = train_networks(small, device=dev, batch_size=len(small))
        sync()
        with kernels.use_backend("torch"):
            eager = train_networks(small, device=dev, batch_size=len(small))
        RESULTS["compile"] = {"warmup_s": time.perf_counter() - t, "backend": comp.extra.get("kernels"),
                              **kernels.compile_info()}
        check["compiled_vs_eager_gpu_max_abs"] = max_weight_diff(comp, eager)
        check["compiled_vs_eager_loss_max_rel"] = max_loss_diff(comp, eager)
        compile_ok = (comp.extra.get("kernels") == "compile" and check["compiled_vs_eager_gpu_max_abs"] < 1e-4
                      and check["compiled_vs_eager_loss_max_rel"] < 1e-4)
        log(f"compiled kernels: warm-up (compile) {RESULTS['compile']['warmup_s']:.1f} s, "
            f"vs eager: max weight difference {check['compiled_vs_eager_gpu_max_abs']:.3g}, "
            f"loss {check['compiled_vs_eager_loss_max_rel']:.3g}, info {kernels.compile_info()}")
    else:
        RESULTS["compile"] = {"skipped": "not asked for (--compile)" if not args.compile else
                              f"budget ({left():.0f} s left < --compile-min-s {args.compile_min_s:.0f})"}
        log(f"compiled kernels not tried: {RESULTS['compile']['skipped']}")
    check["compile_ok"] = compile_ok
    save()

    # 1b. the Triton kernels' launch options (precision, trials and warps per program), timed on the kernels
    #     alone (forward + backward pass, K = --sweep-k networks, T = 56), each checked before it is timed
    if triton_ok and args.kernels in (None, "triton"):
        RESULTS["triton_sweep"] = sweep = triton_sweep(args, left)
        best = min((r for r in sweep if r["backend"] == "triton" and r.get("epoch_s")), key=lambda r: r["epoch_s"],
                   default=None)
        if best is not None:
            for k, v in best["env"].items():
                os.environ[k] = v
            log(f"Triton launch options used from here on: {best['env']} ({best['epoch_s'] * 1e3:.1f} ms per epoch "
                f"of {best['K']} networks)")
        save()
    backend = args.kernels or ("triton" if triton_ok and not dry() else "compile" if compile_ok else "torch")
    for be, ok in (("triton", triton_ok), ("compile", compile_ok)):
        if args.kernels == be and not ok:
            log(f"WARNING: --kernels {be} asked for, but those kernels failed their checks (see 'correctness')")
    kernels.set_backend(backend)
    RESULTS["kernels"] = backend
    log(f"measuring with the '{backend}' kernels")
    save()

    # 2. largest batch at T = 96
    ref400 = family_config("nopost", 400)
    start = default_batch_size(dev, ref400.task().n_steps) if not dry() else 40
    log(f"largest batch at T = 96: starting from default_batch_size = {start}")
    lb = largest_batch(ref400, start, tries=7 if left() > 120 else 4)
    RESULTS["largest_batch"] = lb
    log(f"largest batch that fits at T = 96: {lb['largest_fitting']} (measured {lb['measured_bytes_per_net'] or 0:.3g} "
        f"bytes/network, model {lb['model_bytes_per_net']:.3g})")
    save()

    # 3. throughput at the three delays (400 ms first), a small batch, then the projections
    rows = []
    for d in (400, 40, 200):
        if rows and left() < 20:
            log(f"budget: skipping delay {d}")
            continue
        cfg = family_config("nopost", d)
        K = min(args.max_batch, kmax_for(cfg.task().n_steps, lb, total))
        r = run_fitting(cfg, K, tf32=args.tf32)
        r["delay_ms"] = d
        rows.append(r)
        log(f"delay {d} ms (T = {r['T']}), batch {r['K']}: {r['net_epochs_per_s']:.0f} network-epochs/s, "
            f"{r['net_steps_per_s'] / 1e6:.2f} M network-steps/s, {r['tflops']:.1f} TFLOP/s in the 3 GEMMs")
        free_cache()
        RESULTS["throughput"] = sorted(rows, key=lambda x: x["delay_ms"])
        save()
    rows = RESULTS["throughput"]
    small_k = None
    if left() > 10:
        small_k = timed_run(family_config("nopost", 200), 512 if not dry() else 8, timed=4, tf32=args.tf32)
        RESULTS["throughput_small_batch"] = small_k
        log(f"small batch ({small_k['K']}, T = 56): {small_k['net_epochs_per_s']:.0f} network-epochs/s, "
            f"epoch {small_k['epoch_s'] * 1e3:.1f} ms")
    fam_rows: dict = {}
    RESULTS["families"] = fam_rows
    project_now(rows, small_k, fam_rows, lb, total, args)

    # 4. optional comparisons, as the budget allows
    r400 = next(r for r in rows if r["delay_ms"] == 400)
    for other, ok in (("torch", True), ("compile", compile_ok), ("triton", triton_ok and not dry())):
        if other == backend or not ok or left() < 30:
            continue
        with kernels.use_backend(other):
            r = run_fitting(family_config("nopost", 400), r400["K"], tf32=args.tf32)
        RESULTS[f"throughput_{other}_delay400"] = r
        log(f"with the '{other}' kernels, delay 400: {r['net_epochs_per_s']:.0f} network-epochs/s "
            f"({r['net_epochs_per_s'] / r400['net_epochs_per_s']:.2f}x '{backend}')")
        free_cache()
    if not args.tf32 and left() > 30:
        r = run_fitting(family_config("nopost", 400), r400["K"], tf32=True)
        RESULTS["throughput_tf32_delay400"] = r
        log(f"with TF32, delay 400: {r['net_epochs_per_s']:.0f} network-epochs/s "
            f"({r['net_epochs_per_s'] / r400['net_epochs_per_s']:.2f}x FP32)")
    save()
    for fam, d in (("post", 200), ("longtau", 400), ("nomemory", 200), ("nopost-narrow", 200)):
        if left() < 25:
            log(f"budget: skipping family {fam}")
            continue
        cfg = family_config(fam, d)
        K = min(args.max_batch, 8192, kmax_for(cfg.task().n_steps, lb, total))
        try:
            r = run_fitting(cfg, K, timed=2, tf32=args.tf32)
        except OOM:
            free_cache()
            continue
        fam_rows[fam] = r
        log(f"family {fam} (T = {r['T']}), batch {r['K']}: {r['net_epochs_per_s']:.0f} network-epochs/s")
        free_cache()
        save()
    if fam_rows:
        project_now(rows, small_k, fam_rows, lb, total, args)

    # 5. TF32 effect on outcomes
    if left() < 45:
        log("budget: skipping the TF32 outcome comparison")
    else:
        lrs = [10 ** (-1 - k / 7) for k in range(8)]  # 0.1 .. 0.01
        grid = [family_config("nopost", d, seed=s, lr=lr, epochs=args.tf32_epochs)
                for d in (40, 200) for lr in lrs for s in range(16 if not dry() else 1)]
        res = {}
        for flag in (False, True):
            t = time.perf_counter()
            res[flag] = train_networks(grid, device=dev, batch_size=len(grid), tf32=flag)
            log(f"TF32={flag}: {len(grid)} networks x {args.tf32_epochs} epochs in {time.perf_counter() - t:.1f} s")

        def decisions(r):
            last = np.array([a[-1] > 0.8 for a in r.curves["accuracy"]])
            n10 = max(1, args.tf32_epochs // 10)
            learned = np.array([(a[-n10:].mean() > 0.8) and (b[-n10:].mean() > 0.8)
                                for a, b in zip(r.curves["accuracy"], r.curves["reliability"], strict=True)])
            return last, learned

        (l0, g0), (l1, g1) = decisions(res[False]), decisions(res[True])
        RESULTS["tf32_effect"] = {
            "networks": len(grid), "epochs": args.tf32_epochs, "delays_ms": [40, 200], "lrs": lrs,
            "max_abs_weight_diff": max((res[False].weights[n] - res[True].weights[n]).abs().max().item()
                                       for n in PARAM_NAMES),
            "max_abs_W_rec_diff": (res[False].weights["W_rec.weight"] - res[True].weights["W_rec.weight"]).abs().max().item(),
            "final_accuracy_gt_0.8": {"fp32": int(l0.sum()), "tf32": int(l1.sum()), "differ": int((l0 != l1).sum())},
            "learned_last10pct": {"fp32": int(g0.sum()), "tf32": int(g1.sum()), "differ": int((g0 != g1).sum())},
        }
        log(f"TF32 effect: {RESULTS['tf32_effect']}")
        if not dry() and max(l0.sum(), l1.sum()) == 0:
            log("WARNING: no network of the TF32 grid reached accuracy > 0.8: check that training works on this GPU")
    save()
    log(f"done; results in {out_path()}")
    return 0


if __name__ == "__main__":
    try:
        code = main()
    except Exception as exc:  # noqa: BLE001 - keep what was measured, print the failure clearly
        RESULTS["error"] = f"{type(exc).__name__}: {exc}"
        RESULTS["traceback"] = traceback.format_exc()
        print(RESULTS["traceback"], flush=True)
        save()
        code = 1
    summary = {k: RESULTS.get(k) for k in ("largest_batch", "throughput", "projection")}
    print(json.dumps({"summary": {"largest_batch": (summary["largest_batch"] or {}).get("largest_fitting"),
                                  "paper_hours_simulated": ((summary["projection"] or {}).get("paper") or {}).get("simulated_h"),
                                  "paper_hours_build": ((summary["projection"] or {}).get("paper") or {}).get("build_h"),
                                  "throughput": [(r["delay_ms"], round(r["net_epochs_per_s"])) for r in summary["throughput"] or []]}}),
          flush=True)
    sys.exit(code)
