"""A build's plan: a preset (with CLI-style overrides) expanded into networks and cut into shards, what it
costs (network-epochs) and how large its release will be. Deterministic: a plan depends only on the preset,
the overrides and the shard size, so every worker of a build (and a resumed build) computes the same one.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import grids
from .config import NetConfig
from .errors import InvalidChoiceError
from .model import ModelConfig, param_shapes
from .task import CURVES
from .trajectories import SNAPSHOT_MODES, snapshot_epochs
from .version import __version__

# size estimate (see BuildPlan.estimate_bytes); float32 weights, curves before compression
_BYTES_PER_NETWORK = 4 * sum(math.prod(s) for s in param_shapes(ModelConfig()).values())
_BYTES_PER_CURVE_EPOCH = 4 * len(CURVES)
_WEIGHTS_FILE_OVERHEAD = 1024  # safetensors header (+ ~40 bytes per net_id, counted per network)
_WEIGHTS_HEADER_PER_NETWORK = 40
_CURVES_FILE_OVERHEAD = 4096  # parquet footer, net_id column
_METADATA_PER_NETWORK = 600  # one metadata row (config JSON, labels, paths), compressed
_RELEASE_OVERHEAD = 24_000  # metadata schema, README.md, zoo.json, manifest


@dataclass(frozen=True)
class BuildPlan:
    """A deterministic list of networks cut into shards; depends only on the preset and overrides."""

    preset: str
    changes: grids.Overrides  # what the build changes in its preset
    shard_size: int
    shards: tuple[grids.Shard, ...]
    snapshots: str | None = None  # ``log``: also store weights at log-spaced epochs (zoo.trajectories)

    @property
    def overrides(self) -> dict:
        """:attr:`changes` in their stored form (``plan.json``, ``zoo plan --json``)."""
        return self.changes.to_dict()

    @property
    def configs(self) -> list[NetConfig]:
        return [c for s in self.shards for c in s.configs]

    def shard(self, shard_id: str) -> grids.Shard:
        for s in self.shards:
            if s.shard_id == shard_id:
                return s
        raise InvalidChoiceError("shard", shard_id, [s.shard_id for s in self.shards])

    def select(self, spec: str | None) -> list[grids.Shard]:
        """Shards of ``spec``: None (all), ``I/N`` (every N-th shard starting at I, 0-based) or a shard id.

        ``I/N`` for I = 0..N-1 partitions the plan (each shard in exactly one part), whatever N is."""
        if spec is None:
            return list(self.shards)
        if "/" in spec:
            try:
                i, n = (int(x) for x in spec.split("/"))
            except ValueError:
                raise InvalidChoiceError("shard", spec, hint="use I/N with integers 0 <= I < N, or a shard id") from None
            if not 0 <= i < n:
                raise InvalidChoiceError("shard", spec, hint="use I/N with 0 <= I < N")
            return list(self.shards[i::n])
        return [self.shard(spec)]

    def describe(self) -> str:
        """What is built, for titles, ``zoo.json`` and the card: the preset (or the family's paper definition)
        and every override, e.g. ``family nopost (paper definition), lrs [0.001], delays [160] ms, seeds 0..3``."""
        head = (f"family {self.preset} (paper definition)" if self.preset in grids.FAMILIES
                else f"preset {self.preset}")
        o = self.overrides
        parts = [head]
        if "family" in o:
            parts.append(f"only family {o['family']}")
        if "lrs" in o:
            parts.append(f"lrs {o['lrs']}")
        if "delays" in o:  # --delay sets the response length of the nomemory family
            nomemory = {c.nomemory for c in self.configs}
            parts.append(f"response lengths {o['delays']} ms" if nomemory == {True} else
                         f"delays {o['delays']} ms" + (" (response lengths for nomemory)" if True in nomemory else ""))
        if "seeds" in o:
            parts.append(f"seeds 0..{o['seeds'] - 1}" if isinstance(o["seeds"], int) else f"seeds {o['seeds']}")
        if "epochs" in o:
            parts.append(f"{o['epochs']} epochs (replacing the epoch rule)")
        return ", ".join(parts)

    def epoch_rules(self) -> list[str]:
        """Which epoch rule each family of the plan trains with, and whether it is the paper's."""
        return grids.epoch_rules(grids.preset_grids(self.preset, self.changes))

    def record(self) -> dict:
        """The plan as a build folder stores it (``.build/plan.json``; read back by :func:`plan_from_dict`)."""
        return {"preset": self.preset, "overrides": self.overrides, "shard_size": self.shard_size,
                **({"snapshots": self.snapshots} if self.snapshots else {}),
                "code_version": __version__, "fingerprint": self.fingerprint()}

    def fingerprint(self) -> dict:
        d = {"preset": self.preset, "overrides": self.overrides, "shard_size": self.shard_size,
             "shards": {s.shard_id: s.net_ids for s in self.shards}}
        return d | ({"snapshots": self.snapshots} if self.snapshots else {})

    @property
    def network_epochs(self) -> int:
        return sum(c.epochs for c in self.configs)

    def estimate_bytes(self) -> dict:
        """Release size estimate in bytes (an upper bound for the curves: they are counted before compression,
        every network running all its epochs): ``weights``, ``curves``, ``metadata`` and ``total``
        (``total`` also counts the card, ``zoo.json`` and the manifest)."""
        n, k = len(self.configs), len(self.shards)
        w = n * (_BYTES_PER_NETWORK + _WEIGHTS_HEADER_PER_NETWORK) + k * _WEIGHTS_FILE_OVERHEAD
        c = self.network_epochs * _BYTES_PER_CURVE_EPOCH + k * _CURVES_FILE_OVERHEAD
        m = n * _METADATA_PER_NETWORK
        out = {"weights": w, "curves": c, "metadata": m, "total": w + c + m + _RELEASE_OVERHEAD + 200 * k}
        if self.snapshots:  # every stored epoch is one more copy of the weights, plus a row of its table
            rows = sum(len(snapshot_epochs(self.snapshots, c.epochs)) for c in self.configs)
            out["snapshots"] = rows * (_BYTES_PER_NETWORK + _WEIGHTS_HEADER_PER_NETWORK + 8) + k * (
                _WEIGHTS_FILE_OVERHEAD + _CURVES_FILE_OVERHEAD)
            out["total"] += out["snapshots"]
        return out


#: the most seeds per grid point a plan accepts (checked before any list of networks is made)
MAX_SEEDS = 100_000


def plan_build(preset: str | None = None, *, family: str | None = None, lrs: Sequence[float] | None = None,
               delays: Sequence[int] | None = None, seeds: int | None = None, epochs: int | None = None,
               shard_size: int | None = None, snapshots: str | None = None) -> BuildPlan:
    """Expand a preset (with CLI-style overrides) into a sharded build plan. ``snapshots="log"`` also stores
    each network's weights at log-spaced epochs (:func:`zoo.trajectories.log_epochs`). Without a preset the build starts
    from the paper definition of ``family`` (else the sample preset): see :func:`zoo.grids.resolve_preset`."""
    if seeds is not None and not 1 <= seeds <= MAX_SEEDS:
        raise InvalidChoiceError("--seeds", seeds, hint=f"give 1 to {MAX_SEEDS:,} seeds per grid point")
    if shard_size is not None and shard_size < 1:
        raise InvalidChoiceError("--shard-size", shard_size, hint="give a positive number of networks per shard")
    p = grids.load_preset(grids.resolve_preset(preset, family))
    if family == p.name:  # the family's own definition: naming the family again restricts nothing
        family = None
    return plan_of(p, grids.Overrides(family=family, lrs=lrs, delays=delays, seeds=seeds, epochs=epochs),
                   shard_size, snapshots)


def plan_of(preset: str | grids.Preset, changes: grids.Overrides, shard_size: int | None = None,
            snapshots: str | None = None) -> BuildPlan:
    """:func:`plan_build` with the overrides as one value (a preset, not None)."""
    p = preset if isinstance(preset, grids.Preset) else grids.load_preset(preset)
    configs = grids.grid_of(p, changes)
    size = shard_size or p.shard_size
    if snapshots is not None and snapshots not in SNAPSHOT_MODES:
        raise InvalidChoiceError("snapshots", snapshots, SNAPSHOT_MODES, hint="or none (the default)")
    return BuildPlan(p.name, changes, size, tuple(grids.shards(configs, size)), snapshots or None)


def plan_from_dict(d: dict) -> BuildPlan:
    """The plan stored in a build folder's ``plan.json`` (builds started before it stored ``snapshots`` have it
    in their fingerprint only)."""
    snapshots = d.get("snapshots", d.get("fingerprint", {}).get("snapshots"))
    return plan_of(d["preset"], grids.Overrides.from_dict(d.get("overrides", {})), d["shard_size"], snapshots)


def plan_summary(plan: BuildPlan, out: str | os.PathLike | None = None, shards: bool = True) -> dict:
    """What ``zoo plan`` prints: counts, the size estimate, the shards (and free disk space at ``out``)."""
    est = plan.estimate_bytes()
    d = {"preset": plan.preset, "overrides": plan.overrides, "built_from": plan.describe(),
         "epoch_rules": plan.epoch_rules(), "shard_size": plan.shard_size, "n_shards": len(plan.shards),
         "n_networks": len(plan.configs), "network_epochs": plan.network_epochs, "estimate_bytes": est}
    if out is not None:
        d["free_bytes"] = free_bytes(out)
    if shards:
        d["shards"] = [{"shard_id": s.shard_id, "networks": len(s), "network_epochs": sum(c.epochs for c in s.configs)}
                       for s in plan.shards]
    return d


def free_bytes(path: str | os.PathLike) -> int:
    """Free space on the filesystem that holds ``path`` (or its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
