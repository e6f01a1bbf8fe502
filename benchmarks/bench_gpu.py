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
import json
import os
import platform
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gpu_timing as gt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from gpu_projection import project_now  # noqa: E402
from gpu_timing import RESULTS, free_cache, log, save, sync  # noqa: E402

from zoo import kernels, settings  # noqa: E402
from zoo.model import PARAM_NAMES  # noqa: E402
from zoo.train import default_batch_size, train_networks  # noqa: E402


def triton_sweep(args, left) -> list[dict]:
    """Time the Triton kernels for each launch option (after its check), and eager torch for comparison."""
    K, T, reps = (args.sweep_k, 56, 2) if not gt.dry() else (2, 12, 1)
    rows = []
    with kernels.use_backend("torch"):
        eager_s = gt.kernel_epoch_s(K, T, reps)
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
    if gt.dry():
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
                row["check"] = kernels.triton_check(gt.DEV) or "ok"
                row["check_s"] = time.perf_counter() - t
                if row["check"] == "ok":
                    with kernels.use_backend("triton"):
                        row["epoch_s"] = gt.kernel_epoch_s(K, T, reps)
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


def parse_args(argv=None) -> argparse.Namespace:
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
    return ap.parse_args(argv)


def describe_environment() -> int | None:
    """0. Versions and the device: its total memory in bytes, or None (recorded as the error) without CUDA."""
    env = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
           "cuda_available": torch.cuda.is_available(), "kernels_requested": kernels.requested_backend()}
    try:
        import triton

        env["triton"] = triton.__version__
    except Exception as exc:  # noqa: BLE001
        env["triton"] = f"unavailable ({type(exc).__name__})"
    RESULTS["env"] = env
    log(f"torch {torch.__version__}, triton {env['triton']}, cuda available: {env['cuda_available']}")
    if not torch.cuda.is_available() and not gt.dry():
        RESULTS["error"] = "CUDA is not available: nothing to measure (try --dry-run-cpu to check the script)"
        log(RESULTS["error"])
        save()
        return None
    if gt.dry():
        free = total = 2 * 2**30
        env.update(device="cpu (dry run)", total_mem_bytes=total, free_mem_bytes=free)
    else:
        props = torch.cuda.get_device_properties(gt.DEV)
        free, total = torch.cuda.mem_get_info(gt.DEV)
        env.update(device=props.name, total_mem_bytes=total, free_mem_bytes=free,
                   sm_count=props.multi_processor_count, cuda=torch.version.cuda,
                   capability=f"{props.major}.{props.minor}")
        log(f"device {props.name}, {total / 2**30:.1f} GiB ({free / 2**30:.1f} free), "
            f"{props.multi_processor_count} SMs")
    save()
    return total


def check_backend(be: str, small: list, cpu, n_more: int) -> dict:
    """One backend's training on the GPU against the CPU trainer, and its batch invariance (a network in a
    batch of 2 vs one of 2 + len(small) + n_more, at another position)."""
    dev = gt.DEV
    t = time.perf_counter()
    with kernels.use_backend(be):
        res = train_networks(small, device=dev, batch_size=len(small))
        sync()
        c = {"ran": res.extra.get("kernels"), "warmup_s": time.perf_counter() - t,
             "vs_cpu_max_abs": gt.max_weight_diff(res, cpu), "vs_cpu_loss_max_rel": gt.max_loss_diff(res, cpu)}
        pair = train_networks(small[:2], device=dev, batch_size=2)
        big = [*small, *[gt.family_config("nopost", 40, seed=100 + s, epochs=3) for s in range(n_more)]]
        big_res = train_networks(big[::-1], device=dev, batch_size=len(big))  # reversed: other positions
    j = len(big) - 1  # small[0] is last in the reversed list
    c["batch_invariance_max_abs"] = max((pair.weights[n][0] - big_res.weights[n][j]).abs().max().item()
                                        for n in PARAM_NAMES)
    c["batch_invariant_bitwise"] = all(torch.equal(pair.weights[n][0], big_res.weights[n][j]) for n in PARAM_NAMES)
    return c


