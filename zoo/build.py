"""Build a zoo: plan -> train shards (resumable) -> label -> package into a release folder.

State lives in ``<out>/.build/`` (never uploaded):

- ``plan.json``: the preset, overrides and shard list; a re-run must ask for the same plan.
- ``claims/<shard>``: an atomic claim (O_EXCL) by the worker training the shard, refreshed by a heartbeat
  (its mtime) while the worker runs. A claim is stale, and is taken over, when its process is dead (same
  host) or its heartbeat is older than ``ZOO_CLAIM_TTL_S`` seconds (default 600; any host). Takeovers go
  through ``claims/<shard>.takeover`` (O_EXCL too), so two workers never both take over one claim.
- ``work/<shard>/chunk-*.{safetensors,parquet,json}``: finished training batches of a shard in progress;
  a resumed build keeps them and trains only the remaining networks.
- ``parts/<shard>.parquet`` + ``done/<shard>.json``: a finished shard's metadata rows and its done marker
  (sha256 of its weight, curve and part files, written last). A shard is done only if its marker verifies.

Shard results go straight to their release paths (``weights/<family>/<shard>.safetensors``, ...), so
packaging only merges the metadata parts and writes the card, ``zoo.json`` and the manifest.

Every file is written atomically (temp name + rename) and the done marker last, so a process killed at any
point leaves either a finished shard or one that a re-run finishes; see docs/scale-out.md.

Fault points (crash tests, :mod:`zoo.faults`): the named steps :data:`zoo.faults.BUILD_POINTS` and the
points inside every atomic write.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import claims, grids, labels, layout, provenance, publish, release, store
from .config import NetConfig
from .devices import resolve_device
from .errors import BuildLockedError, MissingShardsError, ReleaseFolderError, ZooError
from .faults import fault_point
from .layout import STATE_DIR, snapshots_path, snapshots_table_path
from .log import logger
from .manifest import atomic_write_text, file_matches, sha256_file
from .metadata import label_frame, metadata_rows
from .model import PARAM_NAMES
from .plan import BuildPlan, plan_from_dict
from .settings import Settings
from .settings import current as current_settings
from .task import CURVES
from .train import train_networks
from .trajectories import snapshot_epochs, write_snapshots
from .version import __version__


@dataclass(frozen=True)
class TrainedNet:
    """One trained network of a shard in progress, from a saved chunk or a training result: what resuming and
    finishing the shard need."""

    weights: dict[str, torch.Tensor]  # name -> tensor (one network)
    curves: dict[str, np.ndarray]  # curve name -> per-epoch values
    epochs_run: int
    diverged: bool
    snapshots: dict[int, dict[str, torch.Tensor]] | None = None  # epoch -> weights (``--snapshots``)


# ---------------------------------------------------------------- the build folder
class Build:
    """A build folder: run shards, resume, label, package. Safe to run from several processes at once."""

    def __init__(self, out: str | os.PathLike, plan: BuildPlan | None = None, *,
                 settings: Settings | None = None, force: bool = False):
        self.out = Path(out)
        self.settings = settings or current_settings()  # the claim TTL; the kernels read their own at training
        self.state = self.out / STATE_DIR
        plan_file = self.out / layout.PLAN_PATH
        if plan is None:
            if not plan_file.exists():
                raise ZooError(f"{self.out} has no build plan ({plan_file} missing); start it with `zoo build`")
            stored = self._read_plan(plan_file)
            plan = plan_from_dict(stored)
            if stored.get("fingerprint") != _jsonable(plan.fingerprint()):
                raise ZooError(f"the build in {self.out} was planned from preset {stored.get('preset')!r} with "
                               f"overrides {stored.get('overrides')}, but that preset now expands to other shards "
                               "(the preset file changed?); restore it, or start a new build in another --out")
        else:
            payload = {"preset": plan.preset, "overrides": plan.overrides, "shard_size": plan.shard_size,
                       "code_version": __version__, "fingerprint": plan.fingerprint()}
            if not plan_file.exists():
                publish.check_output_folder(self.out, force)
                try:
                    claims.create_exclusive(plan_file, json.dumps(_jsonable(payload), indent=1, sort_keys=True))
                except OSError as err:
                    raise ReleaseFolderError(f"cannot start a build in {self.out}: {err.strerror or err} "
                                             f"({err.filename or plan_file}); choose a writable --out") from None
            stored = self._read_plan(plan_file)
            if stored.get("fingerprint") != _jsonable(plan.fingerprint()):
                raise ZooError(
                    f"{self.out} holds a different build: it was started with preset {stored.get('preset')!r}, "
                    f"overrides {stored.get('overrides')}, shard size {stored.get('shard_size')}; this command asks "
                    f"for preset {plan.preset!r}, overrides {plan.overrides}, shard size {plan.shard_size}. Repeat "
                    f"the original options to resume it, or use another --out (or delete {self.state} to restart)")
        self.plan = plan
        self.unchanged = False  # set by package(): True when the release was already complete

    @staticmethod
    def _read_plan(plan_file: Path) -> dict:
        try:
            return json.loads(plan_file.read_text())
        except (OSError, ValueError) as err:
            raise ZooError(f"cannot read the build plan {plan_file}: {err}") from None

    # -- status
    def _done_file(self, shard_id: str) -> Path:
        return self.out / layout.done_path(shard_id)

    def _part_path(self, shard_id: str) -> str:
        return layout.part_path(shard_id)

    def marker_problem(self, shard: grids.Shard) -> str | None:
        """None if the shard is done: its marker exists, is readable and every file it lists matches its
        sha256; otherwise why not ('not finished', or what is wrong)."""
        f = self._done_file(shard.shard_id)
        if not f.exists():
            return "not finished"
        try:
            marker = json.loads(f.read_text())
            files = dict(marker["files"])
        except (OSError, ValueError, KeyError, TypeError):
            return f"its done marker {f.relative_to(self.out)} is unreadable"
        expected = {layout.weights_path(shard.family, shard.shard_id), layout.curves_path(shard.family, shard.shard_id),
                    self._part_path(shard.shard_id), *self._snapshot_files(shard)}
        if set(files) != expected or marker.get("n") != len(shard):
            return f"its done marker {f.relative_to(self.out)} does not describe this shard"
        for rel, digest in sorted(files.items()):
            p = self.out / rel
            if not p.exists():
                return f"{rel} is missing"
            if not file_matches(p, digest):
                return f"{rel} does not match its checksum (corrupt or truncated)"
        return None

    def _snapshot_files(self, shard: grids.Shard) -> list[str]:
        """The snapshot shard and its table, if the plan stores snapshots."""
        if not self.plan.snapshots:
            return []
        rel = snapshots_path(shard.family, shard.shard_id)
        return [rel, snapshots_table_path(rel)]

    def is_done(self, shard: grids.Shard, verify: bool = True) -> bool:
        """True if the shard's done marker exists and (``verify``) every file it lists matches its sha256."""
        if not verify:
            return self._done_file(shard.shard_id).exists()
        return self.marker_problem(shard) is None

    def status(self, verify: bool = True) -> dict[str, str]:
        """``{shard_id: 'done' | 'partial' | 'todo' | 'corrupt'}``."""
        out = {}
        for s in self.plan.shards:
            if self._done_file(s.shard_id).exists():
                out[s.shard_id] = "done" if self.is_done(s, verify) else "corrupt"
            elif (self.out / layout.work_dir(s.shard_id)).exists():
                out[s.shard_id] = "partial"
            else:
                out[s.shard_id] = "todo"
        return out

    # -- claims (the protocol: zoo.claims)
    def _claim(self, shard_id: str) -> claims.Claim:
        return claims.claim(self.out / layout.claim_path(shard_id), shard_id, ttl=self.settings.claim_ttl_s)

    # -- training
    def run_shard(self, shard: grids.Shard, *, device="cpu", batch_size: int | None = None,
                  label: bool = True, progress: Callable[[int], None] | None = None) -> str:
        """Train (and label) one shard unless it is done. Returns 'done' (already), 'built' or 'locked'
        (another live worker holds it). A shard whose files fail verification is trained again."""
        return self.run_shards([shard], device=device, batch_size=batch_size, label=label,
                               progress=progress)[shard.shard_id]

    def run_shards(self, shards: Sequence[grids.Shard], *, device="cpu", batch_size: int | None = None,
                   label: bool = True, progress: Callable[[int], None] | None = None) -> dict[str, str]:
        """Like :meth:`run_shard` for several shards of one trial shape, trained together (on a GPU, one batch
        of thousands of networks instead of one shard's 512). Each shard is claimed, resumed, written and
        marked done on its own. Returns ``{shard_id: 'done' | 'built' | 'locked'}``."""
        keys = {s.configs[0].batch_key() for s in shards}
        if len(keys) > 1:
            raise ValueError(f"shards {', '.join(s.shard_id for s in shards)} differ in trial shape or model: "
                             "only shards of one shape train together")
        states: dict[str, str] = {}
        held, todo = [], []
        try:
            for shard in shards:
                if self.is_done(shard):
                    claims.clear_stale(self.out / layout.claim_path(shard.shard_id), ttl=self.settings.claim_ttl_s)
                    states[shard.shard_id] = "done"
                    continue
                try:
                    held.append(self._claim(shard.shard_id))
                except BuildLockedError:
                    states[shard.shard_id] = "locked"
                    continue
                problem = self.marker_problem(shard)
                if problem is None:  # finished by another worker between our check and our claim
                    states[shard.shard_id] = "done"
                    continue
                if problem != "not finished":
                    logger().warning(f"warning: shard {shard.shard_id} is damaged ({problem}); training it again")
                    self._done_file(shard.shard_id).unlink(missing_ok=True)
                todo.append(shard)
            if todo:
                self._train_shards(todo, device, batch_size, label, progress)
                states.update(dict.fromkeys((s.shard_id for s in todo), "built"))
        finally:
            for claim in held:
                claim.release()
        return {s.shard_id: states[s.shard_id] for s in shards}

    def _chunks(self, shard: grids.Shard) -> tuple[dict[str, TrainedNet], Path]:
        """Valid finished chunks of a shard in progress: net_id -> its weights, curves and run info.
        A chunk that fails its checksums (or does not belong to the shard) is deleted, with a warning."""
        work = self.out / layout.work_dir(shard.shard_id)
        ids = set(shard.net_ids)
        found: dict[str, TrainedNet] = {}
        for meta_file in sorted(work.glob("chunk-*.json")):
            try:
                meta = json.loads(meta_file.read_text())
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
                snaps = _read_chunk_snapshots(meta_file, meta) if self.plan.snapshots else None
            except (OSError, ValueError, KeyError, TypeError) as err:
                logger().warning(f"warning: discarding damaged chunk {meta_file.name} of {shard.shard_id}: {err}")
                for p in work.glob(meta_file.stem + ".*"):
                    p.unlink(missing_ok=True)
                continue
            for j, nid in enumerate(meta["net_ids"]):
                found[nid] = TrainedNet({n: w[n][j] for n in PARAM_NAMES}, cv[nid], meta["epochs_run"][j],
                                        meta["diverged"][j], snaps[j] if snaps is not None else None)
        return found, work

    def _train_shards(self, shards, device, batch_size, label, progress):
        dev = resolve_device(device)
        total = sum(c.epochs for shard in shards for c in shard.configs)
        reported = [0]

        def report(n: int) -> None:
            reported[0] += n
            if progress is not None:
                progress(n)

        def on_epoch(n: int) -> None:
            report(n)
            fault_point("epoch")

        found: dict[str, dict[str, TrainedNet]] = {}
        work: dict[str, Path] = {}
        todo: list[tuple[grids.Shard, NetConfig]] = []
        for shard in shards:
            done, work[shard.shard_id] = self._chunks(shard)
            found[shard.shard_id] = done
            if done:
                report(sum(c.epochs for c in shard.configs if c.net_id in done))
            todo += [(shard, c) for c in shard.configs if c.net_id not in done]
        # a chunk is one saved step of progress: on CUDA everything left (train_networks sizes its batches
        # from free memory), on CPU 32 networks (or --batch-size); each shard's part is saved on its own
        if dev.type == "cuda":
            chunk_size, train_bs = batch_size or max(1, len(todo)), batch_size
        else:
            chunk_size = train_bs = batch_size or 32
        for s in range(0, len(todo), chunk_size):
            chunk = todo[s:s + chunk_size]
            snap = ([snapshot_epochs(self.plan.snapshots, c.epochs) for _, c in chunk] if self.plan.snapshots
                    else None)
            res = train_networks([c for _, c in chunk], device=dev, batch_size=train_bs, progress=on_epoch,
                                 snapshot_epochs=snap)
            fault_point("chunk-trained")
            for shard in shards:
                rows = [j for j, (owner, _) in enumerate(chunk) if owner is shard]
                if rows:
                    self._write_chunk(shard, work[shard.shard_id], found[shard.shard_id], res, rows)
        for shard in shards:
            self._finish_shard(shard, found[shard.shard_id], label, dev)
            fault_point("shard-done")
            shutil.rmtree(work[shard.shard_id], ignore_errors=True)
        if reported[0] < total:  # networks that diverged stopped early: count their epochs as done
            report(total - reported[0])

    @staticmethod
    def _write_chunk(shard, work: Path, found: dict[str, TrainedNet], res, rows: list[int]) -> None:
        """Save the networks ``rows`` of a training result (all of ``shard``) as one chunk of its work folder."""
        ids = [res.configs[j].net_id for j in rows]
        pos = {c.net_id: i for i, c in enumerate(shard.configs)}
        stem = work / f"chunk-{pos[ids[0]]:05d}"
        weights = {n: w[rows] for n, w in res.weights.items()}
        curves = {c: [res.curves[c][j] for j in rows] for c in CURVES}
        store.write_weights(stem.with_suffix(".safetensors"), weights, ids)
        fault_point("chunk-weights")
        store.write_curves(stem.with_suffix(".parquet"), ids, curves)
        meta = {"net_ids": ids, "epochs_run": res.epochs_run[rows].tolist(), "diverged": res.diverged[rows].tolist(),
                "sha256": {"weights": sha256_file(stem.with_suffix(".safetensors")),
                           "curves": sha256_file(stem.with_suffix(".parquet"))}}
        if res.snapshots is not None:  # rows over (network, epoch), in the order of ids and sorted epochs
            snaps = [res.snapshots[j] for j in rows]
            write_snapshots(work, stem.with_suffix(".snapshots").name, ids, snaps)
            meta["snapshots"] = {"epochs": [sorted(s) for s in snaps],
                                 "sha256": sha256_file(stem.with_suffix(".snapshots"))}
        atomic_write_text(stem.with_suffix(".json"), json.dumps(meta))
        fault_point("chunk-written")
        for j, nid in zip(rows, ids, strict=True):
            found[nid] = TrainedNet(res.state_dict(j), {c: res.curves[c][j] for c in CURVES}, int(res.epochs_run[j]),
                                    bool(res.diverged[j]), res.snapshots[j] if res.snapshots is not None else None)

    def _finish_shard(self, shard, found: dict[str, TrainedNet], label, device):
        ids = shard.net_ids
        nets = [found[i] for i in ids]
        weights = {n: torch.stack([t.weights[n].float() for t in nets]) for n in PARAM_NAMES}
        curves = {c: [t.curves[c] for t in nets] for c in CURVES}
        wf, cf = layout.weights_path(shard.family, shard.shard_id), layout.curves_path(shard.family, shard.shard_id)
        store.write_weights(self.out / wf, weights, ids)
        fault_point("shard-weights")
        store.write_curves(self.out / cf, ids, curves)
        df = metadata_rows(shard.configs, [t.epochs_run for t in nets], [t.diverged for t in nets], curves, wf, cf)
        if self.plan.snapshots:  # the log-spaced epochs reached, and the final weights at epochs_run
            snaps = [{**{e: s for e, s in t.snapshots.items() if e <= t.epochs_run}, int(t.epochs_run): t.weights}
                     for t in nets]
            df["snapshots_file"] = write_snapshots(self.out, snapshots_path(shard.family, shard.shard_id), ids,
                                                   snaps)[0]
        for col, value in provenance.network_columns(device).items():  # where and how these were trained
            df[col] = value
        if label:
            df = label_frame(df, weights, curves["accuracy"], curves["reliability"], device)
        self._write_part(shard, df, wf, cf, provenance.environment(device))

    def _write_part(self, shard, df, wf, cf, env: dict | None = None):
        part = self._part_path(shard.shard_id)
        store.write_table(self.out / part, df)
        fault_point("shard-part")
        files = {rel: sha256_file(self.out / rel) for rel in (wf, cf, part, *self._snapshot_files(shard))}
        labelled = "outcome" in df
        atomic_write_text(self._done_file(shard.shard_id),
                          json.dumps({"files": files, "labelled": labelled, "n": len(df), "provenance": env},
                                     indent=1))

    def label_shards(self, device="cpu", force: bool = False) -> int:
        """Label finished shards that are not labelled yet (all with ``force``); returns how many.
        Shards whose files fail verification are skipped (a re-run of the build trains them again)."""
        n = 0
        for s in self.plan.shards:
            f = self._done_file(s.shard_id)
            if not f.exists() or (claims.read_record(f).get("labelled") and not force):
                continue
            problem = self.marker_problem(s)
            if problem is not None:
                logger().warning(f"warning: not labelling shard {s.shard_id}: {problem}; re-run the build")
                continue
            df = store.read_table(self.out / self._part_path(s.shard_id))
            wf, cf = df["weights_file"].iloc[0], df["curves_file"].iloc[0]
            weights = store.read_weights(self.out / wf, df["weights_index"].tolist())
            cv = store.read_curves(self.out / cf)
            df = label_frame(df, weights, [cv[i]["accuracy"] for i in df["net_id"]],
                             [cv[i]["reliability"] for i in df["net_id"]], resolve_device(device))
            self._write_part(s, df, wf, cf, claims.read_record(f).get("provenance"))
            n += 1
        return n

    # -- packaging
    def release_is_current(self, digest: str) -> bool:
        """True if the folder holds a whole release (every core file matching its manifest) packaged from
        exactly these shards (``digest``: of their done markers); re-packaging it would change nothing."""
        from .sources import LocalSource

        try:
            src = LocalSource(self.out)
            if src.read_info().get("parts_sha256") != digest:
                return False
            src.local_paths([r for r in src.manifest if not layout.is_shard(r)])
        except (ZooError, OSError, ValueError):
            return False
        return True

    def package(self, *, partial: bool = False, extra_info: dict | None = None,
                picture: release.PictureWriter | None = None) -> pd.DataFrame:
        """Merge finished shards into the release (metadata, card, zoo.json, manifest; the card's picture drawn
        by ``picture``, e.g. :func:`zoo.figures.write_phase_picture`).

        Refuses (:class:`MissingShardsError`, listing them) if a shard is not finished or fails verification,
        unless ``partial``: then only the finished shards are released and ``zoo.json`` / the card say so."""
        if (self.out / layout.CLAIMS_DIR).is_dir():  # litter of workers killed while claiming
            claims.remove_orphan_temp_files(self.out / layout.CLAIMS_DIR)
        publish.recover(self.out)  # a packaging killed in its switch is finished first
        problems = {s.shard_id: self.marker_problem(s) for s in self.plan.shards}
        missing = [sid for sid, p in problems.items() if p is not None]
        if missing and not partial:
            bad = [f"{sid} ({p})" for sid, p in problems.items() if p not in (None, "not finished")]
            hint = ("finish them with `zoo build --out DIR` (it resumes and retrains damaged shards), or package "
                    "what exists with `zoo package DIR --partial`")
            if bad:
                hint = f"damaged: {'; '.join(bad[:10])}. " + hint
            raise MissingShardsError(missing, hint)
        parts = []
        for s in self.plan.shards:
            if problems[s.shard_id] is not None:
                continue
            if not claims.read_record(self._done_file(s.shard_id)).get("labelled"):
                raise ZooError(f"shard {s.shard_id} is trained but not labelled; run `zoo label {self.out}`")
            part = store.read_table(self.out / self._part_path(s.shard_id))
            if part["net_id"].tolist() != s.net_ids:
                raise ZooError(f"the metadata part of shard {s.shard_id} does not list its networks; "
                               f"delete {self._done_file(s.shard_id)} and re-run the build")
            parts.append(part)
        if not parts:
            raise MissingShardsError(missing, "nothing to package yet")
        verified = {}
        for s in self.plan.shards:
            if problems[s.shard_id] is None:
                verified.update(claims.read_record(self._done_file(s.shard_id)).get("files", {}))
        digest = _digest({"files": verified, "missing": missing})
        if self.release_is_current(digest):
            self.unchanged = True
            return store.read_table(self.out / layout.METADATA_PATH)
        fault_point("package")
        df = pd.concat(parts, ignore_index=True)
        if df["net_id"].duplicated().any():  # cannot happen with a valid plan; never release duplicates
            raise ZooError(f"duplicate networks in the build: {df.loc[df['net_id'].duplicated(), 'net_id'].tolist()[:5]}")
        release.remove_unlisted_shard_files(self.out, df)  # a partial release: no files of unfinished shards
        info = {"preset": self.plan.preset, "overrides": self.plan.overrides, "built_from": self.plan.describe(),
                "epoch_rules": self.plan.epoch_rules(), "code_version": __version__,
                "label_version": labels.LABEL_VERSION, "partial": bool(missing),
                "missing_shards": missing, "n_shards": len(self.plan.shards),
                "n_networks_planned": len(self.plan.configs),
                **({"snapshots": self.plan.snapshots} if self.plan.snapshots else {}),
                "provenance": provenance.summarize(
                    provenance.environment("cpu"), (claims.read_record(self._done_file(s.shard_id)).get("provenance")
                                                    for s in self.plan.shards if problems[s.shard_id] is None), df),
                "parts_sha256": digest, **(extra_info or {})}
        release.finalize_release(self.out, df, info, verified=verified, picture=picture)
        self.unchanged = False
        for s in self.plan.shards:  # leftovers of workers killed after finishing their shard
            if problems[s.shard_id] is None:
                shutil.rmtree(self.out / layout.work_dir(s.shard_id), ignore_errors=True)
                claims.clear_stale(self.out / layout.claim_path(s.shard_id), ttl=self.settings.claim_ttl_s)
        return df


def _digest(x) -> str:
    return hashlib.sha256(json.dumps(x, sort_keys=True).encode()).hexdigest()


def _read_chunk_snapshots(meta_file: Path, meta: dict) -> list[dict[int, dict[str, torch.Tensor]]]:
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


def _jsonable(x):
    return json.loads(json.dumps(x))
