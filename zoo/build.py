"""Build a zoo: :func:`run_build` trains, labels and packages a plan into a release folder in one call; its
stages are :func:`label_build` and :func:`package_build`. The CLI (``zoo build``, ``train``, ``label``,
``package``, and so the SLURM scripts), the Ray workers and the tests all go through the same code:

1. :func:`open_build`: the build folder's state (:class:`zoo.build_folder.BuildFolder`), started with the plan
   or, when it holds the same plan already, joined (a re-run resumes);
2. :func:`zoo.executors.execute`: where the shards run (here, or as Ray tasks), each through
   :func:`zoo.shard_build.build_shards` (claim -> resume saved chunks -> train -> write -> done marker);
3. :func:`zoo.release.package_shards`: the finished shards merged into the release (metadata, card,
   ``zoo.json``, manifest).

A process killed at any point leaves a folder that the same call finishes; see docs/scale-out.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from .build_folder import BuildFolder, read_plan_record, same_plan
from .errors import InvalidChoiceError, ZooError, check_choice
from .executors import EXECUTORS, execute
from .plan import BuildPlan, plan_from_dict
from .release import Packaged, PictureWriter, package_shards
from .settings import Settings
from .shard_build import label_shards
from .sharding import Shard


@dataclass(frozen=True)
class BuildResult:
    """What :func:`run_build` did: each shard's state, and the release's metadata if it packaged."""

    states: dict[str, str]  # shard_id -> 'done' (already) | 'built' | 'locked' (another worker holds it)
    metadata: pd.DataFrame | None = None  # the packaged release's metadata table; None when not packaged
    unchanged: bool = False  # the release was already complete and current: packaging wrote nothing


def open_build(out: str | os.PathLike, plan: BuildPlan | None = None, *, settings: Settings | None = None,
               force: bool = False) -> BuildFolder:
    """The build folder ``out``: the build of ``plan`` (started there, or joined if the folder holds the same
    plan), or without ``plan`` the build already there, whose preset must still give the same shards."""
    if plan is not None:
        return BuildFolder.open(out, plan, settings=settings, force=force)
    stored = read_plan_record(out)
    plan = plan_from_dict(stored)
    if not same_plan(stored, plan):
        raise ZooError(f"the build in {out} was planned from preset {stored.get('preset')!r} with overrides "
                       f"{stored.get('overrides')}, but that preset now expands to other shards (the preset file "
                       "changed?); restore it, or start a new build in another --out")
    return BuildFolder(out, plan, settings)


def run_build(plan: BuildPlan, out: str | os.PathLike, *, shards: str | None = None, executor: str = "local",
              address: str | None = None, device="cpu", batch_size: int | None = None, label: bool = True,
              package: bool = True, picture: PictureWriter | None = None, force: bool = False,
              settings: Settings | None = None, progress: Callable[[int], None] | None = None,
              on_shard: Callable[[Shard, str], None] | None = None,
              on_start: Callable[[list[Shard]], None] | None = None) -> BuildResult:
    """Train ``plan`` into the release folder ``out``, label it and package it; resumable: the same call again
    skips finished shards and finishes the rest.

    ``shards``: only those (``I/N``, every N-th shard from I; or a shard id), and then no packaging.
    ``executor``: where shards run (:data:`zoo.executors.EXECUTORS`; ``ray`` on the cluster at ``address``),
    on ``device`` in batches of ``batch_size`` networks (default: 32 on the CPU, what memory holds on CUDA).
    ``label=False``: train only (then :func:`label_build`); ``package=False``: no packaging (then
    :func:`package_build`); ``picture`` draws the card's picture (:func:`zoo.figures.write_phase_picture`).
    ``force`` writes into a non-empty folder that holds no build; ``settings``: the claim TTL.
    Callbacks: ``on_start(shards)`` once the folder is open, before any training; ``progress(n)`` with
    network-epochs as they finish; ``on_shard(shard, state)`` as each shard ends.
    Every option is checked before the folder is touched: a rejected call leaves nothing behind."""
    check_choice("executor", executor, EXECUTORS)
    if batch_size is not None and batch_size < 1:
        raise InvalidChoiceError("--batch-size", batch_size, hint="give a positive number of networks")
    selected = plan.select(shards)
    folder = open_build(out, plan, settings=settings, force=force)
    if on_start is not None:
        on_start(selected)
    states = execute(folder, selected, executor=executor, address=address, device=device, batch_size=batch_size,
                     label=label, progress=progress, on_shard=on_shard)
    if not package or shards is not None:
        return BuildResult(states)
    packaged = package_shards(folder, picture=picture)
    return BuildResult(states, packaged.metadata, packaged.unchanged)


def package_build(out: str | os.PathLike, *, partial: bool = False, picture: PictureWriter | None = None,
                  settings: Settings | None = None) -> Packaged:
    """Package the finished shards of the build in ``out`` into its release (:func:`zoo.release.package_shards`:
    refused while a shard is missing or damaged, unless ``partial``)."""
    return package_shards(open_build(out, settings=settings), partial=partial, picture=picture)


def label_build(out: str | os.PathLike, *, device="cpu", force: bool = False) -> int:
    """Label the trained shards of the build in ``out`` (all of them with ``force``); returns how many."""
    return label_shards(open_build(out), device=device, force=force)
