"""The ``zoo`` commands that make a zoo: ``plan``, ``build``, ``train``, ``label``, ``package``, ``presets``,
``import-reference`` and ``kernels``, each a thin call of the library functions users call from Python
(:mod:`zoo.plan`, :mod:`zoo.build`, :mod:`zoo.executors`, :mod:`zoo.release`, :mod:`zoo.grids`,
:mod:`zoo.reference`, :mod:`zoo.kernels`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import ZooError, check_choice
from . import report
from .options import BatchSize, Delay, Device, Epochs, Family, Force, Lr, OutFormat, Preset, Seeds, Snapshots


def _plan(preset, family, lr, delay, seeds, epochs, shard_size=None, snapshots=None):
    from ..plan import plan_build

    return plan_build(preset, family=family, lrs=lr or None, delays=delay or None, seeds=seeds, epochs=epochs,
                      shard_size=shard_size, snapshots=snapshots)


def _size_fact(est: dict) -> str:
    from ..plan import format_bytes

    parts = [f"weights {format_bytes(est['weights'])}", f"curves {format_bytes(est['curves'])}"]
    if "snapshots" in est:
        parts.append(f"snapshots {format_bytes(est['snapshots'])}")
    return f"{format_bytes(est['total'])} ({', '.join(parts)}; before compression)"


def _card_picture(path: Path, metadata) -> bool:
    """The card's picture (the phase diagram), drawn with matplotlib (imported only when packaging draws it)."""
    from ..figures import write_phase_picture

    return write_phase_picture(path, metadata)


class _BuildDisplay:
    """What `zoo build` / `zoo train` print around :func:`zoo.build.run_build`: the facts of the run, a warning
    if the disk looks too small, the progress bar while shards train, and which shards other workers hold."""

    def __init__(self, plan, out: Path, device, executor: str):
        self.plan, self.out, self.device, self.executor = plan, out, device, executor
        self.prog = None

    def start(self, shards) -> None:
        from ..plan import format_bytes, free_bytes

        self.total_nets, self.left = sum(len(s) for s in shards), len(shards)
        self.done_nets, self.locked = 0, []
        where = self.device
        if self.executor == "local":  # which kernels train here (the Triton kernels are checked now, on a GPU)
            import torch

            from .. import kernels
            from ..devices import resolve_device

            where = f"{self.device} ({kernels.backend_for(torch.empty(0, device=resolve_device(self.device)))} kernels)"
        est = self.plan.estimate_bytes()
        report.print_facts(f"[bold]{self.plan.describe()}[/]", [
            ("networks", f"{len(self.plan.configs):,} in {len(self.plan.shards)} shards"),
            ("this run", f"{len(shards)} shard(s), {self.total_nets:,} networks, on {where}, executor {self.executor}"),
            ("release size", _size_fact(est)),
            *(("epochs", rule) for rule in self.plan.epoch_rules())])
        if free_bytes(self.out) < est["total"]:
            report.console.print(f"[yellow]warning:[/] only {format_bytes(free_bytes(self.out))} free at {self.out}")
        self.prog = report.training_progress()
        self.prog.start()
        self.task = self.prog.add_task("training", total=sum(c.epochs for s in shards for c in s.configs),
                                       nets=f"0/{self.total_nets}")
        if not shards:
            self.stop()

    def advance(self, n: int) -> None:
        self.prog.advance(self.task, n)

    def shard_done(self, s, state: str) -> None:
        self.done_nets += len(s)
        if state == "done":
            self.prog.advance(self.task, sum(c.epochs for c in s.configs))
        elif state == "locked":
            self.locked.append(s.shard_id)
        self.prog.update(self.task, nets=f"{self.done_nets}/{self.total_nets}")
        self.left -= 1
        if self.left == 0:  # training is over (packaging may follow)
            self.stop()

    def stop(self) -> None:
        if self.prog is None:
            return
        self.prog.stop()
        self.prog = None
        if self.locked:
            report.console.print(f"[yellow]{len(self.locked)} shard(s) are being built by another worker:[/] "
                                 f"{', '.join(self.locked[:10])}")


def _run(out: Path, plan, shard, device, batch_size, executor, address, *, label: bool, force: bool):
    """`zoo build` (``label``) or `zoo train`: :func:`zoo.build.run_build`, shown."""
    from ..build import run_build

    show = _BuildDisplay(plan, out, device, executor)
    try:
        return run_build(plan, out, shards=shard, executor=executor, address=address, device=device,
                         batch_size=batch_size, label=label, package=label, picture=_card_picture, force=force,
                         progress=show.advance, on_shard=show.shard_done, on_start=show.start)
    finally:
        show.stop()


