"""End to end: the straightforward per-network loop vs ``zoo build``, same networks, same cores.

    python benchmarks/bench_e2e.py [--delays 40 200 400] [--seeds 8] [--epochs 300] [--repeats 3] [--cores 2]
                                   [--json e2e.json]

The networks: the ``nopost`` family at one delay, learning rates 0.01 and 0.003, seeds 0..``--seeds``-1 (16
networks by default), ``--epochs`` epochs each, exactly the configurations ``zoo build`` plans for them.

- **loop**: a fresh ``python`` process that plans the same networks and trains them the reference way
  (``benchmarks/baseline.py``: one ``nn.Module`` per network, Python loop over steps, autograd,
  ``torch.optim.SGD``) in ``--cores`` processes x 1 thread. It stores nothing.
- **zoo build**: ``python -m zoo build --family nopost --lr 0.01 --lr 0.003 --delay D --seeds S --epochs E``
  into a fresh folder with ``--cores`` threads: imports, planning, training, labelling, packaging (metadata,
  card and its picture, manifest).

Each is timed from launch to exit (wall clock; CPU time of the process tree beside it), both pinned to the same
``--cores`` cores where ``taskset`` exists. The two alternate (which goes first alternates too), ``--repeats``
rounds per delay; the medians count, and the ratio is loop / zoo build. Prints the CPU model, the load
average, every run, and a one-line summary per delay.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

LRS = (0.01, 0.003)


def _env(cores: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(cores), "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    for var in ("ZOO_KERNELS", "ZOO_C_GEMM"):  # the defaults, as a user gets them
        env.pop(var, None)
    return env


def _pinned(cmd: list[str], cores: int) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= cores:
        return ["taskset", "-c", ",".join(str(c) for c in range(cores)), *cmd]
    return cmd


def _timed(cmd: list[str], cores: int, cwd: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(_pinned(cmd, cores), env=_env(cores), cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu}


def run_loop(delay: int, seeds: int, epochs: int, cores: int, cwd: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child-loop", "--delays", str(delay), "--seeds",
           str(seeds), "--epochs", str(epochs), "--cores", str(cores)]
    return _timed(cmd, cores, cwd)


def run_build(delay: int, seeds: int, epochs: int, cores: int, cwd: Path) -> dict:
    out = cwd / f"zoo-{delay}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "zoo", "build", "--family", "nopost", *[a for lr in LRS for a in ("--lr", str(lr))],
           "--delay", str(delay), "--seeds", str(seeds), "--epochs", str(epochs), "--out", str(out)]
    res = _timed(cmd, cores, cwd)
    from zoo.layout import INFO_PATH

    if not (out / INFO_PATH).exists():
        raise SystemExit(f"zoo build wrote no release into {out}")
    shutil.rmtree(out, ignore_errors=True)
    return res


def _child_loop(delay: int, seeds: int, epochs: int, cores: int) -> None:
    """The loop's process: plan the networks as zoo build does, train them the reference way."""
    from baseline import train_baseline

    from zoo.plan import plan_build

    plan = plan_build(family="nopost", lrs=list(LRS), delays=[delay], seeds=seeds, epochs=epochs)
    cfgs = [c for s in plan.shards for c in s.configs]
    train_baseline(cfgs, processes=cores)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--delays", type=int, nargs="+", default=[40, 200, 400])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child-loop", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_loop:
        _child_loop(args.delays[0], args.seeds, args.epochs, args.cores)
        return {}
    from zoo.kernels import c_backend_info
    from zoo.provenance import cpu_model

    c = c_backend_info()  # builds the C kernels now, outside the timings
    n = len(LRS) * args.seeds
    print(f"CPU: {cpu_model()}; {args.cores} cores of {os.cpu_count()}; C kernels: {c['gemm']} products, "
          f"{c.get('gemm_tiles')} tiles; load average {os.getloadavg()[0]:.2f}", flush=True)
    print(f"{n} networks x {args.epochs} epochs per delay, {args.repeats} rounds, loop and zoo build alternating",
          flush=True)
    results: dict = {"cpu": cpu_model(), "cores": args.cores, "networks": n, "epochs": args.epochs,
                     "c": {k: c.get(k) for k in ("gemm", "gemm_tiles", "compiler")},
                     "loadavg_before": os.getloadavg()[0], "delays": {}}
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        for delay in args.delays:
            runs = {"loop": [], "build": []}
            for r in range(args.repeats):
                order = ("loop", "build") if r % 2 == 0 else ("build", "loop")
                for what in order:
                    fn = run_loop if what == "loop" else run_build
                    res = fn(delay, args.seeds, args.epochs, args.cores, cwd)
                    runs[what].append(res)
                    print(f"  {delay} ms round {r + 1}: {what:5s} {res['wall_s']:7.1f} s wall, {res['cpu_s']:7.1f} s CPU"
                          f" (load {os.getloadavg()[0]:.1f})", flush=True)
            med = {w: {k: statistics.median(x[k] for x in v) for k in ("wall_s", "cpu_s")} for w, v in runs.items()}
            ratio = med["loop"]["wall_s"] / med["build"]["wall_s"]
            ratio_cpu = med["loop"]["cpu_s"] / med["build"]["cpu_s"]
            results["delays"][delay] = {"runs": runs, "median": med, "ratio": ratio, "ratio_cpu": ratio_cpu}
            print(f"SUMMARY {cpu_model()}, {args.cores} cores, {n} nets x {args.epochs} epochs at {delay} ms: loop "
                  f"{med['loop']['wall_s']:.1f} s, zoo build {med['build']['wall_s']:.1f} s: {ratio:.2f}x "
                  f"(CPU time {ratio_cpu:.2f}x; medians of {args.repeats})", flush=True)
    results["loadavg_after"] = os.getloadavg()[0]
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
