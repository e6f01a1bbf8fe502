"""The projected wall time of the paper's zoo on one GPU, from the throughput ``bench_gpu.py`` measured.

Per family: the ideal time (full batches at the measured rate), a batch-by-batch simulation in which a batch
shrinks as its networks finish (``train_networks`` groups by trial shape and chunks in order), and what one
``zoo build`` process does (consecutive shards of one trial shape trained together).
"""

from __future__ import annotations

import numpy as np
from gpu_timing import RESULTS, kmax_for, log, save

from zoo.config import NetConfig


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
