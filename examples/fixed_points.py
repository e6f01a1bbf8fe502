"""Fixed points, slow points and limit cycles of one network.

    python examples/fixed_points.py [SOURCE] [--net-id ID] [--out DIR]

Runs the network without input and noise from its end-of-trial states, minimises the speed
q(x) = |F(x) - x|^2 / 2 from states along the trajectories, and prints every fixed / slow point with its
stability (Jacobian eigenvalues), the detected limit cycle (period, amplitude) and the resulting
``dyn_mechanism`` next to the reference label. Writes ``fixed_points.png``: the eigenvalues of each point
against the unit circle, and the trajectories projected on their top two principal components with the
points marked.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from zoo import load_zoo  # noqa: E402
from zoo.analysis import diagnose_network  # noqa: E402
from zoo.figures import OKABE_ITO  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", nargs="?", default=None, help="release folder or ORG/NAME (default: bundled sample)")
    p.add_argument("--net-id", default=None, help="network (default: a learned one, a limit cycle if any)")
    p.add_argument("--out", type=Path, default=Path("."), help="output folder (default: .)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    zoo = load_zoo(args.source)
    if args.net_id:
        net = zoo[args.net_id]
    else:
        pool = zoo.filter(mechanism="limit_cycle") if (zoo.metadata["mechanism"] == "limit_cycle").any() else \
            zoo.filter(learned=True) if zoo.metadata["learned"].any() else zoo
        net = pool[0]
    print(net)

    d = diagnose_network(net)
    fp = d.fixed_points
    s = d.summary
    print(f"dyn_state {s['dyn_state']} -> dyn_mechanism {s['dyn_mechanism']} (reference: {net.row['outcome']}); "
          f"trajectories: {s['trajectory_states']}")
    if s["dyn_state"] == "limit_cycle":
        print(f"limit cycle: period {s['cycle_period_steps']:.1f} steps = {s['cycle_period_ms']:.0f} ms, "
              f"amplitude {s['cycle_amplitude']:.2f}")
    print(f"{s['n_fixed_points']} fixed point(s) ({s['n_stable']} stable), {s['n_slow_points']} slow point(s):")
    print(fp.to_frame().to_string(float_format=lambda v: f"{v:.3g}"))

    # top-2 PCs of the trajectories
    R = d.rates.reshape(-1, d.rates.shape[-1])
    mu = R.mean(0)
    _, _, Vt = np.linalg.svd(R - mu, full_matrices=False)
    V = Vt[:2].T

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.8), constrained_layout=True)
    th = np.linspace(0, 2 * np.pi, 200)
    ax1.plot(np.cos(th), np.sin(th), color="black", lw=0.8, label="unit circle")
    colors = [OKABE_ITO[c] for c in ("blue", "orange", "green", "vermillion", "purple", "sky_blue")]
    for i in range(len(fp)):
        ev = fp.eigvals[i]
        kind = "fixed" if fp.is_fixed[i] else "slow"
        ax1.scatter(ev.real, ev.imag, s=14, color=colors[i % len(colors)],
                    label=f"point {i} ({kind}, {'stable' if fp.stable[i] else 'unstable'})")
    ax1.set_aspect("equal")
    ax1.set_xlabel("Re(eigenvalue of the one-step map)")
    ax1.set_ylabel("Im")
    ax1.set_title("Jacobian spectra (stable: inside the unit circle)")
    ax1.legend(fontsize=8, loc="lower left")

    t0 = d.trial_steps
    for j, ttype in enumerate(d.trial_types):
        Y = (d.rates[:, j] - mu) @ V
        ax2.plot(Y[:t0 + 1, 0], Y[:t0 + 1, 1], color="#999999", lw=0.8)
        ax2.plot(Y[t0:, 0], Y[t0:, 1], lw=1.0, color=colors[j % len(colors)], label=f"trial type {ttype}")
    for i in range(len(fp)):
        y = (fp.points[i] - mu) @ V
        ax2.scatter(*y, s=70, marker="o" if fp.is_fixed[i] else "s",
                    facecolor="black" if fp.stable[i] else "white", edgecolor="black", zorder=3)
    ax2.scatter([], [], marker="o", facecolor="black", edgecolor="black", label="stable fixed point")
    ax2.scatter([], [], marker="o", facecolor="white", edgecolor="black", label="unstable fixed point")
    ax2.set_xlabel("PC 1")
    ax2.set_ylabel("PC 2")
    ax2.set_title("noise-free trajectories (grey: trial; colour: autonomous)")
    ax2.legend(fontsize=8)
    fig.suptitle(f"{net.row['net_id']}: {s['dyn_state']} (reference {net.row['outcome']})")
    path = args.out / "fixed_points.png"
    fig.savefig(path, bbox_inches="tight")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
