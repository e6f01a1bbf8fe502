"""How the networks of a shard are trained and written: :func:`build_shards` claims each shard, resumes its
saved chunks, trains the rest in chunks (each saved as one step of progress), then writes the finished shard
straight to its release paths (weights, curves, snapshots), its metadata rows (labelled) and, last, its done
marker. Every file is written atomically, so a process killed at any point leaves either a finished shard or
one that a re-run finishes (docs/scale-out.md). Every executor (:mod:`zoo.executors`) runs shards through it.

Fault points (crash tests, :mod:`zoo.faults`): the named steps :data:`zoo.faults.BUILD_POINTS` and the
points inside every atomic write.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence

import torch

from . import chunks, layout, provenance, store
from .build_folder import BuildFolder
from .claims import Claim
from .devices import resolve_device
from .errors import BuildLockedError
from .faults import fault_point
from .log import logger
from .metadata import label_frame, metadata_rows
from .model import PARAM_NAMES
from .sharding import Shard
from .task import CURVES
from .train import train_networks
from .trajectories import snapshot_epochs, write_snapshots


def build_shards(folder: BuildFolder, shards: Sequence[Shard], *, device="cpu", batch_size: int | None = None,
                 label: bool = True, progress: Callable[[int], None] | None = None) -> dict[str, str]:
    """Train, label and write the ``shards`` of ``folder``'s build that are not done; several shards (of one
    trial shape) train together in one batch (on a GPU, thousands of networks instead of one shard's 512), but
    each is claimed, resumed, written and marked done on its own. ``progress(n)`` is called with network-epochs
    as they finish. Returns ``{shard_id: 'done' (already) | 'built' | 'locked' (a live worker holds it)}``; a
    shard whose files fail verification is trained again."""
    if len({s.configs[0].batch_key() for s in shards}) > 1:
        raise ValueError(f"shards {', '.join(s.shard_id for s in shards)} differ in trial shape or model: "
                         "only shards of one shape train together")
    states: dict[str, str] = {}
    held: list[Claim] = []
    try:
        # 1. claim each shard that is not done
        for shard in shards:
            states[shard.shard_id] = _claim(folder, shard, held)
        todo = [s for s in shards if states[s.shard_id] == "claimed"]
        if not todo:
            return states
        dev = resolve_device(device)
        epochs = _EpochCounter(progress)
        # 2. resume: the networks of each shard's saved chunks count as done
        work = [chunks.resume(s, folder.path(layout.work_dir(s.shard_id)), bool(folder.plan.snapshots))
                for s in todo]
        for w in work:
            if w.nets:
                epochs.add(w.epochs_done())
        left = [(w, c) for w in work for c in w.left()]
        # 3. train the rest in chunks, each saved at once (per shard: its own chunk files) as one step of
        # progress: on CUDA everything left (train_networks sizes its batches from free memory), on the CPU
        # 32 networks (or batch_size)
        if dev.type == "cuda":
            chunk_size, train_bs = batch_size or max(1, len(left)), batch_size
        else:
            chunk_size = train_bs = batch_size or 32
        for start in range(0, len(left), chunk_size):
            chunk = left[start:start + chunk_size]
            snaps = ([snapshot_epochs(folder.plan.snapshots, c.epochs) for _, c in chunk]
                     if folder.plan.snapshots else None)
            res = train_networks([c for _, c in chunk], device=dev, batch_size=train_bs, progress=epochs.epoch,
                                 snapshot_epochs=snaps)
            fault_point("chunk-trained")
            for w in work:
                rows = [j for j, (owner, _) in enumerate(chunk) if owner is w]
                if rows:
                    chunks.save_chunk(w, res, rows)
        # 4. write each finished shard and mark it done; its chunks are no longer needed
        for w in work:
            finish_shard(folder, w, label, dev)
            fault_point("shard-done")
            shutil.rmtree(w.folder, ignore_errors=True)
        epochs.add_rest(sum(c.epochs for s in todo for c in s.configs))
        states.update(dict.fromkeys((s.shard_id for s in todo), "built"))
        return {s.shard_id: states[s.shard_id] for s in shards}
    finally:
        for claim in held:
            claim.release()


def _claim(folder: BuildFolder, shard: Shard, held: list[Claim]) -> str:
    """'done', 'locked', or 'claimed' (the claim appended to ``held``; a damaged shard's marker removed)."""
    if folder.is_done(shard):
        folder.clear_stale_claim(shard.shard_id)
        return "done"
    try:
        held.append(folder.claim(shard.shard_id))
    except BuildLockedError:
        return "locked"
    problem = folder.marker_problem(shard)
    if problem is None:  # finished by another worker between our check and our claim
        return "done"
    if problem != "not finished":
        logger().warning(f"warning: shard {shard.shard_id} is damaged ({problem}); training it again")
        folder.unmark(shard.shard_id)
    return "claimed"


class _EpochCounter:
    """Network-epochs done, passed on to ``progress``; each epoch is a fault point."""

    def __init__(self, progress: Callable[[int], None] | None):
        self.progress, self.done = progress, 0

    def add(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(n)

    def epoch(self, n: int) -> None:
        self.add(n)
        fault_point("epoch")

    def add_rest(self, total: int) -> None:
        """Count the epochs that networks which diverged (and stopped early) did not run."""
        if self.done < total:
            self.add(total - self.done)


def finish_shard(folder: BuildFolder, work: chunks.ShardWork, label: bool, device: torch.device) -> None:
    """Write a shard whose networks are all trained: weights, curves (and snapshots) at their release paths,
    its metadata rows with where it was trained (and labels, if ``label``), then its done marker."""
    shard, nets = work.shard, work.trained()
    ids = shard.net_ids
    weights = {n: torch.stack([t.weights[n].float() for t in nets]) for n in PARAM_NAMES}
    curves = {c: [t.curves[c] for t in nets] for c in CURVES}
    wf, cf = layout.weights_path(shard.family, shard.shard_id), layout.curves_path(shard.family, shard.shard_id)
    store.write_weights(folder.path(wf), weights, ids)
    fault_point("shard-weights")
    store.write_curves(folder.path(cf), ids, curves)
    df = metadata_rows(shard.configs, [t.epochs_run for t in nets], [t.diverged for t in nets], curves, wf, cf)
    if folder.plan.snapshots:  # the log-spaced epochs reached, and the final weights at epochs_run
        snaps = [{**{e: s for e, s in t.snapshots.items() if e <= t.epochs_run}, int(t.epochs_run): t.weights}
                 for t in nets]
        df["snapshots_file"] = write_snapshots(folder.out, layout.snapshots_path(shard.family, shard.shard_id), ids,
                                               snaps)[0]
    for col, value in provenance.network_columns(device).items():  # where and how these were trained
        df[col] = value
    if label:
        df = label_frame(df, weights, curves["accuracy"], curves["reliability"], device)
    folder.mark_done(shard, df, provenance.environment(device))


def label_shards(folder: BuildFolder, device="cpu", force: bool = False) -> int:
    """Label the finished shards of ``folder`` that are not labelled yet (all with ``force``); returns how
    many. Shards whose files fail verification are skipped (a re-run of the build trains them again)."""
    n = 0
    for s in folder.plan.shards:
        if not folder.has_marker(s.shard_id) or (folder.marker(s.shard_id).get("labelled") and not force):
            continue
        problem = folder.marker_problem(s)
        if problem is not None:
            logger().warning(f"warning: not labelling shard {s.shard_id}: {problem}; re-run the build")
            continue
        df = store.read_table(folder.path(layout.part_path(s.shard_id)))
        weights = store.read_weights(folder.path(df["weights_file"].iloc[0]), df["weights_index"].tolist())
        cv = store.read_curves(folder.path(df["curves_file"].iloc[0]))
        df = label_frame(df, weights, [cv[i]["accuracy"] for i in df["net_id"]],
                         [cv[i]["reliability"] for i in df["net_id"]], resolve_device(device))
        folder.mark_done(s, df, folder.marker(s.shard_id).get("provenance"))
        n += 1
    return n
