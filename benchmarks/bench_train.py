"""Training throughput: the straightforward baseline vs ``zoo.train.train_networks``, same grid, same cores.

    python benchmarks/bench_train.py [--delays 40 200 400] [--nets 64] [--epochs E] [--json results.json]

For every delay the same grid of networks (``--nets`` networks: seeds x 2 learning rates, ``--epochs``
epochs each, by default about 1152 / T so that every delay gets the same number of steps; per-epoch cost is
stationary, so a few epochs suffice) is trained

- by the baseline (``benchmarks/baseline.py``: one nn.Module per network, Python loop over steps, autograd,
  torch.optim.SGD) in ``--cores`` processes x 1 thread;
- by our trainer in 1 process x ``--cores`` threads ("ours 1p") and in ``--cores`` processes x 1 thread
  ("ours Np"; each process trains its share as one batch); the faster of the two is "ours".

It prints network-epochs/s for each, the ratio ours / baseline, and our fraction of the machine's batched-GEMM
ceiling measured in the same run: the faster rate of ``torch.bmm`` (MKL) and of the trainer's own products
(``zoo.kernels.matmul``) on (K, 128, 100) @ (K, 100, 100) float32 with ``--cores`` threads (and ``--cores``
processes x 1 thread; the better counts), the shape of the 3 GEMMs of one network-step (forward, backward,
weight gradient; 3 x 2 x 128 x 100 x 100 = 7.68 MFLOP). Then
``fraction = our network-steps/s x 7.68 MFLOP / ceiling``.

Every measurement is repeated ``--repeats`` times, baseline and ours interleaved, and the best run counts (the
machine may be shared; the GEMM ceiling is measured before and after); the load average before and after is
recorded. Results also go to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from baseline import run_processes, train_baseline  # noqa: E402

from zoo import kernels, settings  # noqa: E402
from zoo.config import NetConfig  # noqa: E402

FLOP_PER_NET_STEP = 3 * 2 * 128 * 100 * 100  # 7.68 MFLOP


def make_grid(delay_ms: int, nets: int, epochs: int) -> list[NetConfig]:
    lrs = (0.01, 0.003)
    return [NetConfig("nopost", seed=i // len(lrs), lr=lrs[i % len(lrs)], delay_ms=delay_ms, epochs=epochs)
            for i in range(nets)]


def _ours_worker(cfgs, threads, barrier, queue, batch_size=None):
    from zoo.train import train_networks

    torch.set_num_threads(threads)
    warm = [NetConfig("nopost", seed=0, lr=0.01, delay_ms=cfgs[0].delay_ms, epochs=1)]
    train_networks(warm)  # build/load the C kernels, first-call costs
    barrier.wait()
    t0 = time.perf_counter()
    c0 = time.process_time()
    res = train_networks(cfgs, batch_size=int(os.environ.get("BENCH_BATCH", 0)) or len(cfgs))
    queue.put((t0, time.perf_counter(), time.process_time() - c0, res.extra.get("kernels", "")))



def train_ours(cfgs: Sequence[NetConfig], processes: int, threads: int) -> dict:
    parts = [list(cfgs[i::processes]) for i in range(processes)]
    res = run_processes(_ours_worker, [p for p in parts if p], threads)
    res["network_epochs"] = sum(c.epochs for c in cfgs)
    res["network_steps"] = sum(c.epochs * c.task().n_steps for c in cfgs)
    return res


GEMM_IMPLS = ("torch.bmm", "zoo.kernels.matmul")


def _gemm_worker(K, threads, impl, barrier, queue, seconds=1.5):
    torch.set_num_threads(threads)
    from zoo import kernels

    a, w = torch.randn(K, 128, 100), torch.randn(K, 100, 100)
    out = torch.empty(K, 128, 100)
    if impl == "torch.bmm":
        def product():
            torch.bmm(a, w, out=out)
    else:  # the products of the trainer's C passes (ours or MKL's, see kernels.c_gemm)
        def product():
            kernels.matmul(a, w, out)
    for _ in range(5):
        product()
    barrier.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    while time.perf_counter() - t0 < seconds:
        for _ in range(10):
            product()
        n += 10
    t1, c1 = time.perf_counter(), time.process_time()
    flop = n * K * 2 * 128 * 100 * 100
    queue.put((t0, t1, flop / (t1 - t0), flop / (c1 - c0) * threads))


def gemm_ceiling(K: int, cores: int, repeats: int) -> dict:
    """Achieved GFLOP/s of batched sgemm at the trainer's shape, for torch.bmm (MKL) and for the products of the
    trainer's C passes (``zoo.kernels.matmul``: our own where the CPU has AVX2 + FMA), each with 1 process x
    cores threads and cores x 1; the ceiling is the fastest.

    ``gflops``: wall-clock rate; ``gflops_cpu``: per CPU second x threads (what the cores deliver when the
    processes have them to themselves)."""
    from zoo import kernels

    impls = [i for i in GEMM_IMPLS if i == "torch.bmm" or kernels.c_gemm() is not None]
    res: dict = {"K": K, "zoo_gemm": kernels.c_gemm()}
    for impl in impls:
        best = {"1p": 0.0, "Np": 0.0, "1p_cpu": 0.0, "Np_cpu": 0.0}
        for _ in range(repeats):
            for mode, procs, threads, k in (("1p", 1, cores, K), ("Np", cores, 1, max(1, K // cores))):
                wall, cpu = _gemm_run(k, procs, threads, impl)
                best[mode] = max(best[mode], wall)
                best[mode + "_cpu"] = max(best[mode + "_cpu"], cpu)
        res[impl] = {"gflops_1p": best["1p"] / 1e9, "gflops_Np": best["Np"] / 1e9,
                     "gflops": max(best["1p"], best["Np"]) / 1e9,
                     "gflops_cpu": max(best["1p_cpu"], best["Np_cpu"]) / 1e9}
    _set_best(res)
    return res


def _set_best(res: dict) -> None:
    impls = [i for i in GEMM_IMPLS if i in res]
    res["best"] = max(impls, key=lambda i: res[i]["gflops"])
    res["gflops"] = res[res["best"]]["gflops"]
    res["gflops_cpu"] = max(res[i]["gflops_cpu"] for i in impls)


def _gemm_run(K, procs, threads, impl) -> float:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(procs), ctx.Queue()
    ps = [ctx.Process(target=_gemm_worker, args=(K, threads, impl, barrier, queue)) for _ in range(procs)]
    for p in ps:
        p.start()
    res = [queue.get() for _ in ps]
    for p in ps:
        p.join()
    return sum(r[2] for r in res), sum(r[3] for r in res)


def machine_info() -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
            "platform": platform.platform()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            key, _, val = line.partition(":")
            if key.strip() in ("Model name", "CPU(s)", "Core(s) per socket", "Thread(s) per core", "L2 cache",
                               "L3 cache"):
                info[key.strip()] = val.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    info["kernels"] = kernels.c_backend_info()
    info["kernels_requested"] = kernels.requested_backend()
    return info


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--delays", type=int, nargs="+", default=[40, 200, 400])
    ap.add_argument("--nets", type=int, default=64,
                    help="networks per delay (default 64: 32 per process, the trainer's CPU batch size)")
    ap.add_argument("--epochs", type=int, default=None,
                    help="epochs per network (default: about 1152 / T, i.e. 1152 steps per network at every delay)")
    ap.add_argument("--baseline-nets", type=int, default=16,
                    help="networks per delay for the baseline: the first ones of the same grid (default 16; "
                         "every network costs the baseline the same, so a subset measures the same rate)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="runs per measurement; the best counts")
    ap.add_argument("--modes", nargs="+", default=["1p", "Np"], choices=["1p", "Np"],
                    help="our trainer in 1 process x cores threads (1p) and/or cores processes x 1 thread (Np)")
    ap.add_argument("--kernels", default=None, choices=["auto", "c", "torch"],
                    help="kernel backend of our trainer (sets ZOO_KERNELS for the workers)")
    ap.add_argument("--json", default=None, help="write the results here as JSON")
    args = ap.parse_args(argv)
    if args.kernels:
        os.environ["ZOO_KERNELS"] = args.kernels
        settings.reload()  # the kernels read the settings once
    os.environ.setdefault("OMP_NUM_THREADS", str(args.cores))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    t_start = time.perf_counter()
    load0 = os.getloadavg()
    kernels.c_library()  # compile once, before the workers need it
    info = machine_info()
    ceil0 = gemm_ceiling(max(2, args.nets // 2), args.cores, 1)
    rows = []
    for d in args.delays:
        T = make_grid(d, 1, 1)[0].task().n_steps
        epochs = args.epochs or max(3, round(1152 / T))
        grid = make_grid(d, args.nets, epochs)
        T = grid[0].task().n_steps
        base_grid = grid[: args.baseline_nets or args.nets]
        runs: dict[str, list[dict]] = {}
        for _ in range(args.repeats):  # interleaved, so that baseline and ours see the same machine load
            runs.setdefault("baseline", []).append(train_baseline(base_grid, args.cores))
            for mode in args.modes:
                procs, threads = (1, args.cores) if mode == "1p" else (args.cores, 1)
                runs.setdefault(mode, []).append(train_ours(grid, procs, threads))
        best = {k: min(v, key=lambda r: r["wall_s"]) for k, v in runs.items()}
        row = {"delay_ms": d, "T": T, "networks": len(grid), "baseline_networks": len(base_grid), "epochs": epochs,
               "baseline": {**best["baseline"], "net_epochs_per_s": best["baseline"]["network_epochs"]
                            / best["baseline"]["wall_s"], "all_wall_s": [r["wall_s"] for r in runs["baseline"]]}}
        for mode in args.modes:
            r = best[mode]
            row[f"ours_{mode}"] = {**r, "net_epochs_per_s": r["network_epochs"] / r["wall_s"],
                                   "all_wall_s": [x["wall_s"] for x in runs[mode]]}
        best_mode = max(args.modes, key=lambda m: row[f"ours_{m}"]["net_epochs_per_s"])
        row["ours_mode"] = best_mode
        row["ours"] = row[f"ours_{best_mode}"]
        row["ratio"] = row["ours"]["net_epochs_per_s"] / row["baseline"]["net_epochs_per_s"]
        # CPU-time view (robust to other load on a shared machine): the throughput if the processes had the
        # cores to themselves = network-epochs / CPU seconds x cores
        for key in ("baseline", *[f"ours_{m}" for m in args.modes]):
            row[key]["cpu_net_epochs_per_s"] = row[key]["network_epochs"] / row[key]["cpu_s"] * args.cores
        row["ratio_cpu"] = (max(row[f"ours_{m}"]["cpu_net_epochs_per_s"] for m in args.modes)
                            / row["baseline"]["cpu_net_epochs_per_s"])
        row["ours_flops"] = row["ours"]["network_steps"] / row["ours"]["wall_s"] * FLOP_PER_NET_STEP
        rows.append(row)
        print(f"delay {d} ms done: ratio {row['ratio']:.2f} ({time.perf_counter() - t_start:.0f} s)", flush=True)
    ceiling = gemm_ceiling(max(2, args.nets // 2), args.cores, args.repeats)
    for impl in GEMM_IMPLS:  # best of the runs before and after
        for key in ("gflops_1p", "gflops_Np", "gflops", "gflops_cpu"):
            if impl in ceiling:
                ceiling[impl][key] = max(ceiling[impl][key], ceil0[impl][key])
    _set_best(ceiling)
    for row in rows:
        row["gemm_fraction"] = row["ours_flops"] / (ceiling["gflops"] * 1e9)
        best_cpu = max(row[f"ours_{m}"]["cpu_net_epochs_per_s"] for m in args.modes)
        row["gemm_fraction_cpu"] = best_cpu * row["T"] * FLOP_PER_NET_STEP / (ceiling["gflops_cpu"] * 1e9)
        row["ratio_ceiling"] = (ceiling["gflops"] * 1e9 / FLOP_PER_NET_STEP / row["T"]) / row["baseline"]["net_epochs_per_s"]
    result = {"machine": info, "args": vars(args), "gemm_ceiling": ceiling, "rows": rows,
              "load_before": load0, "load_after": os.getloadavg(), "seconds": time.perf_counter() - t_start}
    print_table(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


def print_table(res: dict) -> None:
    m, c = res["machine"], res["gemm_ceiling"]
    print()
    print(f"machine: {m.get('Model name', '?')}, {m.get('cpus')} CPUs; torch {m['torch']}; "
          f"kernels: {'c' if m['kernels']['available'] else 'torch'} (requested {m['kernels_requested']})")
    cores = res["args"]["cores"]
    print(f"batched-GEMM ceiling ((K,128,100)@(K,100,100) fp32): {c['gflops']:.1f} GFLOP/s, {c['best']}; measured:")
    for impl in GEMM_IMPLS:
        if impl in c:
            name = impl if impl == "torch.bmm" else f"{impl} ({c['zoo_gemm']}: the trainer's products)"
            print(f"  {name}: {c[impl]['gflops']:.1f} GFLOP/s (1 process x {cores} threads: "
                  f"{c[impl]['gflops_1p']:.1f}; {cores} processes x 1 thread: {c[impl]['gflops_Np']:.1f})")
    print(f"load average before/after: {res['load_before'][0]:.2f} / {res['load_after'][0]:.2f}")
    hdr = (f"{'delay':>6} {'T':>4} {'baseline':>10} {'ours 1p':>10} {'ours Np':>10} {'ours':>10} {'ratio':>6} "
           f"{'GEMM frac':>9} {'ceil/base':>9}")
    print(hdr)
    print(f"{'ms':>6} {'':>4} {'net-ep/s':>10} {'net-ep/s':>10} {'net-ep/s':>10} {'net-ep/s':>10} {'x':>6} "
          f"{'':>9} {'x':>9}")
    for r in res["rows"]:
        o1 = r.get("ours_1p", {}).get("net_epochs_per_s", float("nan"))
        on = r.get("ours_Np", {}).get("net_epochs_per_s", float("nan"))
        print(f"{r['delay_ms']:>6} {r['T']:>4} {r['baseline']['net_epochs_per_s']:>10.2f} {o1:>10.2f} {on:>10.2f} "
              f"{r['ours']['net_epochs_per_s']:>10.2f} {r['ratio']:>6.2f} {r['gemm_fraction']:>9.2f} "
              f"{r['ratio_ceiling']:>9.2f}")
    print("ours = the faster of 1p (1 process x cores threads) and Np (cores processes x 1 thread); "
          "ceil/base = the ratio a trainer running at the GEMM ceiling would reach")
    print(f"CPU-time view (network-epochs per CPU second x cores: less sensitive to other load on the machine; "
          f"GEMM ceiling {c['gflops_cpu']:.1f} GFLOP/s):")
    print(f"{'delay':>6} {'baseline':>10} {'ours 1p':>10} {'ours Np':>10} {'ratio':>6} {'GEMM frac':>9}   "
          f"(us per network-step per core: baseline / ours)")
    for r in res["rows"]:
        o1 = r.get("ours_1p", {}).get("cpu_net_epochs_per_s", float("nan"))
        on = r.get("ours_Np", {}).get("cpu_net_epochs_per_s", float("nan"))
        b = r["baseline"]["cpu_net_epochs_per_s"]
        print(f"{r['delay_ms']:>6} {b:>10.2f} {o1:>10.2f} {on:>10.2f} {r['ratio_cpu']:>6.2f} "
              f"{r['gemm_fraction_cpu']:>9.2f}   "
              f"({cores / (b * r['T']) * 1e6:.0f} / {cores / (max(o1, on) * r['T']) * 1e6:.0f})")
    print(f"total {res['seconds']:.0f} s")


if __name__ == "__main__":
    main()
