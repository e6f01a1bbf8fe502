"""Benchmark of ``zoo explore``: build time and size for the bundled sample, the validation zoo (metadata only)
and a synthetic release of the paper's 81,500 networks; page load time in headless Chromium.

The synthetic release has the paper's grid (``make_grid(preset="paper")``: five families, their learning rates,
delays, seeds and epoch rules), outcomes drawn from a phase rule (not learned above a critical learning rate
that falls with the delay, slow points at short delays, limit cycles between), random weights and smooth
curves of each network's full length, but only for the networks the explorer picks (the others are never
read); it is written once into ``--work`` and reused.

    python benchmarks/bench_explore.py --work /tmp/explore-bench [--per-cell 2] [--skip-synthetic]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from zoo import layout, store  # noqa: E402
from zoo.explore import DEFAULT_PER_CELL, build_explorer, pick_networks  # noqa: E402
from zoo.grids import make_grid  # noqa: E402
from zoo.manifest import write_manifest  # noqa: E402
from zoo.model import ModelConfig, param_shapes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def synthetic_release(folder: Path, per_cell: int, seed: int = 0) -> Path:
    """Write (once) the synthetic 81,500-network release described in the module docstring."""
    if (folder / layout.MANIFEST_PATH).exists():
        return folder
    rng = np.random.default_rng(seed)
    cfgs = make_grid("paper")
    rows = []
    for c in cfgs:
        d = c.response_ms if c.nomemory else c.delay_ms
        steps = max(d / 5.0, 1.0)
        lr_c = 0.25 * steps ** -2 * 80  # a limit-cycle-like boundary, shifted into the sampled rates
        p_fail = 1 / (1 + np.exp(-4 * (np.log(c.lr) - np.log(lr_c))))
        p_sp = 1 / (1 + np.exp((d - 120) / 30))
        u = rng.random()
        outcome = ("unstable" if rng.random() < 0.3 else "no_learning") if u < p_fail else (
            "slow_point" if rng.random() < p_sp else "limit_cycle")
        learned = outcome in ("slow_point", "limit_cycle")
        rows.append({"net_id": c.net_id, "family": c.family, "seed": c.seed, "lr": c.lr, "delay_ms": c.delay_ms,
                     "post_ms": c.post_ms, "response_ms": c.response_ms, "tau_ms": c.tau_ms, "nomemory": c.nomemory,
                     "epochs": c.epochs, "epochs_run": c.epochs, "diverged": False,
                     "final_loss": float(rng.uniform(1e-4, 0.3)), "final_accuracy": float(learned or rng.random()),
                     "final_reliability": float(rng.uniform(0.5, 1.0)), "config": json.dumps(c.to_dict()),
                     "outcome": outcome, "mechanism": outcome if learned else None, "learned": learned,
                     "stable": outcome != "unstable",
                     "psd_ratio": float(rng.uniform(0.5, 1) if outcome == "slow_point" else rng.uniform(0, 0.5))
                     if learned else np.nan,
                     "first_learned_epoch": int(rng.integers(10, c.epochs // 2)) if learned else -1})
    meta = pd.DataFrame(rows)
    meta["weights_file"] = [layout.weights_path(f, "synthetic") for f in meta["family"]]
    meta["curves_file"] = [layout.curves_path(f, "synthetic") for f in meta["family"]]
    meta["weights_index"] = 0
    picked = pick_networks(meta, per_cell)
    shapes = param_shapes(ModelConfig())
    for fam, part in picked.groupby("family"):
        K = len(part)
        w = {n: torch.from_numpy(rng.normal(0, 1.5 / np.sqrt(100) if n == "W_rec.weight" else 0.3,
                                            size=(K, *s)).astype(np.float32)) for n, s in shapes.items()}
        (folder / layout.weights_path(fam, "synthetic")).parent.mkdir(parents=True, exist_ok=True)
        store.write_weights(folder / layout.weights_path(fam, "synthetic"), w, part["net_id"].tolist())
        meta.loc[part.index, "weights_index"] = np.arange(K)
        curves = {"loss": [], "accuracy": [], "reliability": [], "grad_norm": []}
        for n in part["epochs"]:
            t = np.arange(n, dtype=np.float32)
            curves["loss"].append(0.3 * np.exp(-t / (n / 5)) + 1e-3)
            curves["accuracy"].append(1 - 0.5 * np.exp(-t / (n / 8)))
            curves["reliability"].append(1 - 0.5 * np.exp(-t / (n / 6)))
            curves["grad_norm"].append(np.exp(-t / n))
        (folder / layout.curves_path(fam, "synthetic")).parent.mkdir(parents=True, exist_ok=True)
        store.write_curves(folder / layout.curves_path(fam, "synthetic"), part["net_id"].tolist(), curves)
    (folder / "metadata").mkdir(parents=True, exist_ok=True)
    store.write_table(folder / layout.METADATA_PATH, meta)
    (folder / layout.INFO_PATH).write_text(json.dumps({"preset": "synthetic-paper"}))
    write_manifest(folder)
    return folder


def page_load_ms(folder: Path, runs: int = 3) -> float | None:
    """Median time from navigation to the drawn phase diagram in headless Chromium (None without one)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        return None
    times = []
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--headless", "--no-sandbox", "--disable-gpu"])
        for _ in range(runs):
            page = b.new_page(viewport={"width": 1300, "height": 900})
            t0 = time.perf_counter()
            page.goto((folder / "index.html").as_uri())
            page.wait_for_selector("#diagram .main-svg", timeout=120_000)
            times.append((time.perf_counter() - t0) * 1e3)
            page.close()
        b.close()
    return float(np.median(times))


def bench(name: str, source, out: Path, per_cell: int) -> dict:
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    rep = build_explorer(source, out, per_cell=per_cell)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    row = {"zoo": name, "networks": rep.n_networks, "cells": rep.n_cells, "with_panels": rep.n_traced,
           "wall_s": round(rep.seconds, 1), "cpu_s": round(cpu, 1), "size_mb": round(rep.size_bytes / 1e6, 1),
           "page_load_ms": page_load_ms(out)}
    print(json.dumps(row), flush=True)
    return row


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True, help="folder for the synthetic release and the explorers")
    ap.add_argument("--per-cell", type=int, default=DEFAULT_PER_CELL)
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--json", type=Path, help="write the rows here")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    rows = [bench("bundled sample", None, args.work / "sample", args.per_cell),
            bench("validation (metadata only)", str(ROOT / "docs/validation/networks.parquet"),
                  args.work / "validation", args.per_cell)]
    if not args.skip_synthetic:
        t0 = time.perf_counter()
        rel = synthetic_release(args.work / "synthetic-release", args.per_cell)
        print(f"synthetic release ready in {time.perf_counter() - t0:.0f} s", flush=True)
        rows.append(bench("synthetic paper zoo (81,500)", str(rel), args.work / "synthetic", args.per_cell))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
