"""Predict a network's memory mechanism from its weights alone (weight-space learning).

    python examples/weightspace_classifier.py [SOURCE] [--model gnn|mlp] [--steps N] [--out DIR]

Trains a small classifier on the ``train`` split of the learned networks (``zoo.weightspace.WeightDataset``,
target ``mechanism``: limit_cycle / slow_point), picks the step with the best ``validation`` accuracy and
reports the ``test`` accuracy. Splits are by seed (networks sharing initial weights never straddle them).

- ``gnn`` (default): invariant to the order of the hidden units by construction: each unit's own weights
  (input, biases, readout, self-coupling) pass two rounds of messages along W_rec, are averaged over units
  and joined with the 8 largest eigenvalue moduli of W_rec.
- ``mlp``: a plain MLP on the flattened 10,602 weights, trained with random unit permutations
  (``augment=True``), which leave each network's function unchanged.
Writes ``weightspace_classifier.json`` (accuracies, split sizes).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn

from zoo import load_zoo
from zoo.weightspace import unflatten


class UnitGNN(nn.Module):
    """Permutation-invariant classifier of (K, D) flat weight vectors."""

    def __init__(self, hidden: int = 32, n_classes: int = 2, n_eig: int = 8):
        super().__init__()
        self.n_eig = n_eig
        self.embed = nn.Sequential(nn.Linear(7, hidden), nn.Tanh())
        self.msg = nn.ModuleList([nn.Linear(2 * hidden, hidden) for _ in range(2)])
        self.head = nn.Sequential(nn.Linear(hidden + 2 * n_eig, hidden), nn.Tanh(), nn.Linear(hidden, n_classes))

    def spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """(K, 2 n_eig): moduli and |angles| of the n_eig largest eigenvalues of W_rec (no parameters)."""
        W = unflatten(x)["W_rec.weight"].double()
        eig = torch.linalg.eigvals(W)  # (K, N) complex
        top = eig.gather(1, eig.abs().argsort(-1, descending=True)[:, :self.n_eig])
        return torch.cat([top.abs(), top.angle().abs()], -1).float()

    def forward(self, x: torch.Tensor, spec: torch.Tensor | None = None) -> torch.Tensor:
        w = unflatten(x)  # name -> (K, ...)
        W = w["W_rec.weight"]  # (K, N, N)
        unit = torch.cat([w["W_in.weight"], w["W_in.bias"][..., None], w["W_rec.bias"][..., None],
                          w["W_out.weight"].transpose(1, 2), torch.diagonal(W, dim1=1, dim2=2)[..., None]], -1)
        h = self.embed(unit)  # (K, N, hidden)
        for layer in self.msg:  # h_i <- tanh(A [h_i, sum_j W_ij h_j])
            h = torch.tanh(layer(torch.cat([h, W @ h], -1)))
        spec = self.spectrum(x) if spec is None else spec
        return self.head(torch.cat([h.mean(1), spec], -1))


def mlp(dim: int, hidden: int = 64, n_classes: int = 2) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(0.2), nn.Linear(hidden, n_classes))


def stack(ds) -> tuple[torch.Tensor, torch.Tensor]:
    if not len(ds):
        return torch.empty(0, ds.dim), torch.empty(0, dtype=torch.long)
    xs, ys = zip(*(ds[i] for i in range(len(ds))), strict=True)
    return torch.stack(xs), torch.stack(ys)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", nargs="?", default=None, help="release folder or ORG/NAME (default: bundled sample)")
    p.add_argument("--model", choices=("gnn", "mlp"), default="gnn")
    p.add_argument("--steps", type=int, default=300, help="optimisation steps (full batch)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("."), help="output folder (default: .)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)

    zoo = load_zoo(args.source, learned=True)
    train = zoo.weight_dataset("train", "mechanism", augment=args.model == "mlp", seed=args.seed)
    val, test = (zoo.weight_dataset(s, "mechanism") for s in ("validation", "test"))
    print(f"{zoo}: {len(train)} train / {len(val)} validation / {len(test)} test networks (split by seed)")
    path = args.out / "weightspace_classifier.json"
    if not len(train) or len(set(stack(train)[1].tolist())) < 2:
        print("the train split does not hold both mechanisms (too few seeds in this zoo): nothing to learn")
        path.write_text(json.dumps({"model": args.model, "n_train": len(train), "test_accuracy": None}) + "\n")
        return
    if not len(test):
        print("warning: the test split is empty (too few seeds in this zoo): no test accuracy")
    Xv, yv = stack(val)
    Xt, yt = stack(test)
    # standardise with the training set's statistics (per coordinate for the MLP)
    X0, y0 = stack(train)
    mu, sd = (X0.mean(0), X0.std(0) + 1e-6) if args.model == "mlp" else (0.0, 1.0)
    model = UnitGNN() if args.model == "gnn" else mlp(train.dim)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    counts = torch.bincount(y0, minlength=2).float()
    loss_fn = nn.CrossEntropyLoss(weight=counts.sum() / (2 * counts.clamp(min=1)))  # balanced classes

    spectra: dict[int, torch.Tensor] = {}  # the GNN's spectral inputs, computed once per (fixed) tensor

    def logits(X: torch.Tensor) -> torch.Tensor:
        if args.model == "mlp":
            return model((X - mu) / sd)
        if id(X) not in spectra:
            spectra[id(X)] = model.spectrum(X)
        return model(X, spectra[id(X)])

    def accuracy(X, y) -> float:
        if not len(y):
            return float("nan")
        model.eval()
        with torch.no_grad():
            return float((logits(X).argmax(1) == y).float().mean())

    best = (-1.0, None, 0)
    for step in range(args.steps):
        if train.augment:
            train.set_epoch(step)  # new unit permutations
        X, y = stack(train) if train.augment else (X0, y0)
        model.train()
        loss = loss_fn(logits(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 9 or step == args.steps - 1:
            va = accuracy(Xv, yv)
            if va > best[0] or best[1] is None:
                best = (va, {k: v.clone() for k, v in model.state_dict().items()}, step + 1)
    model.load_state_dict(best[1])
    train_acc = accuracy(X0, y0)
    majority = float((yt == counts.argmax()).float().mean()) if len(yt) else float("nan")
    res = {"model": args.model, "n_train": len(train), "n_validation": len(val), "n_test": len(test),
           "best_step": best[2], "train_accuracy": train_acc, "validation_accuracy": best[0],
           "test_accuracy": accuracy(Xt, yt), "test_majority_baseline": majority,
           "test_class_counts": {c: int((yt == i).sum()) for i, c in enumerate(train.classes["mechanism"])}}
    print(f"{args.model}: train accuracy {res['train_accuracy']:.3f}, validation {res['validation_accuracy']:.3f} "
          f"(step {best[2]}), test {res['test_accuracy']:.3f} (majority class: {majority:.3f})")
    path.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
