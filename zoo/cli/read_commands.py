"""The ``zoo`` commands that read a zoo: ``info``, ``ls``, ``figures``, ``diagnose`` and ``verify``, each a
thin call of the library functions users call from Python (:func:`zoo.load_zoo`, :mod:`zoo.figures`,
:mod:`zoo.analysis`, :mod:`zoo.verify`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..errors import ZooError, check_choice
from . import report
from .options import Delay, Device, Family, Lr, OutFormat


def verify(source: Annotated[str | None, typer.Argument(help="folder or ORG/NAME[@REV]; default: the bundled sample")] = None,
           sample: Annotated[int, typer.Option(help="networks to retrain (0 = all)")] = 4,
           seed: Annotated[int, typer.Option(help="seed of the random choice")] = 0,
           net_id: Annotated[list[str] | None, typer.Option("--net-id", help="retrain these (repeatable)")] = None,
           device: Device = "cpu",
           atol: Annotated[float, typer.Option(help="tolerance for weights and curves (0 = bitwise)")] = 0.0):
    """Retrain a random sample of networks from their recorded config and seed; compare weights, curves, labels."""
    from ..verify import expected_result, verify_zoo

    kind, why = expected_result(source, net_ids=net_id or None, device=device)
    report.console.print(f"[bold]expected here:[/] {kind}" + (" (weights, curves and labels equal to the last bit)"
                                                              if kind == "bitwise" else " (small differences, see "
                                                              "README Reproducibility; pass --atol)") + f": {escape(why)}")
    rep = verify_zoo(source, sample=sample, seed=seed, net_ids=net_id or None, device=device, atol=atol)
    # on a narrow terminal the differences go first: whether a network matched matters more than by how much
    cols = (report.Column("net_id", keep=True), report.Column("weights", priority=2),
            report.Column("max |dw|", justify="right", priority=1), report.Column("max |d curve|", justify="right"),
            report.Column("labels", priority=2), report.Column("result", keep=True))
    rows = [(c.net_id, "bitwise" if c.weights_bitwise else "differ", f"{c.weights_max_abs_diff:.3g}",
             f"{max(c.curves_max_abs_diff.values(), default=0.0):.3g}",
             ("equal" if not c.label_diffs else "differ") if c.labels_checked else "skipped",
             "[green]OK[/]" if c.ok else "[bold red]MISMATCH[/]") for c in rep.checks]
    report.print_table(f"retrained {len(rep.checks)} of {rep.n_networks} networks", cols, rows)
    for c in rep.mismatches:  # the problems under the table, whole: a cell would wrap them
        report.console.print(f"{c.net_id}: {escape('; '.join(c.problems))}", highlight=False)
    for note in rep.notes:
        report.console.print(f"[yellow]note:[/] {escape(note)}")
    report.console.print(escape(rep.summary()))
    if not rep.ok:
        raise typer.Exit(1)


def info(source: Annotated[str | None, typer.Argument(help="folder or ORG/NAME[@REV]; default: the bundled sample")] = None,
         fmt: OutFormat = "table"):
    """Counts by family, outcome and delay, and the build provenance."""
    import json

    from ..api import load_zoo
    from ..provenance import describe

    check_choice("format", fmt, ("table", "csv", "json"))
    z = load_zoo(source, fetch=False)
    df = z.metadata
    counts = {col: {str(k): int(v) for k, v in df[col].value_counts(dropna=False).sort_index().items()}
              for col in ("family", "outcome", "delay_ms") if col in df}
    if fmt == "json":
        print(json.dumps({"source": z.source.description, "n_networks": len(z), "info": z.info, "counts": counts},
                         indent=1, default=str))
        return
    if fmt == "csv":
        report.emit(pd.DataFrame([(c, k, v) for c, kv in counts.items() for k, v in kv.items()],
                                 columns=["column", "value", "networks"]), fmt)
        return
    report.console.print(f"{z}  {z.info.get('preset', '')}  label version {z.info.get('label_version', '?')}"
                         + ("  [yellow](partial)[/]" if z.info.get("partial") else ""), soft_wrap=True)
    for col, kv in counts.items():
        t = Table(title=f"by {col}")
        t.add_column(col, overflow="fold")
        t.add_column("networks", justify="right")
        for k, v in kv.items():
            t.add_row(k, str(v))
        report.console.print(t)
    for label, value in describe(z.info.get("provenance") or {}):
        report.console.print(f"[bold]{label}:[/] {escape(value)}", soft_wrap=True, highlight=False)


def ls_(source: Annotated[str | None, typer.Argument()] = None, family: Family = None, delay: Delay = None,
        lr: Lr = None, mechanism: Annotated[str | None, typer.Option()] = None,
        outcome: Annotated[str | None, typer.Option()] = None, seed: Annotated[list[int] | None, typer.Option()] = None,
        limit: Annotated[int, typer.Option(help="rows to show (0 = all)")] = 50, fmt: OutFormat = "table"):
    """List networks matching filters (``--format csv|json``: every metadata column, machine-readable)."""
    from ..api import load_zoo

    check_choice("format", fmt, ("table", "csv", "json"))
    z = load_zoo(source, family=family, delay=delay or None, lr=lr or None, mechanism=mechanism, outcome=outcome,
                 seed=seed or None, fetch=False)
    shown = z.metadata if limit == 0 else z.metadata.head(limit)
    if fmt != "table":
        report.emit(shown, fmt)
        return
    cols = [c for c in ("net_id", "family", "delay_ms", "lr", "seed", "outcome", "psd_ratio", "final_accuracy")
            if c in z.metadata]
    report.print_table(f"{len(z)} networks", [report.Column(c, keep=c == "net_id") for c in cols],
                       [[f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols]
                        for _, r in shown.iterrows()])


def figures(source: Annotated[str | None, typer.Argument(help="folder, ORG/NAME[@REV] or a metadata table (.parquet: "
                                                              "no trajectories); default: the bundled sample")] = None,
            family: Family = None,
            out: Annotated[Path, typer.Option(help="folder for the figures")] = Path("figures"),
            fmt: Annotated[list[str] | None, typer.Option("--format", help="png, pdf or svg (repeatable; default: png and pdf)")] = None,
            n_boot: Annotated[int, typer.Option("--n-boot", help="bootstrap replicates for the exponents' CIs")] = 200,
            method: Annotated[str, typer.Option(help="boundary fits: joint (default: one likelihood over all cells, "
                                                     "calibrated on synthetic zoos, see docs/method.md), package (two-step "
                                                     "robust fit) or paper (the authors' figure scripts)")] = "joint"):
    """Phase diagrams, critical-delay scaling, psd_ratio histograms and example trajectories, per family and per
    pooled panel (no-post = nopost + nopost-narrow, as in the paper); --family takes a family or a panel."""
    from ..analysis.outcomes import METHODS
    from ..figures import make_figures

    check_choice("method", method, METHODS)
    rep = make_figures(source, out, family=family, formats=tuple(fmt or ("png", "pdf")), n_boot=n_boot,
                       method=method, log=lambda line: report.console.print(line, highlight=False))
    report.console.print(f"{len(rep.written)} file(s) written to {out}; {len(rep.skipped)} figure(s) skipped")


def diagnose(source: Annotated[str | None, typer.Argument(help="folder or ORG/NAME[@REV]; default: the bundled sample")] = None,
             family: Family = None, delay: Delay = None, lr: Lr = None,
             learned: Annotated[bool | None, typer.Option("--learned/--all-outcomes", help="only learned networks")] = None,
             write: Annotated[bool, typer.Option(help="store diagnostics/networks.parquet in the release folder and refresh its manifest")] = False,
             out: Annotated[Path | None, typer.Option(help="also save the table (.parquet or .csv)")] = None,
             device: Device = "cpu",
             chunk_size: Annotated[int, typer.Option("--chunk-size", help="networks simulated together")] = 32):
    """Dynamics diagnostics per network (fixed points, limit cycles, dyn_mechanism) and their agreement
    with the reference labels."""
    from ..analysis import diagnose_zoo, mechanism_agreement, mechanism_confusion, write_diagnostics
    from ..api import LocalSource, load_zoo

    z = load_zoo(source, family=family, delay=delay or None, lr=lr or None, learned=learned)
    if write and not isinstance(z.source, LocalSource):
        raise ZooError("--write needs a local release folder (download it with `zoo pull --out DIR` first)")
    with Progress(TextColumn("[bold]diagnosing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=report.console) as prog:
        task = prog.add_task("diagnose", total=len(z))
        df = diagnose_zoo(z, chunk_size=chunk_size, device=None if device == "cpu" else device,
                          progress=lambda n: prog.advance(task, n))
    counts = Table(title=f"{len(df)} networks by dyn_state")
    counts.add_column("dyn_state")
    counts.add_column("networks", justify="right")
    for k, v in df["dyn_state"].value_counts().sort_index().items():
        counts.add_row(str(k), str(v))
    report.console.print(counts)
    if z.metadata["mechanism"].notna().any():
        conf = mechanism_confusion(df, z.metadata)
        t = Table(title="reference mechanism (rows) vs dyn_mechanism (columns), learned networks")
        t.add_column("reference")
        for c in conf.columns:
            t.add_column(str(c), justify="right")
        for idx, r in conf.iterrows():
            t.add_row(str(idx), *[str(int(v)) for v in r])
        report.console.print(t)
        report.console.print(f"agreement: {mechanism_agreement(df, z.metadata):.1%}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(out, index=False) if out.suffix == ".csv" else df.to_parquet(out, index=False)
        report.console.print(f"table written to {out}")
    if write:
        path = write_diagnostics(z.source.folder, df)
        report.console.print(f"stored {path} and refreshed the manifest")