def check_compiled(args, left, check: dict, small: list) -> bool:
    """The torch.compile kernels (warm-up = compile time) against eager, when asked for and the budget allows."""
    dev = gt.DEV
    if not (args.kernels == "compile" or (args.compile and args.kernels is None and left() > args.compile_min_s)):
        RESULTS["compile"] = {"skipped": "not asked for (--compile)" if not args.compile else
                              f"budget ({left():.0f} s left < --compile-min-s {args.compile_min_s:.0f})"}
        log(f"compiled kernels not tried: {RESULTS['compile']['skipped']}")
        return False
    t = time.perf_counter()
    with kernels.use_backend("compile"):
        comp = train_networks(small, device=dev, batch_size=len(small))
    sync()
    with kernels.use_backend("torch"):
        eager = train_networks(small, device=dev, batch_size=len(small))
    RESULTS["compile"] = {"warmup_s": time.perf_counter() - t, "backend": comp.extra.get("kernels"),
                          **kernels.compile_info()}
    check["compiled_vs_eager_gpu_max_abs"] = gt.max_weight_diff(comp, eager)
    check["compiled_vs_eager_loss_max_rel"] = gt.max_loss_diff(comp, eager)
    log(f"compiled kernels: warm-up (compile) {RESULTS['compile']['warmup_s']:.1f} s, "
        f"vs eager: max weight difference {check['compiled_vs_eager_gpu_max_abs']:.3g}, "
        f"loss {check['compiled_vs_eager_loss_max_rel']:.3g}, info {kernels.compile_info()}")
    return (comp.extra.get("kernels") == "compile" and check["compiled_vs_eager_gpu_max_abs"] < 1e-4
            and check["compiled_vs_eager_loss_max_rel"] < 1e-4)


def check_correctness(args, left) -> dict:
    """1. Correctness on a few networks: the Triton kernels' own check, then each backend's training on the GPU
    against the CPU trainer and its batch invariance; the compiled kernels against eager (``triton_ok``,
    ``compile_ok``: whether each may be measured)."""
    n_seeds, n_more = (8, 48) if not gt.dry() else (1, 2)  # the dry run interprets the Triton kernels: keep it small
    small = [gt.family_config("nopost", 40, seed=s, lr=lr, epochs=3) for s in range(n_seeds) for lr in (0.1, 0.01)]
    if not settings.current().triton:  # ZOO_TRITON=0, e.g. gpu_session.sh after the check crashed the CUDA context
        check: dict = {"triton_check": "disabled by ZOO_TRITON=0"}
    else:
        check = {"triton_check": kernels.triton_check(gt.DEV) or "ok"}
    log(f"Triton kernels' check on {gt.DEV}: {check['triton_check']}")
    with kernels.use_backend("auto"):  # the CPU's default kernels (C if a compiler is there)
        cpu = train_networks(small, device="cpu", batch_size=len(small))
    check["cpu_backend"] = cpu.extra.get("kernels")
    RESULTS["correctness"] = check
    for be in ("triton", "torch"):
        check[be] = check_backend(be, small, cpu, n_more)
        log(f"correctness, {be} kernels: {check[be]}")
        save()
    check["triton_ok"] = (check["triton_check"] == "ok" and check["triton"]["ran"] == "triton"
                          and check["triton"]["vs_cpu_max_abs"] < 1e-4 and check["triton"]["vs_cpu_loss_max_rel"] < 1e-4)
    check["compile_ok"] = check_compiled(args, left, check, small)
    save()
    return check


