"""Experiment grids, the public entry point: a preset (or a family's paper definition) expanded into the
:class:`NetConfig` list of a build, with CLI-style overrides (:func:`make_grid`, :func:`preset_grids`,
:func:`resolve_preset`), the epoch rule each grid trains with (:func:`epoch_rules`) and a grid's counts
(:func:`grid_summary`).

The pieces live in their own modules and are re-exported here, so ``zoo.grids`` stays the one import path:
the families and one family's sweep in :mod:`zoo.families` (:data:`FAMILIES`, :class:`FamilyGrid`,
:class:`EpochRule`, :func:`logspace`); the preset files in :mod:`zoo.preset_files` (:class:`Preset`,
:func:`load_preset`, :func:`list_presets`, :func:`family_grid`, :func:`family_config`); the cut into shards
in :mod:`zoo.sharding` (:class:`Shard`, :func:`shards`). ``PRESETS`` (the names of the shipped presets) is
computed when first asked for: importing this module reads no file.
"""

from __future__ import annotations

from collections.abc import Iterable

from .config import NetConfig
from .errors import check_choice
from .families import FAMILIES, EpochRule, FamilyGrid, Overrides, grid_configs, logspace
from .preset_files import Preset, family_config, family_grid, list_presets, load_preset, preset_names
from .sharding import Shard, shards

__all__ = [
    "DEFAULT_PRESET", "FAMILIES", "EpochRule", "FamilyGrid", "Overrides", "Preset", "Shard", "epoch_rules", "family_config",
    "family_grid", "grid_summary", "list_presets", "load_preset", "logspace", "make_grid", "grid_of", "preset_grids",
    "resolve_preset", "shards",
]


def __getattr__(name: str):
    # PRESETS: the names of the shipped presets (one TOML file each), computed when first asked for, so that
    # importing this module reads no file
    if name == "PRESETS":
        return preset_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


DEFAULT_PRESET = "sample"
"""What ``zoo build`` trains when neither a preset nor a family is named: the bundled sample zoo's grid."""


def resolve_preset(preset: str | Preset | None, family: str | None = None) -> str | Preset:
    """The preset a build starts from: ``preset`` if given; else the paper definition of ``family`` (its own
    preset file: epoch rule, post period, tau, readout and seeds as in the paper); else :data:`DEFAULT_PRESET`.

    So ``--family nopost --lr 0.001`` trains nopost's networks (``max(1000, int(30/lr))`` = 30,000 epochs),
    never the sample preset's fixed 1,000."""
    if preset is not None:
        return preset
    if family is not None:
        return check_choice("family", family, FAMILIES)
    return DEFAULT_PRESET


def epoch_rules(grids: Iterable[FamilyGrid]) -> list[str]:
    """One line per family grid saying which epoch rule it trains with, and whether that is the paper's,
    e.g. ``nopost: 1000 epochs (fixed by the preset; the paper's rule is max(1000, int(30/lr)))``."""
    out = []
    for g in grids:
        paper = family_grid(g.family)
        mine = f"{g.epochs} epochs" if g.epochs is not None else f"epochs = {g.epoch_rule.describe()}"
        theirs = f"{paper.epochs} epochs" if paper.epochs is not None else paper.epoch_rule.describe()
        if (g.epochs, g.epoch_rule) == (paper.epochs, paper.epoch_rule):
            out.append(f"{g.family}: {mine} (the paper's rule)")
        elif all(g.epochs_for(lr) == paper.epochs_for(lr) for lr in g.lrs):
            out.append(f"{g.family}: {mine} (fixed by the preset; the paper's rule, {theirs}, gives the same "
                       "at these learning rates)")
        else:
            out.append(f"{g.family}: {mine} (NOT the paper's rule, which is {theirs})")
    return list(dict.fromkeys(out))


def preset_grids(preset: str | Preset | None = None, overrides: Overrides = Overrides()) -> list[FamilyGrid]:
    """The family grids of ``preset`` after ``overrides`` (no expansion). ``preset`` None: see
    :func:`resolve_preset`."""
    preset = resolve_preset(preset, overrides.family)
    p = preset if isinstance(preset, Preset) else load_preset(preset)
    grids = list(p.families)
    if overrides.family is not None:
        grids = [g for g in grids if g.family == overrides.family] or [family_grid(overrides.family)]
    return [g.apply(overrides) for g in grids]


def make_grid(preset: str | Preset | None = None, *, family: str | None = None, lrs=None, delays=None,
              seeds=None, epochs=None) -> list[NetConfig]:
    """Expand a preset into its networks, with CLI-style overrides.

    ``preset`` None starts from the paper definition of ``family`` if one is given, else from
    :data:`DEFAULT_PRESET` (:func:`resolve_preset`). ``family`` keeps only that family's blocks (the family's
    paper definition if the preset has none);
    ``lrs`` (floats) replace the learning rates; ``delays`` (ms, multiples of 5) replace the delays, or the
    response lengths for nomemory; ``seeds`` N gives seeds 0..N-1; ``epochs`` N replaces the epoch rule.
    Order: family block (preset order), delay (response length), learning rate (as given), seed.
    Overrides apply to every block; networks that several overridden blocks then share appear once.
    Raises :class:`InvalidChoiceError` for unknown names, off-grid durations, bad values and (without
    overrides) blocks of a preset that overlap.
    """
    return grid_of(preset, Overrides(family=family, lrs=lrs, delays=delays, seeds=seeds, epochs=epochs))


def grid_of(preset: str | Preset | None, overrides: Overrides) -> list[NetConfig]:
    """:func:`make_grid` with its overrides as one value."""
    # overrides can make blocks of one family overlap: the grid is the set of networks, keep the first
    return grid_configs(preset_grids(preset, overrides), dedupe=overrides.changes_grid)


def grid_summary(configs: Iterable[NetConfig]) -> dict:
    """Counts of a grid: ``networks``, ``by_family`` (networks per family, in order of appearance),
    ``network_epochs`` (sum of epochs) and ``network_epoch_steps`` (sum of epochs x trial length T)."""
    n = epochs = steps = 0
    by_family: dict[str, int] = {}
    t_cache: dict[tuple, int] = {}
    for c in configs:
        key = (c.delay_ms, c.post_ms, c.response_ms, c.nomemory)
        T = t_cache.get(key)
        if T is None:
            T = t_cache[key] = c.task().n_steps
        n += 1
        by_family[c.family] = by_family.get(c.family, 0) + 1
        epochs += c.epochs
        steps += c.epochs * T
    return {"networks": n, "by_family": by_family, "network_epochs": epochs, "network_epoch_steps": steps}
