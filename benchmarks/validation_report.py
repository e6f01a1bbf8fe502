"""The numbers of docs/validation/ from a built release: outcome fractions per cell, critical delays and
slow-point boundaries per rate, both exponents under both fitting methods, and the time that the reading
commands take on the release (a load test). Writes ``report.json`` and ``tables.md`` into ``--out`` and
copies the metadata table there; the README's prose is written by hand from them.

    python benchmarks/validation_report.py /path/to/release --out docs/validation [--panel no-post]
    # refit only (every method) from the committed table, keeping the load-test numbers of report.json:
    python benchmarks/validation_report.py docs/validation/networks.parquet --out docs/validation
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from zoo import load_zoo
from zoo.analysis import outcomes, phases
from zoo.analysis.theory import THEORY_BETA_RANGE


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and ".build" not in p.parts)


def _cells_md(df: pd.DataFrame) -> str:
    """Markdown: cells 'slow_point / limit_cycle / not learned (of which unstable)' per delay x lr."""
    lrs = sorted(df["lr"].unique(), reverse=True)
    head = "| delay (ms) | " + " | ".join(f"{lr:.3g}" for lr in lrs) + " |"
    lines = [head, "|" + "---|" * (len(lrs) + 1)]
    for d, rows in df.groupby("delay_ms"):
        cells = []
        for lr in lrs:
            c = rows.loc[rows["lr"] == lr, "outcome"].value_counts()
            if not c.sum():
                cells.append("")
                continue
            nl = int(c.get("no_learning", 0) + c.get("unstable", 0))
            cells.append(f"{int(c.get('slow_point', 0))}/{int(c.get('limit_cycle', 0))}/{nl}"
                         + (f" ({int(c.get('unstable', 0))})" if c.get("unstable", 0) else ""))
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _rates_md(tables: dict[str, pd.DataFrame]) -> str:
    """Markdown: per rate, D0 and the slow-point midpoint under every method ('-' = not used, with why; the
    joint fit's with its interval)."""
    base = tables["critical_delay/package"][["lr"]].copy()
    cols = []
    for key, t in tables.items():
        col = "d0_ms" if key.startswith("critical") else "midpoint_ms"
        v = [f"{x:.0f}" if u else f"- ({r})" for x, u, r in zip(t[col], t["used"], t["reason"], strict=True)]
        if col.replace("_ms", "_lo_ms") in t.columns:
            v = [f"{x:.0f} [{lo:.0f}, {hi:.0f}]" if u else f"- ({r}; best {x:.0f})" for x, lo, hi, u, r in zip(
                t[col], t[col.replace("_ms", "_lo_ms")], t[col.replace("_ms", "_hi_ms")], t["used"], t["reason"],
                strict=True)]
        base[key] = v
        cols.append(key)
    head = "| lr | " + " | ".join(cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    for _, row in base.iterrows():
        lines.append(f"| {row['lr']:.3g} | " + " | ".join(str(row[c]) for c in cols) + " |")
    return "\n".join(lines)


def _fits(df: pd.DataFrame, panel: str, n_boot: int) -> tuple[dict, dict]:
    """Both exponents under every method (the joint fit also with its profile interval) and the per-rate
    tables."""
    fits, tables = {}, {}
    for method in outcomes.METHODS:
        for kind in outcomes.KINDS:
            f = phases.scaling_exponent(df, panel, kind=kind, method=method, n_boot=n_boot)
            key = f"{kind}/{method}"
            fits[key] = {"beta": f.beta, "ci": list(f.ci), "ci_method": f.ci_method, "level": f.level,
                         "slope_se": f.slope_se, "ci_regression": list(f.ci_regression), "r2": f.r2,
                         "n_rates": f.n_rates, "n_boot_failed": f.n_boot_failed, "summary": f.summary()}
            if method == "joint":
                fits[key]["ci_profile"] = list(phases.scaling_exponent(df, panel, kind=kind, ci="profile").ci)
                fits[key]["params"] = f.params
            tables[key] = f.rates
    return fits, tables


def _tables_md(df: pd.DataFrame, tables: dict) -> str:
    return ("## Outcomes per cell: slow_point / limit_cycle / not learned (unstable among them)\n\n"
            + _cells_md(df) + "\n\n## Boundaries per learning rate (ms)\n\n"
            + "joint: each rate's boundary under the joint fit's shared shape, with its 95 % profile interval; "
            "package, paper: the two-step fits' per-rate curves.\n\n" + _rates_md(tables) + "\n")


def refit(table: Path, out: Path, panel: str, n_boot: int) -> None:
    """Refit the committed metadata table with every method; keep report.json's other numbers."""
    df = pd.read_parquet(table)
    path = out / "report.json"
    report = json.loads(path.read_text()) if path.exists() else {"panel": panel}
    fits, tables = _fits(df, panel, n_boot)
    report["fits"] = fits
    report["fits_n_boot"] = n_boot
    (out / "tables.md").write_text(_tables_md(df, tables))
    path.write_text(json.dumps(report, indent=1, default=float) + "\n")
    for k, v in fits.items():
        print(k, v["summary"], "profile CI" if "ci_profile" in v else "", v.get("ci_profile", ""))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("release", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--panel", default="no-post", help="family or pooled panel to analyse")
    ap.add_argument("--n-boot", type=int, default=500)
    ap.add_argument("--diagnose-delays", type=int, nargs="+", default=[40, 200, 400])
    args = ap.parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.release.suffix == ".parquet":
        refit(args.release, out, args.panel, args.n_boot)
        return
    report: dict = {"release": str(args.release), "panel": args.panel}

    t0 = time.perf_counter()
    z = load_zoo(args.release)
    report["load_zoo_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    w = z.filter(delay=200).weights()
    report["weights_delay200_s"] = time.perf_counter() - t0
    report["weights_delay200_networks"] = int(next(iter(w.values())).shape[0])
    df = z.metadata
    report["n_networks"] = len(df)
    report["release_bytes"] = _tree_bytes(args.release)
    report["outcomes"] = {k: int(v) for k, v in df["outcome"].value_counts().items()}
    report["by_family"] = {k: int(v) for k, v in df["family"].value_counts().items()}

    fits, tables = _fits(df, args.panel, args.n_boot)
    report["fits"] = fits
    report["theory_beta_range"] = {k: list(v) for k, v in THEORY_BETA_RANGE.items()}

    # the reading commands on this release (subprocesses: what a user waits for)
    zoo_cli = [sys.executable, "-m", "zoo.cli"] if not shutil.which("zoo") else ["zoo"]
    with tempfile.TemporaryDirectory() as tmp:
        report["zoo_info_s"] = _timed(zoo_cli + ["info", str(args.release)])
        report["zoo_figures_s"] = _timed(zoo_cli + ["figures", str(args.release), "--out", tmp, "--format", "png",
                                                    "--n-boot", "200"])
        learned = df[df["learned"] & df["delay_ms"].isin(args.diagnose_delays)]
        report["diagnose_networks"] = len(learned)
        cmd = zoo_cli + ["diagnose", str(args.release), "--learned", "--out", os.path.join(tmp, "diag.parquet")]
        for d in args.diagnose_delays:
            cmd += ["--delay", str(d)]
        report["zoo_diagnose_s"] = _timed(cmd)
        diag = pd.read_parquet(os.path.join(tmp, "diag.parquet"))
        from zoo.analysis import mechanism_agreement, mechanism_confusion

        report["diagnose_agreement"] = mechanism_agreement(diag, df)
        report["diagnose_confusion"] = mechanism_confusion(diag, df).to_dict()

    shutil.copyfile(args.release / "metadata" / "networks.parquet", out / "networks.parquet")
    (out / "tables.md").write_text(_tables_md(df, tables))
    (out / "report.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "fits"}, indent=1, default=float))
    for k, v in fits.items():
        print(k, v["summary"])


if __name__ == "__main__":
    main()