def sweep_launch_options(args, left) -> None:
    """1b. The Triton kernels' launch options (precision, trials and warps per program), timed on the kernels
    alone (forward + backward pass, K = --sweep-k networks, T = 56), each checked before it is timed; the
    fastest is used from then on."""
    RESULTS["triton_sweep"] = sweep = triton_sweep(args, left)
    best = min((r for r in sweep if r["backend"] == "triton" and r.get("epoch_s")), key=lambda r: r["epoch_s"],
               default=None)
    if best is not None:
        for k, v in best["env"].items():
            os.environ[k] = v
        log(f"Triton launch options used from here on: {best['env']} ({best['epoch_s'] * 1e3:.1f} ms per epoch "
            f"of {best['K']} networks)")
    save()


def choose_backend(args, triton_ok: bool, compile_ok: bool) -> str:
    """The kernels of the measurements: --kernels, else triton if it passed, else compile if it did, else torch."""
    backend = args.kernels or ("triton" if triton_ok and not gt.dry() else "compile" if compile_ok else "torch")
    for be, ok in (("triton", triton_ok), ("compile", compile_ok)):
        if args.kernels == be and not ok:
            log(f"WARNING: --kernels {be} asked for, but those kernels failed their checks (see 'correctness')")
    kernels.set_backend(backend)
    RESULTS["kernels"] = backend
    log(f"measuring with the '{backend}' kernels")
    save()
    return backend


def measure_largest_batch(left) -> dict:
    """2. The largest batch at T = 96."""
    ref400 = gt.family_config("nopost", 400)
    start = default_batch_size(gt.DEV, ref400.task().n_steps) if not gt.dry() else 40
    log(f"largest batch at T = 96: starting from default_batch_size = {start}")
    lb = gt.largest_batch(ref400, start, tries=7 if left() > 120 else 4)
    RESULTS["largest_batch"] = lb
    log(f"largest batch that fits at T = 96: {lb['largest_fitting']} (measured {lb['measured_bytes_per_net'] or 0:.3g} "
        f"bytes/network, model {lb['model_bytes_per_net']:.3g})")
    save()
    return lb


def measure_throughput(args, left, lb: dict, total: int) -> tuple[list[dict], dict | None]:
    """3. Throughput at the three delays (400 ms first) at the largest batch, and with a small batch (512)."""
    rows = []
    for d in (400, 40, 200):
        if rows and left() < 20:
            log(f"budget: skipping delay {d}")
            continue
        cfg = gt.family_config("nopost", d)
        K = min(args.max_batch, gt.kmax_for(cfg.task().n_steps, lb, total))
        r = gt.run_fitting(cfg, K, tf32=args.tf32)
        r["delay_ms"] = d
        rows.append(r)
        log(f"delay {d} ms (T = {r['T']}), batch {r['K']}: {r['net_epochs_per_s']:.0f} network-epochs/s, "
            f"{r['net_steps_per_s'] / 1e6:.2f} M network-steps/s, {r['tflops']:.1f} TFLOP/s in the 3 GEMMs")
        free_cache()
        RESULTS["throughput"] = sorted(rows, key=lambda x: x["delay_ms"])
        save()
    small_k = None
    if left() > 10:
        small_k = gt.timed_run(gt.family_config("nopost", 200), 512 if not gt.dry() else 8, timed=4, tf32=args.tf32)
        RESULTS["throughput_small_batch"] = small_k
        log(f"small batch ({small_k['K']}, T = 56): {small_k['net_epochs_per_s']:.0f} network-epochs/s, "
            f"epoch {small_k['epoch_s'] * 1e3:.1f} ms")
    return RESULTS["throughput"], small_k


