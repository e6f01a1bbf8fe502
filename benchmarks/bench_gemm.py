"""The matrix products' ceiling on this machine: one core's FMA peak, and our products as a fraction of it.

    python benchmarks/bench_gemm.py [--repeats 5] [--json gemm.json]

1. **FMA peak** of one core: a small C program (compiled here with the trainer's compiler and ``-O2
   -march=native``) times long runs of independent fused multiply-adds on 256-bit vectors (12 chains) and, where
   the CPU has AVX-512F, on 512-bit vectors (24 chains): enough chains to hide the latency of two FMA units.
   GFLOP/s = FMAs x lanes x 2 / CPU s, the best of ``--repeats`` runs. The peak is the faster of the two widths (on Zen 4 both are the same; on
   Intel server cores with two 512-bit units the 512-bit rate is about twice the 256-bit one).
2. **The trainer's three products** at its shapes (one network-step: ``r W^T`` 128 x 100 x 100, ``dW += d^T r``
   100 x 100 x 128, ``h += d W`` 128 x 100 x 100), batches of 16 products, one thread, through the C library's
   batched product (what ``zoo.kernels.matmul`` calls): ours in 16-float tiles (AVX-512), ours in 8-float tiles
   (``ZOO_C_GEMM=own8``), and MKL's sgemm (``ZOO_C_GEMM=blas``) where torch has it. Each timing is the fastest
   burst of 5 batches in CPU time (robust to a shared machine); the variants run interleaved, ``--repeats``
   rounds, and the medians count.

3. With ``--trainer``: the whole trainer's CPU microseconds per network-step with each variant (16 networks x
   20 epochs at 200 ms, one thread, interleaved, medians).

Prints the CPU model, the peaks, each variant's GFLOP/s and fraction of the peak, and a one-line summary.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FMA_SRC = r"""
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
/* CPU time of this thread: a shared core's other processes do not count */
static double now(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
#define CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    float sink = 0;
    {   /* 256-bit: 12 independent chains */
#define D(i) __m256 a##i = _mm256_set1_ps(1.0f + i * 1e-3f);
        CHAINS(D)
        __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
        double t0 = now();
        for (long it = 0; it < n; it++) {
#define F(i) a##i = _mm256_fmadd_ps(a##i, x, y); __asm__("" : "+x"(a##i));
            CHAINS(F)
        }
        double dt = now() - t0;
#define S(i) sink += a##i[0];
        CHAINS(S)
        printf("fma256 %.3f\n", n * 12.0 * 8 * 2 / dt / 1e9);
    }
#ifdef __AVX512F__
    {   /* 512-bit: 24 independent chains */
#undef D
#undef F
#undef S
#define D(i) __m512 a##i = _mm512_set1_ps(1.0f + i * 1e-3f), b##i = _mm512_set1_ps(2.0f + i * 1e-3f);
        CHAINS(D)
        __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
        double t0 = now();
        for (long it = 0; it < n; it++) {
#define F(i) a##i = _mm512_fmadd_ps(a##i, x, y); b##i = _mm512_fmadd_ps(b##i, x, y); \
             __asm__("" : "+v"(a##i), "+v"(b##i));
            CHAINS(F)
        }
        double dt = now() - t0;
#define S(i) sink += a##i[0] + b##i[0];
        CHAINS(S)
        printf("fma512 %.3f\n", n * 24.0 * 16 * 2 / dt / 1e9);
    }
#endif
    printf("sink %g\n", sink);
    return 0;
}
"""


def fma_peak(repeats: int, iters: int = 40_000_000) -> dict:
    """One core's GFLOP/s of independent 256-bit and (with AVX-512F) 512-bit FMAs in CPU time: the best of
    ``repeats`` runs."""
    from zoo.kernels.c import compiler

    cc = compiler()
    if cc is None:
        raise SystemExit("no C compiler: cannot measure the FMA peak")
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "fma_peak"
        src = Path(tmp) / "fma_peak.c"
        src.write_text(FMA_SRC)
        subprocess.run([*cc.split(), "-O2", "-march=native", "-o", str(exe), str(src)], check=True)
        runs: dict[str, list[float]] = {}
        for _ in range(repeats):
            out = subprocess.run(["taskset", "-c", "0", str(exe), str(iters)] if _has_taskset() else [str(exe), str(iters)],
                                 capture_output=True, text=True, check=True).stdout
            for line in out.splitlines():
                name, val = line.split()
                if name.startswith("fma"):
                    runs.setdefault(name, []).append(float(val))
    res = {k: max(v) for k, v in runs.items()}  # other load can only slow a run down
    res["runs"] = runs
    res["peak"] = max(res.get("fma256", 0.0), res.get("fma512", 0.0))
    return res


def _has_taskset() -> bool:
    import shutil

    return shutil.which("taskset") is not None


#: (name, M, N, K, trans_a, accumulate): the three products of one network-step
SHAPES = (("fwd r W^T", 128, 100, 100, False, False), ("grad dW += d^T r", 100, 100, 128, True, True),
          ("bwd h += d W", 128, 100, 100, False, True))
BATCH = 16


def products(repeats: int, seconds: float = 0.4) -> dict:
    """GFLOP/s of each variant of the passes' products at the trainer's shapes, one thread; medians of
    interleaved rounds."""
    import torch

    from zoo import kernels
    from zoo.kernels import c as kc

    torch.set_num_threads(1)
    lib = kernels.c_library()
    if lib is None or not lib.zoo_has_own_gemm():
        raise SystemExit("the C kernels have no own matrix products here (no AVX2 + FMA, or no compiler)")
    variants = {"own16": kc.GEMM_MODES["own"], "own8": kc.GEMM_MODES["own8"]}
    if not lib.zoo_has_gemm16():
        variants.pop("own16")
    if kc.torch_blas() is not None:
        variants["blas"] = kc.GEMM_MODES["blas"]
    g = torch.Generator().manual_seed(0)
    ops = []
    for name, M, N, K, ta, acc in SHAPES:
        a = torch.randn((BATCH, K, M) if ta else (BATCH, M, K), generator=g)
        b = torch.randn(BATCH, K, N, generator=g)
        out = torch.zeros(BATCH, M, N)
        # the library's batched entry point directly (kernels.matmul's checks cost ~5% at this size)
        args = (BATCH, int(ta), M, N, K, a.data_ptr(), a.stride(0), a.shape[2], b.data_ptr(), b.stride(0), N,
                out.data_ptr(), out.stride(0), N, int(acc), 1)
        ops.append((name, (a, b, out), args, 2 * M * N * K * BATCH))
    rates: dict[str, dict[str, list[float]]] = {v: {op[0]: [] for op in ops} for v in variants}
    try:
        for _ in range(repeats):
            for v, mode in variants.items():
                lib.zoo_set_gemm(mode)
                for name, _keep, args, flop in ops:
                    lib.zoo_matmul_f32(*args)  # warm
                    best, t_end = float("inf"), time.perf_counter() + seconds
                    while time.perf_counter() < t_end:  # the fastest of short bursts of CPU time (shared machine)
                        c0 = time.process_time()
                        for _ in range(5):
                            lib.zoo_matmul_f32(*args)
                        best = min(best, time.process_time() - c0)
                    rates[v][name].append(5 * flop / best / 1e9)
    finally:
        lib.zoo_set_gemm(kc.gemm_mode())
    res = {}
    for v, per in rates.items():
        med = {name: statistics.median(r) for name, r in per.items()}
        # a network-step does the three products once each: its rate is total FLOP / total time
        step = 3 / sum(1 / m for m in med.values())
        res[v] = {"shapes": med, "network_step": step, "runs": per}
    return res


def trainer(repeats: int, epochs: int = 20, nets: int = 16, delay_ms: int = 200) -> dict:
    """CPU microseconds per network-step of the whole trainer (one thread), with each variant of the products;
    medians of interleaved rounds (the weights come out bitwise the same with own16 and own8)."""
    import torch

    from zoo import kernels
    from zoo.config import NetConfig
    from zoo.kernels import c as kc
    from zoo.train import train_networks

    torch.set_num_threads(1)
    lib = kernels.c_library()
    variants = {"own16": "own", "own8": "own8", **({"blas": "blas"} if kc.torch_blas() is not None else {})}
    if not lib.zoo_has_gemm16():
        variants.pop("own16")
    cfgs = [NetConfig("nopost", seed=s // 2, lr=(0.01, 0.003)[s % 2], delay_ms=delay_ms, epochs=epochs)
            for s in range(nets)]
    steps = sum(c.epochs * c.task().n_steps for c in cfgs)
    us: dict[str, list[float]] = {v: [] for v in variants}
    try:
        with kernels.use_backend("c"):
            train_networks(cfgs[:2])  # warm
            for _ in range(repeats):
                for v, mode in variants.items():
                    lib.zoo_set_gemm(kc.GEMM_MODES[mode])
                    c0 = time.process_time()
                    train_networks(cfgs)
                    us[v].append((time.process_time() - c0) / steps * 1e6)
    finally:
        lib.zoo_set_gemm(kc.gemm_mode())
    return {v: {"us_per_network_step": statistics.median(r), "runs": r} for v, r in us.items()}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--trainer", action="store_true",
                    help="also time the whole trainer (16 networks x 20 epochs at 200 ms, one thread) per variant")
    args = ap.parse_args(argv)
    from zoo.provenance import cpu_model

    flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[-1].split("\n", 1)[0] if Path("/proc/cpuinfo").exists() else ""
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512vl") if f" {f}" in flags]
    print(f"CPU: {cpu_model()} ({', '.join(isa)}); load average {os.getloadavg()[0]:.2f}")
    peak = fma_peak(args.repeats)
    print(f"FMA peak, one core: 256-bit {peak.get('fma256', 0):.1f} GFLOP/s"
          + (f", 512-bit {peak['fma512']:.1f} GFLOP/s" if "fma512" in peak else ", no AVX-512F"))
    prods = products(args.repeats)
    for v, r in prods.items():
        shapes = ", ".join(f"{n} {g:.1f}" for n, g in r["shapes"].items())
        print(f"{v:6s}: {shapes}; network-step {r['network_step']:.1f} GFLOP/s = "
              f"{r['network_step'] / peak['peak']:.0%} of the peak")
    train = trainer(args.repeats) if args.trainer else {}
    for v, r in train.items():
        print(f"trainer with {v}: {r['us_per_network_step']:.1f} CPU us per network-step")
    best = max(prods, key=lambda v: prods[v]["network_step"])
    summary = (f"SUMMARY {cpu_model()}: FMA peak {peak['peak']:.1f} GFLOP/s/core; products "
               + ", ".join(f"{v} {r['network_step']:.1f} ({r['network_step'] / peak['peak']:.0%})"
                           for v, r in prods.items()) + f"; fastest {best}"
               + "".join(f"; trainer {v} {r['us_per_network_step']:.0f} us/step" for v, r in train.items()))
    print(summary)
    out = {"cpu": cpu_model(), "isa": isa, "fma": peak, "products": prods, "trainer": train, "summary": summary,
           "loadavg_after": os.getloadavg()[0]}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
