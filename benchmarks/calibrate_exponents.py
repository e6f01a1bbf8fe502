"""The calibration table of docs/method.md: synthetic zoos drawn from known phase diagrams
(:mod:`zoo.analysis.calibration`) on the validation zoo's design and the paper's pooled no-post design, at
several seed counts, fitted with every method. Writes every fit as CSV and the summary as markdown.

    nice -n 10 python benchmarks/calibrate_exponents.py --draws 25 --out benchmarks/results_calibration
    # as docs/method.md's table was made, in two processes, then merged:
    python benchmarks/calibrate_exponents.py --draws 25 --designs validation --out /tmp/cal/validation &
    python benchmarks/calibrate_exponents.py --draws 25 --designs paper --seed 1 --out /tmp/cal/paper &
    wait; python benchmarks/calibrate_exponents.py --merge /tmp/cal/validation.csv /tmp/cal/paper.csv
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from zoo.analysis import METHODS
from zoo.analysis.calibration import (
    CALIBRATION_CI,
    Truth,
    calibrate,
    calibration_table,
    paper_design,
    validation_design,
)

TRUTHS = (Truth(beta_lc=2.0, beta_sp=4.0), Truth(beta_lc=2.7, beta_sp=5.0), Truth(beta_lc=3.0, beta_sp=4.0))
DESIGNS = {"validation": validation_design, "paper": paper_design}


def markdown(results: pd.DataFrame, joint_ci: str = "profile", n_boot: int = 100, jump: float = 0.0) -> str:
    t = calibration_table(results)
    draws = int(t["draws"].max()) if len(t) else 0
    truths = ", ".join(f"(beta_LC {tr.beta_lc:g}, beta_SP {tr.beta_sp:g})" for tr in TRUTHS)
    ci = {**CALIBRATION_CI, "joint": joint_ci if joint_ci != "bootstrap" else f"seed bootstrap, {n_boot} replicates"}
    if jump:
        truths += f", each with {jump:g} of the networks failing at once past D0 (outside the joint fit's shape)"
    lines = [f"Truths {truths}; {draws // len(TRUTHS)} draws per truth, {draws} per row. Intervals: "
             + "; ".join(f"{m}: {c}" for m, c in ci.items() if m in set(results["method"])) + ".", "",
             "| boundary | design | seeds | method | median error | IQR of error | 95 % coverage | no exponent |",
             "|---|---|---|---|---|---|---|---|"]
    for _, r in t.iterrows():
        lines.append(f"| {'beta_LC' if r['kind'] == 'critical_delay' else 'beta_SP'} | {r['design']} | {r['seeds']} "
                     f"| {r['method']} | {r['median_error']:+.2f} | {r['iqr']:.2f} | {r['coverage']:.0%} "
                     f"| {r['failed']:.0%} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draws", type=int, default=16, help="synthetic zoos per (design, seeds, truth)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[4, 8, 16, 32, 100])
    ap.add_argument("--designs", nargs="+", default=list(DESIGNS), choices=list(DESIGNS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--joint-ci", default="profile", choices=["profile", "bootstrap"],
                    help="the joint fit's interval (bootstrap: --n-boot replicates)")
    ap.add_argument("--n-boot", type=int, default=100)
    ap.add_argument("--jump", type=float, default=0.0,
                    help="a share failing at once past D0 in every truth (an onset outside the joint fit's shape)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results_calibration"),
                    help="writes OUT.csv (every fit) and OUT.md (the table)")
    ap.add_argument("--merge", type=Path, nargs="+", help="only merge these CSVs into OUT")
    a = ap.parse_args()
    if a.merge:
        res = pd.concat([pd.read_csv(p) for p in a.merge], ignore_index=True)
    else:
        t0 = time.perf_counter()
        truths = [replace(t, jump=a.jump) for t in TRUTHS]
        res = calibrate([DESIGNS[d]() for d in a.designs], truths, a.seeds, a.draws, seed=a.seed, methods=a.methods,
                        joint_ci=a.joint_ci, n_boot=a.n_boot)
        print(f"{len(res)} fits in {time.perf_counter() - t0:.0f} s")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    res.round(4).to_csv(a.out.with_suffix(".csv"), index=False)
    md = markdown(res, a.joint_ci, a.n_boot, a.jump)
    a.out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
