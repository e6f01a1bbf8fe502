"""Phase diagram, critical delays and scaling exponents of a zoo.

    python examples/phase_diagram.py [SOURCE] [--family F] [--out DIR] [--n-boot N]

Prints the outcome fractions per (learning rate, delay) cell and the fitted exponents (with confidence
intervals), and writes ``phase_diagram_<family>.png`` and, where the zoo allows a fit,
``scaling_<family>.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from zoo import load_zoo
from zoo.analysis import critical_delays, phase_diagram, scaling_exponent
from zoo.figures import FigureSkipped, plot_phase_diagram, plot_scaling


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", nargs="?", default=None, help="release folder or ORG/NAME (default: bundled sample)")
    p.add_argument("--family", default=None, help="one family (default: each family of the zoo)")
    p.add_argument("--out", type=Path, default=Path("."), help="output folder (default: .)")
    p.add_argument("--n-boot", type=int, default=100, help="bootstrap replicates for the CIs")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    pd.set_option("display.width", 160)

    zoo = load_zoo(args.source, family=args.family)
    meta = zoo.metadata
    for family in sorted(meta["family"].unique()):
        rows = meta[meta["family"] == family]
        table = phase_diagram(rows)
        print(f"\n== {family}: outcome fractions per cell")
        print(table.pivot(index="lr", columns="delay_ms", values="not_learned").sort_index(ascending=False)
              .round(2).to_string())
        print(critical_delays(rows)[["lr", "max_fraction", "d0_ms", "used", "reason"]].to_string(index=False))
        fits = [scaling_exponent(rows, kind=k, n_boot=args.n_boot) for k in ("critical_delay", "slow_point")]
        for f in fits:
            print(f.summary())

        fig = plot_phase_diagram(rows, family)
        path = args.out / f"phase_diagram_{family}.png"
        fig.savefig(path, bbox_inches="tight")
        print(f"wrote {path}")
        try:
            fig = plot_scaling(rows, family, fits=fits)
        except FigureSkipped as why:
            print(f"no scaling plot: {why}")
            continue
        path = args.out / f"scaling_{family}.png"
        fig.savefig(path, bbox_inches="tight")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
