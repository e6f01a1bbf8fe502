"""Where one epoch of the batched trainer spends its time, per network-step (a profiling aid, not a test).

    python benchmarks/profile_step.py --delay 200 --k 16 --threads 1 [--kernels c|torch] [--path passes|steps]

``--path passes`` (default with the C backend) times the phases of the batched trainer
(``zoo.train.train_networks``) as they run: the C forward pass, the loss and metrics, the C backward pass, the
SGD update; then it repeats the two C passes with matrix products that do nothing to split them into matrix
products and everything else (noise, tanh, updates, readout).
``--path steps`` replays the step-by-step path (batched torch matmuls + one elementwise kernel call per step,
as used by the torch backend and on CUDA) and times each piece. Times are thread CPU time (robust to other
load on the machine) and wall time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from zoo import kernels  # noqa: E402
from zoo.config import NetConfig  # noqa: E402
from zoo.train import NetworkBatch, Readout  # noqa: E402


class Timer:
    def __init__(self):
        self.cpu, self.wall = {}, {}

    def __call__(self, name):
        return _Phase(self, name)


class _Phase:
    def __init__(self, timer, name):
        self.t, self.name = timer, name

    def __enter__(self):
        self.c0, self.w0 = time.process_time(), time.perf_counter()

    def __exit__(self, *exc):
        self.t.cpu[self.name] = self.t.cpu.get(self.name, 0.0) + time.process_time() - self.c0
        self.t.wall[self.name] = self.t.wall.get(self.name, 0.0) + time.perf_counter() - self.w0


def setup(args):
    cfgs = [NetConfig("nopost", seed=s, lr=0.01, delay_ms=args.delay, epochs=args.epochs) for s in range(args.k)]
    b = NetworkBatch(cfgs, torch.device("cpu"), torch.float32, None)
    task, mc = b.task, b.mc
    T, B, N, K = task.n_steps, task.batch_size, mc.n_units, len(cfgs)
    ch = task.correct_channel()
    ctx = dict(b=b, task=task, mc=mc, T=T, B=B, N=N, K=K, C=task.cue_steps, a=mc.alpha, ch=ch,
               readout=Readout(task, mc.readout == "sigmoid", torch.device("cpu"), torch.float32),
               ok=torch.ones(K, dtype=torch.bool), u_cue=torch.nn.functional.one_hot(ch, 2).float(),
               R=torch.empty((K, T + 1, B, N)), Z=torch.empty((K, T, B, N)), L=torch.empty((K, T, B, 2)))
    return ctx


def epoch_passes(c, e, tm):
    P, K, T, B = c["b"].P, c["K"], c["T"], c["B"]
    W_rec, W_out = P["W_rec.weight"], P["W_out.weight"]
    bias = P["W_in.bias"] + P["W_rec.bias"]
    drive_cue = (P["W_in.weight"].transpose(1, 2) + bias[:, None, :]).index_select(1, c["ch"])
    with tm("forward pass"):
        kernels.forward_pass(W_rec, drive_cue, bias, c["C"], W_out, P["W_out.bias"], c["b"].keys, e,
                             c["mc"].noise_std, c["a"], c["mc"].init_state_std, c["R"], c["Z"], c["L"])
    with tm("loss, metrics, readout gradient"):
        loss, acc, rel, dlogit = c["readout"](c["L"])
    with tm("backward pass"):
        gr = kernels.backward_pass(W_rec, W_out, c["u_cue"], c["C"], c["a"], c["R"], c["Z"], dlogit)
    with tm("SGD update"):
        g = {"W_in.weight": gr["W_in"], "W_in.bias": gr["b"], "W_rec.weight": gr["W_rec"], "W_rec.bias": gr["b"],
             "W_out.weight": gr["W_out"], "W_out.bias": dlogit.view(K, T * B, 2).sum(1)}
        torch.linalg.vector_norm(gr["W_rec"], dim=(1, 2))
        c["b"].sgd_step(g, c["ok"])


def epoch_steps(c, e, tm):
    P, K, T, B, N, C, a = c["b"].P, c["K"], c["T"], c["B"], c["N"], c["C"], c["a"]
    R, Z, L, mc, keys = c["R"], c["Z"], c["L"], c["mc"], c["b"].keys
    W_rec, W_out, b_out = P["W_rec.weight"], P["W_out.weight"], P["W_out.bias"]
    bias = (P["W_in.bias"] + P["W_rec.bias"])[:, None, :]
    drive_cue = (P["W_in.weight"].transpose(1, 2) + bias).index_select(1, c["ch"])
    W_rec_T = W_rec.transpose(1, 2)
    pre = torch.empty((K, B, N))
    kernels.initial_state(keys, e, (B, N), mc.init_state_std, torch.float32, out=R[:, 0])
    torch.baddbmm(b_out[:, None, :], R[:, 0], W_out.transpose(1, 2), out=L[:, 0])
    for t in range(T):
        with tm("fwd GEMM (torch.baddbmm)"):
            torch.baddbmm(drive_cue if t < C else bias, R[:, t], W_rec_T, out=pre)
        with tm("fwd noise+tanh+update+logits"):
            nxt = t + 1 < T
            kernels.noisy_tanh_step(pre, R[:, t], keys, e, t + 1, mc.noise_std, a, Z[:, t], R[:, t + 1],
                                    w_out=W_out if nxt else None, b_out=b_out if nxt else None,
                                    logits_out=L[:, t + 1] if nxt else None, stream_z=True)
    with tm("loss, metrics, readout gradient"):
        loss, acc, rel, dlogit = c["readout"](L)
    with tm("W_out gradient"):
        Rf = R[:, :T].reshape(K, T * B, N)
        torch.bmm(dlogit.view(K, T * B, 2).transpose(1, 2), Rf)
    g, h = torch.zeros((K, B, N)), torch.empty((K, B, N))
    gb_acc = kernels.bias_accumulator(K, B, N)
    for t in range(T - 1, -1, -1):
        with tm("bwd elementwise"):
            kernels.backward_step(g, Z[:, t], dlogit[:, t], W_out, a, h, gb_acc)
        if t:
            with tm("bwd GEMM (baddbmm_)"):
                h.baddbmm_(Z[:, t], W_rec)
            g, h = h, g
    with tm("weight-gradient GEMM (bmm)"):
        torch.bmm(Z.view(K, T * B, N).transpose(1, 2), Rf)


def report(tm, steps, title):
    print(title)
    print(f"  {'phase':36s} {'cpu us':>8s} {'wall us':>8s}   per network-step")
    for name in tm.cpu:
        print(f"  {name:36s} {tm.cpu[name] / steps * 1e6:8.1f} {tm.wall[name] / steps * 1e6:8.1f}")
    print(f"  {'total':36s} {sum(tm.cpu.values()) / steps * 1e6:8.1f} {sum(tm.wall.values()) / steps * 1e6:8.1f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--delay", type=int, default=200)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--kernels", default=None, help="c or torch (default: $ZOO_KERNELS / auto)")
    ap.add_argument("--path", choices=["passes", "steps"], default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.kernels:
        kernels.set_backend(args.kernels)
    info = kernels.c_backend_info()
    path = args.path or ("passes" if kernels.backend_for(torch.empty(1)) == "c" and info["gemm"] else "steps")
    c = setup(args)
    steps = c["K"] * c["T"] * args.epochs
    run = epoch_passes if path == "passes" else epoch_steps
    run(c, 0, Timer())  # warm-up
    tm = Timer()
    for e in range(1, args.epochs + 1):
        run(c, e, tm)
    report(tm, steps, f"K={c['K']} T={c['T']} threads={args.threads} kernels={kernels.backend_for(torch.empty(1))} "
                      f"path={path} gemm={info['gemm']}")
    if path == "passes":
        lib = kernels.c_library()
        lib.zoo_set_gemm(2)  # matrix products that do nothing (profiling only)
        try:
            tm0 = Timer()
            for e in range(1, args.epochs + 1):
                epoch_passes(c, e, tm0)
        finally:
            lib.zoo_set_gemm(kernels.c.gemm_mode())
        print("  split of the C passes (the same passes with matrix products that do nothing):")
        for name in ("forward pass", "backward pass"):
            other = tm0.cpu[name] / steps * 1e6
            print(f"    {name:34s} matrix products {tm.cpu[name] / steps * 1e6 - other:6.1f}   "
                  f"everything else {other:6.1f} cpu us per network-step")


if __name__ == "__main__":
    main()
