"""A shard in progress: the networks trained so far, saved in chunks in its work folder
(``.build/work/<shard>/chunk-*.{safetensors,parquet,json,snapshots}``, :func:`zoo.layout.work_dir`), so a
resumed build trains only the rest. Each chunk's json (written last) holds the sha256 of its other files; a
chunk that fails them is deleted, with a warning, and its networks are trained again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import store
from .config import NetConfig
from .faults import fault_point
from .log import logger
from .manifest import atomic_write_text, file_matches, sha256_file
from .model import PARAM_NAMES
from .provenance import SCORING_BEFORE_COLUMN
from .sharding import Shard
from .task import CURVES, SCORINGS
from .trajectories import write_snapshots


@dataclass(frozen=True)
class TrainedNet:
    """One trained network of a shard in progress, from a saved chunk or a training result: what resuming and
    finishing the shard need."""

    weights: dict[str, torch.Tensor]  # name -> tensor (one network)
    curves: dict[str, np.ndarray]  # curve name -> per-epoch values
    epochs_run: int
    diverged: bool
    snapshots: dict[int, dict[str, torch.Tensor]] | None = None  # epoch -> weights (``--snapshots``)


@dataclass
class ShardWork:
    """The resume state of one shard: its work folder and its networks trained so far (net_id -> network)."""

    shard: Shard
    folder: Path
    nets: dict[str, TrainedNet] = field(default_factory=dict)

    def left(self) -> list[NetConfig]:
        """The shard's networks still to train, in shard order."""
        return [c for c in self.shard.configs if c.net_id not in self.nets]

    def epochs_done(self) -> int:
        """The planned epochs of the networks already trained."""
        return sum(c.epochs for c in self.shard.configs if c.net_id in self.nets)

    def trained(self) -> list[TrainedNet]:
        """Every network of the finished shard, in shard order."""
        return [self.nets[i] for i in self.shard.net_ids]


def resume(shard: Shard, folder: Path, snapshots: bool) -> ShardWork:
    """The valid saved chunks of ``shard`` in its work folder ``folder`` (``snapshots``: the build stores
    them, so each chunk must have its own). A chunk that fails its checksums, or holds networks of another
    shard, is deleted with a warning; so is a chunk whose curves were scored otherwise than builds score now
    (:data:`zoo.task.SCORINGS`; saved by a version before 0.2): its networks are trained again."""
    work = ShardWork(shard, folder)
    ids = set(shard.net_ids)
    for meta_file in sorted(folder.glob("chunk-*.json")):
        try:
            meta = json.loads(meta_file.read_text())
            scored = meta.get("scoring", SCORING_BEFORE_COLUMN)
            if scored != SCORINGS[0]:
                logger().warning(f"warning: discarding chunk {meta_file.name} of {shard.shard_id}: its curves were "
                                 f"scored with {scored!r} (an earlier version), builds score with {SCORINGS[0]!r}")
                for p in folder.glob(meta_file.stem + ".*"):
                    p.unlink(missing_ok=True)
                continue
            wf, cf = meta_file.with_suffix(".safetensors"), meta_file.with_suffix(".parquet")
            for kind, f in (("weights", wf), ("curves", cf)):
                if not f.exists():
                    raise ValueError(f"{f.name} is missing")
                if not file_matches(f, meta["sha256"][kind]):
                    raise ValueError(f"{f.name} does not match its checksum")
            if not set(meta["net_ids"]) <= ids or store.read_weight_ids(wf) != meta["net_ids"]:
                raise ValueError("it holds networks of another shard")
            w = store.read_weights(wf)
            cv = store.read_curves(cf)
            snaps = _read_snapshots(meta_file, meta) if snapshots else None
        except (OSError, ValueError, KeyError, TypeError) as err:
            logger().warning(f"warning: discarding damaged chunk {meta_file.name} of {shard.shard_id}: {err}")
            for p in folder.glob(meta_file.stem + ".*"):
                p.unlink(missing_ok=True)
            continue
        for j, nid in enumerate(meta["net_ids"]):
            work.nets[nid] = TrainedNet({n: w[n][j] for n in PARAM_NAMES}, cv[nid], meta["epochs_run"][j],
                                        meta["diverged"][j], snaps[j] if snaps is not None else None)
    return work


def save_chunk(work: ShardWork, res, rows: list[int]) -> None:
    """Save the networks ``rows`` of a training result ``res`` (:class:`zoo.train.TrainResult`; all of
    ``work``'s shard) as one chunk of its work folder, and add them to ``work``."""
    ids = [res.configs[j].net_id for j in rows]
    pos = {c.net_id: i for i, c in enumerate(work.shard.configs)}
    stem = work.folder / f"chunk-{pos[ids[0]]:05d}"
    weights = {n: w[rows] for n, w in res.weights.items()}
    curves = {c: [res.curves[c][j] for j in rows] for c in CURVES}
    store.write_weights(stem.with_suffix(".safetensors"), weights, ids)
    fault_point("chunk-weights")
    store.write_curves(stem.with_suffix(".parquet"), ids, curves)
    meta = {"net_ids": ids, "epochs_run": res.epochs_run[rows].tolist(), "diverged": res.diverged[rows].tolist(),
            "scoring": res.extra.get("scoring", SCORINGS[0]),
            "sha256": {"weights": sha256_file(stem.with_suffix(".safetensors")),
                       "curves": sha256_file(stem.with_suffix(".parquet"))}}
    if res.snapshots is not None:  # rows over (network, epoch), in the order of ids and sorted epochs
        snaps = [res.snapshots[j] for j in rows]
        write_snapshots(work.folder, stem.with_suffix(".snapshots").name, ids, snaps)
        meta["snapshots"] = {"epochs": [sorted(s) for s in snaps],
                             "sha256": sha256_file(stem.with_suffix(".snapshots"))}
    atomic_write_text(stem.with_suffix(".json"), json.dumps(meta))
    fault_point("chunk-written")
    for j, nid in zip(rows, ids, strict=True):
        work.nets[nid] = TrainedNet(res.state_dict(j), {c: res.curves[c][j] for c in CURVES},
                                    int(res.epochs_run[j]), bool(res.diverged[j]),
                                    res.snapshots[j] if res.snapshots is not None else None)


def _read_snapshots(meta_file: Path, meta: dict) -> list[dict[int, dict[str, torch.Tensor]]]:
    """The snapshots of a chunk's networks (``{epoch: state}`` each), checked against its json; ValueError if
    they are missing or damaged."""
    info = meta.get("snapshots")
    f = meta_file.with_suffix(".snapshots")
    if not info or not f.exists():
        raise ValueError(f"{f.name} is missing (the build stores snapshots)")
    if not file_matches(f, info["sha256"]):
        raise ValueError(f"{f.name} does not match its checksum")
    w = store.read_weights(f)
    out, i = [], 0
    for eps in info["epochs"]:
        out.append({int(e): {n: w[n][i + k] for n in PARAM_NAMES} for k, e in enumerate(eps)})
        i += len(eps)
    return out
