"""The options several ``zoo`` commands share (typer annotations): the grid of a build (preset, family,
learning rates, delays, seeds, epochs), device, batch size, snapshots and the output format."""

from __future__ import annotations

from typing import Annotated

import typer

Preset = Annotated[str | None, typer.Option("--preset", "-p", help="sweep preset (see `zoo presets`); default: the "
                                             "paper definition of --family, else `sample`")]
Family = Annotated[str | None, typer.Option(help="restrict to one family")]
Lr = Annotated[list[float] | None, typer.Option("--lr", help="learning rate (repeatable)")]
Delay = Annotated[list[int] | None, typer.Option("--delay", help="delay in ms (repeatable); for the nomemory family, "
                                                                   "the response length in ms")]
Seeds = Annotated[int | None, typer.Option(help="seeds 0..N-1")]
Epochs = Annotated[int | None, typer.Option(help="replace the family's epoch rule")]
Device = Annotated[str, typer.Option(help="cpu, cuda, cuda:1 or auto")]
BatchSize = Annotated[int | None, typer.Option("--batch-size", help="networks per batch (default: 32 on CPU, from free memory on CUDA)")]


Snapshots = Annotated[str | None, typer.Option(help="also store weights along training: log (epochs 0, 1, 2, "
                                                   "5, 10, ..., final); default: none")]

OutFormat = Annotated[str, typer.Option("--format", help="table, csv or json (machine-readable)")]
Force = Annotated[bool, typer.Option("--force", help="write into a non-empty folder that holds no release or build "
                                                   "of this package (files at release paths are replaced)")]
