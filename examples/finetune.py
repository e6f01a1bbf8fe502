"""Perturb and fine-tune a trained network.

    python examples/finetune.py [SOURCE] [--net-id ID] [--epochs N] [--extra-delay MS] [--out DIR]

1. Perturbation: add Gaussian noise of growing size to W_rec and re-simulate the task; prints accuracy and
   reliability (the training metrics) per perturbation size.
2. Fine-tuning: continue training the network at a longer delay with ``zoo.train.train_networks``, starting
   from its trained weights (``init_weights``), and compare with the same epochs from its initial weights.
Writes ``finetune.png`` (learning curves).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from zoo import load_zoo  # noqa: E402
from zoo.figures import OKABE_ITO  # noqa: E402
from zoo.task import accuracy_reliability  # noqa: E402
from zoo.train import train_networks  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", nargs="?", default=None, help="release folder or ORG/NAME (default: bundled sample)")
    p.add_argument("--net-id", default=None, help="network (default: a learned one with the longest delay)")
    p.add_argument("--epochs", type=int, default=60, help="fine-tuning epochs")
    p.add_argument("--extra-delay", type=int, default=40, help="ms added to the delay for fine-tuning")
    p.add_argument("--out", type=Path, default=Path("."), help="output folder (default: .)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    zoo = load_zoo(args.source)
    if args.net_id:
        net = zoo[args.net_id]
    else:  # the learned network with the longest delay (the most fragile memory)
        pool = zoo.filter(learned=True) if zoo.metadata["learned"].any() else zoo
        net = pool.filter(delay=int(pool.metadata["delay_ms"].max()))[0]
    print(net)

    # 1. perturb W_rec and re-simulate (all 128 trials, noise on, reproducible)
    task = net.task
    print("sigma (x std of W_rec)  accuracy  reliability")
    for sigma in (0.0, 0.1, 0.3, 1.0):
        model = net.model()
        with torch.no_grad():
            W = model.W_rec.weight
            g = torch.Generator().manual_seed(0)
            W += sigma * W.std() * torch.randn(W.shape, generator=g)
            out, _ = model(task.inputs(), seed=int(net.seed))
        acc, rel = accuracy_reliability(out, task)
        print(f"{sigma:>22.1f}  {float(acc):8.3f}  {float(rel):11.3f}")

    # 2. fine-tune at a longer delay, from the trained weights vs from the initial weights
    cfg = replace(net.config, delay_ms=int(net.delay_ms) + args.extra_delay, epochs=args.epochs)
    trained = {k: v[None] for k, v in net.state_dict().items()}
    res = train_networks([cfg], init_weights=trained)
    scratch = train_networks([cfg])
    ft, sc = res.curves, scratch.curves
    print(f"delay {net.delay_ms} -> {cfg.delay_ms} ms, {args.epochs} epochs: "
          f"accuracy {ft['accuracy'][0][0]:.2f} -> {ft['accuracy'][0][-1]:.2f} (fine-tuned), "
          f"{sc['accuracy'][0][0]:.2f} -> {sc['accuracy'][0][-1]:.2f} (from the initial weights)")

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for ax, curve in zip(axes, ("loss", "accuracy"), strict=True):
        ax.plot(ft[curve][0], color=OKABE_ITO["blue"], label="from the trained weights")
        ax.plot(sc[curve][0], color=OKABE_ITO["orange"], ls="--", label="from the initial weights")
        ax.set_xlabel("epoch")
        ax.set_ylabel(curve)
        ax.set_title(f"{curve} at delay {cfg.delay_ms} ms (lr {cfg.lr:.3g})")
    axes[0].set_yscale("log")
    axes[1].legend()
    path = args.out / "finetune.png"
    fig.savefig(path, bbox_inches="tight")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
