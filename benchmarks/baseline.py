"""The straightforward way to train the zoo, as the reference scripts did: the baseline of ``bench_train.py``.

One ``zoo.model.RNN`` (an ``nn.Module``) per network, a Python loop over time steps (``RNN.forward``), autograd,
``torch.optim.SGD(momentum=0.9, weight_decay=1e-7)``, one optimiser step per epoch on the full batch of 128
trials, the per-epoch loss, accuracy, reliability and W_rec gradient norm recorded as the scripts did; one
process per core, one thread each, networks dealt round-robin to the processes.

Noise and initial states come from torch's global generator (``torch.randn``), as in the reference scripts.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from zoo.config import NetConfig  # noqa: E402
from zoo.loss import element_weights, weighted_mse  # noqa: E402
from zoo.model import RNN  # noqa: E402
from zoo.task import accuracy_reliability  # noqa: E402


def train_one(cfg: NetConfig) -> dict:
    """Train one network the reference way; returns its curves and final state_dict."""
    torch.manual_seed(cfg.seed)
    net = RNN.from_seed(cfg.seed, cfg.model_config())
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    task = cfg.task()
    u, y = task.inputs(), task.targets()
    w, _ = element_weights(task)  # (T*B, 2)
    curves = {"loss": [], "accuracy": [], "reliability": [], "grad_norm": []}
    for _ in range(cfg.epochs):
        out, _ = net(u)
        loss = weighted_mse(out.reshape(1, -1, 2), y.reshape(-1, 2), w)[0][0]
        opt.zero_grad()
        loss.backward()
        curves["grad_norm"].append(net.W_rec.weight.grad.norm().item())
        opt.step()
        acc, rel = accuracy_reliability(out.detach(), task)
        curves["loss"].append(loss.item())
        curves["accuracy"].append(acc.item())
        curves["reliability"].append(rel.item())
        if cfg.diverge_loss is not None and curves["loss"][-1] > cfg.diverge_loss:
            break
    return {"curves": curves, "state_dict": net.state_dict()}


def _worker(cfgs: Sequence[NetConfig], threads: int, barrier, queue) -> None:
    torch.set_num_threads(threads)
    train_one(NetConfig("warmup", seed=0, lr=0.01, delay_ms=0, epochs=1))  # first-call costs out of the timing
    barrier.wait()
    t0 = time.perf_counter()
    c0 = time.process_time()
    for cfg in cfgs:
        train_one(cfg)
    queue.put((t0, time.perf_counter(), time.process_time() - c0))


def run_processes(target, parts: Sequence, threads: int) -> dict:
    """Run ``target(part, threads, barrier, queue)`` in one spawned process per part; all start together.

    Returns the wall time from the first start to the last end, and the summed CPU time."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(len(parts)), ctx.Queue()
    procs = [ctx.Process(target=target, args=(part, threads, barrier, queue)) for part in parts]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"worker exited with code {p.exitcode}")
    out = {"wall_s": max(r[1] for r in results) - min(r[0] for r in results), "cpu_s": sum(r[2] for r in results)}
    extra = sorted({str(x) for r in results for x in r[3:]})
    if extra:
        out["info"] = extra
    return out


def train_baseline(cfgs: Sequence[NetConfig], processes: int = 2) -> dict:
    """Train ``cfgs`` the reference way in ``processes`` processes x 1 thread; returns timing."""
    parts = [list(cfgs[i::processes]) for i in range(processes)]
    parts = [p for p in parts if p]
    res = run_processes(_worker, parts, 1)
    res["network_epochs"] = sum(c.epochs for c in cfgs)
    res["network_steps"] = sum(c.epochs * c.task().n_steps for c in cfgs)
    return res


if __name__ == "__main__":
    grid = [NetConfig("nopost", seed=s, lr=0.01, delay_ms=200, epochs=2) for s in range(4)]
    r = train_baseline(grid)
    print(r, f"{r['network_epochs'] / r['wall_s']:.2f} network-epochs/s, "
          f"{r['wall_s'] / r['network_steps'] * 1e6:.0f} us per network-step (machine)",
          f"{math.nan if not r['cpu_s'] else r['cpu_s'] / r['network_steps'] * 1e6:.0f} cpu-us per network-step")
