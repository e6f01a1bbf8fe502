"""The Triton kernels' check on this machine's GPU, alone in its own process (the first step of gpu_session.sh).

    PYTHONPATH=. python benchmarks/gpu_check.py --json check.json [--option I ...] [--tf32] [--dry-run-cpu]

Runs ``zoo.kernels.triton_check`` for the given launch options of
``zoo.kernels.triton_kernels.LAUNCH_OPTIONS`` (default: the one the environment selects, i.e. the trainer's default) and, with ``--tf32``, for the TF32
variant of the first one, which the trainer runs with ``train_networks(tf32=True)``. The JSON is rewritten atomically before and after each check, so a process
killed by an illegal memory access (which poisons the CUDA context) or a time-out leaves which check it was
in (``running``). Exit status 0 if every check passed, 1 if one failed, 2 if CUDA is missing.
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


def write_json(path: str, obj) -> None:
    """Atomic: a temporary file in the same folder, then rename."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, default=str)
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", required=True, help="results file (rewritten atomically)")
    ap.add_argument("--option", type=int, action="append", help="index into LAUNCH_OPTIONS (repeatable)")
    ap.add_argument("--tf32", action="store_true", help="also check the first option with TF32 products")
    ap.add_argument("--dry-run-cpu", action="store_true", help="Triton's interpreter on the CPU (tests)")
    args = ap.parse_args(argv)
    if args.dry_run_cpu:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported
    t0 = time.perf_counter()
    import torch

    from zoo import kernels, settings

    res: dict = {"env": {"python": platform.python_version(), "torch": torch.__version__,
                         "cuda_available": torch.cuda.is_available()}, "checks": []}
    if not torch.cuda.is_available() and not args.dry_run_cpu:
        res["error"] = "CUDA is not available"
        write_json(args.json, res)
        return 2
    dev = torch.device("cpu" if args.dry_run_cpu else "cuda")
    try:
        import triton

        res["env"]["triton"] = triton.__version__
        from zoo.kernels import triton_kernels as kt
    except Exception as exc:  # noqa: BLE001
        res["error"] = f"Triton unavailable: {type(exc).__name__}: {exc}"
        write_json(args.json, res)
        return 1
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        res["env"].update(device=p.name, capability=f"{p.major}.{p.minor}", cuda=torch.version.cuda)
    first = args.option[0] if args.option else None  # None: the environment's option
    todo = [(i, False) for i in (args.option or [None])] + ([(first, True)] if args.tf32 else [])
    ok = True
    for i, tf32 in todo:
        opt = kt.current_option() if i is None else kt.LAUNCH_OPTIONS[i]
        if i is None and opt in kt.LAUNCH_OPTIONS:
            i = kt.LAUNCH_OPTIONS.index(opt)
        row = {"index": i, "option": opt, "tf32": tf32, "env": kt.option_env(opt)}
        res["running"] = row
        write_json(args.json, res)
        os.environ.update(row["env"])
        settings.reload()  # the kernels read the settings, not the environment
        t = time.perf_counter()
        try:
            row["check"] = kernels.triton_check(dev, tf32=tf32) or "ok"
            if dev.type == "cuda":
                torch.cuda.synchronize()
        except Exception as exc:  # noqa: BLE001 - triton_check catches kernel failures; anything else too
            row["check"] = f"{type(exc).__name__}: {exc}"[:500]
            row["traceback"] = traceback.format_exc()[-2000:]
        row["check_s"] = time.perf_counter() - t
        ok &= row["check"] == "ok"
        res["checks"].append(row)
        res.pop("running")
        res["all_ok"], res["elapsed_s"] = ok, time.perf_counter() - t0
        write_json(args.json, res)
        print(f"triton check, option {i}{' (TF32)' if tf32 else ''} {row['env']}: {row['check']} "
              f"({row['check_s']:.1f} s)", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