def compare_kernels(args, left, backend: str, check: dict, r400: dict) -> None:
    """4a. The other kernel backends and TF32 at delay 400, as the budget allows."""
    for other, ok in (("torch", True), ("compile", check["compile_ok"]), ("triton", check["triton_ok"] and not gt.dry())):
        if other == backend or not ok or left() < 30:
            continue
        with kernels.use_backend(other):
            r = gt.run_fitting(gt.family_config("nopost", 400), r400["K"], tf32=args.tf32)
        RESULTS[f"throughput_{other}_delay400"] = r
        log(f"with the '{other}' kernels, delay 400: {r['net_epochs_per_s']:.0f} network-epochs/s "
            f"({r['net_epochs_per_s'] / r400['net_epochs_per_s']:.2f}x '{backend}')")
        free_cache()
    if not args.tf32 and left() > 30:
        r = gt.run_fitting(gt.family_config("nopost", 400), r400["K"], tf32=True)
        RESULTS["throughput_tf32_delay400"] = r
        log(f"with TF32, delay 400: {r['net_epochs_per_s']:.0f} network-epochs/s "
            f"({r['net_epochs_per_s'] / r400['net_epochs_per_s']:.2f}x FP32)")
    save()


def measure_families(args, left, lb: dict, total: int, fam_rows: dict) -> None:
    """4b. One representative shape per other paper family, as the budget allows (into ``fam_rows``)."""
    for fam, d in (("post", 200), ("longtau", 400), ("nomemory", 200), ("nopost-narrow", 200)):
        if left() < 25:
            log(f"budget: skipping family {fam}")
            continue
        cfg = gt.family_config(fam, d)
        K = min(args.max_batch, 8192, gt.kmax_for(cfg.task().n_steps, lb, total))
        try:
            r = gt.run_fitting(cfg, K, timed=2, tf32=args.tf32)
        except gt.OOM:
            free_cache()
            continue
        fam_rows[fam] = r
        log(f"family {fam} (T = {r['T']}), batch {r['K']}: {r['net_epochs_per_s']:.0f} network-epochs/s")
        free_cache()
        save()


def tf32_effect(args, left) -> None:
    """5. TF32's effect on outcomes: the same grid with and without TF32; how many decisions differ."""
    if left() < 45:
        log("budget: skipping the TF32 outcome comparison")
        return
    lrs = [10 ** (-1 - k / 7) for k in range(8)]  # 0.1 .. 0.01
    grid = [gt.family_config("nopost", d, seed=s, lr=lr, epochs=args.tf32_epochs)
            for d in (40, 200) for lr in lrs for s in range(16 if not gt.dry() else 1)]
    res = {}
    for flag in (False, True):
        t = time.perf_counter()
        res[flag] = train_networks(grid, device=gt.DEV, batch_size=len(grid), tf32=flag)
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
    if not gt.dry() and max(l0.sum(), l1.sum()) == 0:
        log("WARNING: no network of the TF32 grid reached accuracy > 0.8: check that training works on this GPU")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.dry_run_cpu:
        gt.use_cpu()
        os.environ.setdefault("TRITON_INTERPRET", "1")  # Triton kernels in its interpreter (before it is imported)
        args.max_batch, args.tf32_epochs = min(args.max_batch, 64), min(args.tf32_epochs, 3)
    RESULTS["args"] = vars(args)
    total = describe_environment()
    if total is None:
        return 2
    left = lambda: args.budget_s - (time.perf_counter() - gt.T0)  # noqa: E731
    check = check_correctness(args, left)
    if check["triton_ok"] and args.kernels in (None, "triton"):
        sweep_launch_options(args, left)
    backend = choose_backend(args, check["triton_ok"], check["compile_ok"])
    lb = measure_largest_batch(left)
    rows, small_k = measure_throughput(args, left, lb, total)
    fam_rows: dict = {}
    RESULTS["families"] = fam_rows
    project_now(rows, small_k, fam_rows, lb, total, args)
    compare_kernels(args, left, backend, check, next(r for r in rows if r["delay_ms"] == 400))
    measure_families(args, left, lb, total, fam_rows)
    if fam_rows:
        project_now(rows, small_k, fam_rows, lb, total, args)  # refined by the families' own rates
    tf32_effect(args, left)
    save()
    log(f"done; results in {gt.out_path()}")
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