def build(preset: Preset = None, family: Family = None, lr: Lr = None, delay: Delay = None, seeds: Seeds = None,
          epochs: Epochs = None, out: Annotated[Path, typer.Option(help="release folder")] = Path("zoo-release"),
          device: Device = "cpu", batch_size: BatchSize = None,
          shard: Annotated[str | None, typer.Option(help="only shard I/N (or a shard id); packaging is left to `zoo package`")] = None,
          executor: Annotated[str, typer.Option(help="local or ray")] = "local",
          address: Annotated[str | None, typer.Option(help="Ray cluster address (executor ray)")] = None,
          shard_size: Annotated[int | None, typer.Option(help="networks per shard (default: the preset's)")] = None,
          snapshots: Snapshots = None, force: Force = False):
    """Train -> label -> package a zoo (resumable: re-run the same command to finish an interrupted build)."""
    plan = _plan(preset, family, lr, delay, seeds, epochs, shard_size, snapshots)
    res = _run(out, plan, shard, device, batch_size, executor, address, label=True, force=force)
    if shard is not None:
        report.console.print(f"shard(s) {shard} finished; when all are, run `zoo package {out}`")
        return
    report.print_outcomes(res.metadata, f"{plan.describe()}: {len(res.metadata)} networks")
    if res.unchanged:
        report.console.print(f"nothing to do: the release in [bold]{out}[/] is complete and up to date")
    else:
        report.console.print(f"release written to [bold]{out}[/]")


def train(preset: Preset = None, family: Family = None, lr: Lr = None, delay: Delay = None, seeds: Seeds = None,
          epochs: Epochs = None, out: Annotated[Path, typer.Option()] = Path("zoo-release"), device: Device = "cpu",
          batch_size: BatchSize = None, shard: Annotated[str | None, typer.Option()] = None,
          executor: Annotated[str, typer.Option()] = "local", address: Annotated[str | None, typer.Option()] = None,
          shard_size: Annotated[int | None, typer.Option()] = None, snapshots: Snapshots = None,
          force: Force = False):
    """Train shards only (no labels); then `zoo label` and `zoo package`."""
    plan = _plan(preset, family, lr, delay, seeds, epochs, shard_size, snapshots)
    _run(out, plan, shard, device, batch_size, executor, address, label=False, force=force)


def label(source: Annotated[Path, typer.Argument(help="a build folder or a packaged release")],
          device: Device = "cpu", force: Annotated[bool, typer.Option(help="relabel labelled shards too")] = False):
    """Label trained networks (a build's shards, or re-label a packaged release without retraining)."""
    from ..build import label_build
    from ..layout import METADATA_PATH, PLAN_PATH
    from ..release import relabel_release

    if (source / PLAN_PATH).exists() and not (source / METADATA_PATH).exists():
        n = label_build(source, device=device, force=force)
        report.console.print(f"labelled {n} shard(s)")
    elif (source / METADATA_PATH).exists():
        df = relabel_release(source, device, picture=_card_picture)
        report.print_outcomes(df, f"relabelled {len(df)} networks")
    else:
        raise ZooError(f"{source} is neither a build folder nor a zoo release")


def package(out: Annotated[Path, typer.Argument(help="the build folder")],
            partial: Annotated[bool, typer.Option(help="package even if some shards are missing")] = False):
    """Merge finished shards into the release (metadata, dataset card, manifest)."""
    from ..build import package_build

    res = package_build(out, partial=partial, picture=_card_picture)
    report.print_outcomes(res.metadata, f"{len(res.metadata)} networks packaged")
    if res.unchanged:
        report.console.print(f"nothing to do: the release in {out} is complete and up to date")


def plan_(preset: Preset = None, family: Family = None, lr: Lr = None, delay: Delay = None, seeds: Seeds = None,
          epochs: Epochs = None, shard_size: Annotated[int | None, typer.Option(help="networks per shard")] = None,
          out: Annotated[Path | None, typer.Option(help="also report free disk space there")] = None,
          as_json: Annotated[bool, typer.Option("--json", help="print JSON (n_shards, n_networks, ...)")] = False,
          snapshots: Snapshots = None,
          power: Annotated[bool, typer.Option("--power", help="also simulate how precisely the joint fit will measure "
                                                              "both exponents on this design (trains nothing)")] = False,
          power_draws: Annotated[int, typer.Option("--power-draws", help="synthetic zoos per design for --power")] = 20):
    """Shards, networks, network-epochs and the release size estimate of a build (trains nothing); with --power,
    the expected interval widths of the exponents (zoo.analysis.power)."""
    import json

    from ..plan import format_bytes, plan_summary

    plan = _plan(preset, family, lr, delay, seeds, epochs, shard_size, snapshots)
    s = plan_summary(plan, out)
    if power:
        from ..analysis.calibration import design_from_configs
        from ..analysis.calibration import power as power_of

        if power_draws < 1:
            raise ZooError(f"--power-draws must be at least 1, got {power_draws}")
        tables = [power_of(d, draws=power_draws) for d in design_from_configs(plan.configs)]
        s["power"] = [r for t in tables for r in t.to_dict("records")]
    if as_json:
        print(json.dumps(s, indent=1))
        return
    facts = [("networks", f"{s['n_networks']:,} in {s['n_shards']} shards of up to {s['shard_size']}"),
             ("network-epochs", f"{s['network_epochs']:,}"), ("release size", _size_fact(s["estimate_bytes"]))]
    if out is not None:
        facts.append(("free space", f"{format_bytes(s['free_bytes'])} at {out}"))
    report.print_facts(f"[bold]{s['built_from']}[/]", facts + [("epochs", rule) for rule in s["epoch_rules"]])
    if power:
        report.print_power(s["power"])


