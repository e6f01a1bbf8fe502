"""Quickstart: open a zoo, filter it, simulate one network and plot it.

    python examples/quickstart.py                 # the sample zoo bundled with the package
    python examples/quickstart.py PATH --out DIR  # a release folder (or a Hub id ORG/NAME)

Writes ``quickstart_network.png`` into ``--out`` (default: the current folder).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from zoo import load_zoo
from zoo.figures import plot_network


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", nargs="?", default=None, help="release folder or ORG/NAME (default: bundled sample)")
    p.add_argument("--out", type=Path, default=Path("."), help="output folder (default: .)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    # 1. open the zoo: only the metadata table is read
    zoo = load_zoo(args.source)
    print(zoo)
    print(zoo.metadata[["family", "lr", "delay_ms", "outcome"]].value_counts(["family", "outcome"]).to_string())

    # 2. filter: keyword filters take a value, a list, or a (low, high) range
    learned = zoo.filter(learned=True)
    print(f"{len(learned)} learned networks; delays {sorted(learned.metadata['delay_ms'].unique())}")
    pool = learned if len(learned) else zoo
    longest = pool.filter(delay=int(pool.metadata["delay_ms"].max()))
    net = longest[0]
    print(net)

    # 3. simulate: the weights are read now; one trial of each type, noise off, reproducible initial state
    sim = net.simulate(trial_types=[0, 1], noise=False, seed=int(net.seed))
    lo, hi = net.task.metric_window
    o = sim["outputs"][lo:hi]  # (10, 2 trials, 2 channels): the scored reaction window
    p_correct = (o / o.sum(-1, keepdim=True))[:, [0, 1], [1, 0]].mean(0)
    print(f"outputs {tuple(sim['outputs'].shape)}, rates {tuple(sim['rates'].shape)}; "
          f"p(correct) in the reaction window: trial type 0 {p_correct[0]:.2f}, type 1 {p_correct[1]:.2f}")

    # the model is a plain torch module with the reference parameter names
    model = net.model()
    print(f"{type(model).__name__}: {sum(t.numel() for t in model.parameters())} parameters, "
          f"|W_rec| = {torch.linalg.matrix_norm(model.W_rec.weight, ord=2):.2f}")

    # 4. plot: outputs and rates on a 9x extended trial
    fig = plot_network(net)
    path = args.out / "quickstart_network.png"
    fig.savefig(path, bbox_inches="tight")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