def presets():
    """List the sweep presets."""
    from ..grids import grid_summary, list_presets, load_preset

    t = Table(title="presets")
    for c in ("name", "networks", "network-epochs", "description"):
        t.add_column(c)
    for name in list_presets():
        p = load_preset(name)
        s = grid_summary(p.configs())
        t.add_row(name, str(s["networks"]), f"{s['network_epochs']:.3g}", p.description)
    report.console.print(t)


def import_reference_(src: Annotated[Path, typer.Argument(help="the authors' results folder (lr*_delay_*/process_*/), or its parent")],
                      family: Annotated[str, typer.Option(help="the family these networks belong to")],
                      out: Annotated[Path, typer.Option(help="new release folder")],
                      label: Annotated[bool, typer.Option(help="recompute our labels (simulates learned networks)")] = True,
                      device: Device = "cpu",
                      show: Annotated[int, typer.Option(help="problems to print (0 = all)")] = 50):
    """Import the authors' original per-network files into a release (their label kept as reference_outcome)."""
    from ..reference import import_reference

    rep = import_reference(src, family, out, label=label, device=device, picture=_card_picture,
                           progress=lambda sid, n: report.console.print(f"  {sid}: {n} networks"))
    report.console.print(rep.summary(), soft_wrap=True)
    if rep.problems:  # one block per problem, the folder's full relative path on its own line (never cut)
        shown = rep.problems if show == 0 else rep.problems[:show]
        report.console.print(f"[bold]{len(rep.problems)} problem(s)[/] (all in {out}/zoo.json import_problems):",
                             soft_wrap=True)
        for p in shown:
            report.console.print(escape(p["folder"]), soft_wrap=True, highlight=False)
            report.console.print(f"    problem: {escape(p['problem'])}", soft_wrap=True, highlight=False)
            report.console.print(f"    action:  {escape(p['action'])}", soft_wrap=True, highlight=False)
    report.console.print(f"reference labels: {rep.reference_outcomes}; ours: {rep.outcomes}")


def kernels(device: Device = "cpu",
            require_c: Annotated[bool, typer.Option("--require-c", help="exit 2 if the C kernels cannot be built")] = False,
            as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False):
    """Build the C training kernels now (builders only; reading a zoo needs no compiler) and report which
    backend trains on DEVICE, with its compiler, matrix products and cache folder."""
    import json

    from ..devices import resolve_device
    from ..kernels import kernels_report

    rep = kernels_report(resolve_device(device))
    if as_json:
        print(json.dumps(rep, indent=1, default=str))
    else:
        c = rep["c"]
        report.console.print(f"training on {rep['device']}: [bold]{rep['backend']}[/] kernels (requested: {rep['requested']})",
                             highlight=False)
        if c["available"]:
            report.console.print(f"C kernels: {c['path']}\n  compiler: {c['compiler']}; OpenMP: {c['openmp']}; matrix "
                                 f"products: {c['gemm']}" + (f" ({c['gemm_tiles']} register tiles)" if c.get("gemm_tiles") else ""),
                                 highlight=False)
        else:
            report.console.print(f"[yellow]{escape(rep['advice'])}[/]", highlight=False)
        if "triton" in rep:
            report.console.print(f"Triton: {rep['triton']}", highlight=False)
    if require_c and not rep["c"]["available"]:
        raise typer.Exit(2)


def settings(fmt: OutFormat = "table"):
    """The package's settings (every ZOO_* environment variable): value, default, where it came from."""
    import pandas as pd

    from .. import settings as zoo_settings

    check_choice("format", fmt, ("table", "csv", "json"))
    rows = zoo_settings.describe()
    if fmt != "table":
        report.emit(pd.DataFrame(rows).astype({"value": str, "default": str}), fmt)
        return
    t = Table(title="zoo settings (read once from the environment; `zoo.settings`)")
    for col in ("variable", "value", "from", "what"):
        t.add_column(col, overflow="fold")
    for r in rows:
        value = "-" if r["value"] is None else str(r["value"])
        t.add_row(r["env"], f"[bold]{escape(value)}[/]" if r["source"] == "env" else escape(value), r["source"],
                  r["help"])
    report.console.print(t)

