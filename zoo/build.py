"""Build a zoo: plan -> train shards (resumable) -> label -> package into a release folder.

State lives in ``<out>/.build/`` (never uploaded):

- ``plan.json``: the preset, overrides and shard list; a re-run must ask for the same plan.
- ``claims/<shard>``: an atomic claim (O_EXCL) by the worker training the shard; stale claims of dead
  processes on the same host are taken over.
- ``work/<shard>/chunk-*.{safetensors,parquet,json}``: finished training batches of a shard in progress;
  a resumed build keeps them and trains only the remaining networks.
- ``parts/<shard>.parquet`` + ``done/<shard>.json``: a finished shard's metadata rows and its done marker
  (sha256 of its weight, curve and part files, written last). A shard is done only if its marker verifies.

Shard results go straight to their release paths (``weights/<family>/<shard>.safetensors``, ...), so
packaging only merges the metadata parts and writes the card, ``zoo.json`` and the manifest.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import __version__, grids, labels, store
from .config import NetConfig
from .errors import BuildLockedError, ChecksumMismatchError, InvalidChoiceError, MissingShardsError, ZooError
from .manifest import atomic_write_text, sha256_file
from .model import PARAM_NAMES
from .train import CURVES, train_networks

STATE_DIR = ".build"
_BYTES_PER_NETWORK = 4 * (100 * 2 + 100 + 100 * 100 + 100 + 2 * 100 + 2)  # float32 weights
_BYTES_PER_CURVE_EPOCH = 4 * len(CURVES)


# ---------------------------------------------------------------- plan
@dataclass(frozen=True)
class BuildPlan:
    """A deterministic list of networks cut into shards; depends only on the preset and overrides."""

    preset: str
    overrides: dict
    shard_size: int
    shards: tuple[grids.Shard, ...]

    @property
    def configs(self) -> list[NetConfig]:
        return [c for s in self.shards for c in s.configs]

    def shard(self, shard_id: str) -> grids.Shard:
        for s in self.shards:
            if s.shard_id == shard_id:
                return s
        raise InvalidChoiceError("shard", shard_id, [s.shard_id for s in self.shards])

    def select(self, spec: str | None) -> list[grids.Shard]:
        """Shards of ``spec``: None (all), ``I/N`` (every N-th shard starting at I) or a shard id."""
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

    def fingerprint(self) -> dict:
        return {"preset": self.preset, "overrides": self.overrides, "shard_size": self.shard_size,
                "shards": {s.shard_id: s.net_ids for s in self.shards}}

    def estimate_bytes(self) -> dict:
        """Approximate release size: float32 weights, and curves before compression."""
        configs = self.configs
        w = len(configs) * _BYTES_PER_NETWORK
        c = sum(cfg.epochs for cfg in configs) * _BYTES_PER_CURVE_EPOCH
        return {"weights": w, "curves": c, "total": w + c}


def plan_build(preset: str = "sample", *, family: str | None = None, lrs: Sequence[float] | None = None,
               delays: Sequence[int] | None = None, seeds: int | None = None, epochs: int | None = None,
               shard_size: int | None = None) -> BuildPlan:
    """Expand a preset (with CLI-style overrides) into a sharded build plan."""
    p = grids.load_preset(preset)
    configs = grids.make_grid(p, family=family, lrs=lrs, delays=delays, seeds=seeds, epochs=epochs)
    size = shard_size or p.shard_size
    overrides = {k: v for k, v in dict(family=family, lrs=list(lrs) if lrs else None,
                                       delays=list(delays) if delays else None, seeds=seeds,
                                       epochs=epochs).items() if v is not None}
    return BuildPlan(p.name, overrides, size, tuple(grids.shards(configs, size)))


def plan_from_dict(d: dict) -> BuildPlan:
    o = d.get("overrides", {})
    return plan_build(d["preset"], family=o.get("family"), lrs=o.get("lrs"), delays=o.get("delays"),
                      seeds=o.get("seeds"), epochs=o.get("epochs"), shard_size=d["shard_size"])


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


# ---------------------------------------------------------------- rows and labels
def metadata_rows(configs: Sequence[NetConfig], epochs_run, diverged, curves: dict[str, Sequence[np.ndarray]],
                  weights_file: str, curves_file: str) -> pd.DataFrame:
    """The configuration and training columns of the metadata table (labels are added by :func:`label_frame`)."""
    rows = []
    for i, c in enumerate(configs):
        last = {k: (float(curves[k][i][-1]) if len(curves[k][i]) else float("nan")) for k in CURVES}
        rows.append({
            "net_id": c.net_id, "family": c.family, "seed": c.seed, "lr": c.lr, "delay_ms": c.delay_ms,
            "post_ms": c.post_ms, "response_ms": c.response_ms, "tau_ms": float(c.tau_ms),
            "nomemory": c.nomemory, "epochs": c.epochs, "epochs_run": int(epochs_run[i]),
            "diverged": bool(diverged[i]), "final_loss": last["loss"], "final_accuracy": last["accuracy"],
            "final_reliability": last["reliability"], "config": json.dumps(c.to_dict(), sort_keys=True),
            "weights_file": weights_file, "weights_index": i, "curves_file": curves_file,
        })
    return pd.DataFrame(rows)


def label_frame(df: pd.DataFrame, weights: dict[str, torch.Tensor], acc: Sequence[np.ndarray],
                rel: Sequence[np.ndarray], device: str | torch.device = "cpu") -> pd.DataFrame:
    """Add the label columns to rows ``df`` whose stacked weights and curves are given (same order)."""
    df = df.copy()
    cols: dict[str, list] = {}
    order = np.arange(len(df))
    configs = [NetConfig.from_dict(json.loads(s)) for s in df["config"]]
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(configs):
        groups.setdefault(c.batch_key(), []).append(i)
    results: list = [None] * len(df)
    for (task, mc), idx in groups.items():
        w = {n: weights[n][idx].to(device) for n in PARAM_NAMES}
        labs = labels.label_networks(w, mc, task, [configs[i].seed for i in idx],
                                     [acc[i] for i in idx], [rel[i] for i in idx])
        for i, lab in zip(idx, labs):
            results[i] = lab.to_dict()
    for i in order:
        for k, v in results[i].items():
            cols.setdefault(k, []).append(v)
    for k, v in cols.items():
        df[k] = v
    df["first_learned_epoch"] = df["first_learned_epoch"].astype("int64")
    df["psd_ratio"] = df["psd_ratio"].astype("float64")
    return df


# ---------------------------------------------------------------- the build folder
class Build:
    """A build folder: run shards, resume, label, package. Safe to run from several processes at once."""

    def __init__(self, out: str | os.PathLike, plan: BuildPlan | None = None):
        self.out = Path(out)
        self.state = self.out / STATE_DIR
        plan_file = self.state / "plan.json"
        if plan is None:
            if not plan_file.exists():
                raise ZooError(f"{self.out} has no build plan ({plan_file} missing); start it with `zoo build`")
            plan = plan_from_dict(json.loads(plan_file.read_text()))
        elif plan_file.exists():
            old = json.loads(plan_file.read_text())
            if old.get("fingerprint") != _jsonable(plan.fingerprint()):
                raise ZooError(f"{self.out} holds a different build (preset {old.get('preset')!r}, overrides "
                               f"{old.get('overrides')}); use another --out or delete {self.state}")
        else:
            payload = {"preset": plan.preset, "overrides": plan.overrides, "shard_size": plan.shard_size,
                       "fingerprint": plan.fingerprint()}
            atomic_write_text(plan_file, json.dumps(payload, indent=1, sort_keys=True))
        self.plan = plan

    # -- status
    def _done_file(self, shard_id: str) -> Path:
        return self.state / "done" / f"{shard_id}.json"

    def is_done(self, shard: grids.Shard, verify: bool = True) -> bool:
        """True if the shard's done marker exists and (``verify``) every file it lists matches its sha256."""
        f = self._done_file(shard.shard_id)
        if not f.exists():
            return False
        if not verify:
            return True
        marker = json.loads(f.read_text())
        for rel, digest in marker["files"].items():
            p = self.out / rel
            if not p.exists() or sha256_file(p) != digest:
                return False
        return True

    def status(self, verify: bool = True) -> dict[str, str]:
        """``{shard_id: 'done' | 'partial' | 'todo' | 'corrupt'}``."""
        out = {}
        for s in self.plan.shards:
            if self._done_file(s.shard_id).exists():
                out[s.shard_id] = "done" if self.is_done(s, verify) else "corrupt"
            elif (self.state / "work" / s.shard_id).exists():
                out[s.shard_id] = "partial"
            else:
                out[s.shard_id] = "todo"
        return out

    # -- claims
    def _claim(self, shard_id: str) -> Path:
        path = self.state / "claims" / shard_id
        path.parent.mkdir(parents=True, exist_ok=True)
        me = {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    holder = json.loads(path.read_text() or "{}")
                except (OSError, ValueError):
                    holder = {}
                if holder.get("host") == me["host"] and not _pid_alive(holder.get("pid", -1)):
                    path.unlink(missing_ok=True)  # stale claim of a dead process on this host
                    continue
                raise BuildLockedError(f"shard {shard_id} is claimed by {holder or 'another worker'} "
                                       f"({path}); delete the claim if that worker is gone") from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            return path
        raise BuildLockedError(f"could not claim shard {shard_id}")

    # -- training
    def run_shard(self, shard: grids.Shard, *, device="cpu", batch_size: int | None = None,
                  label: bool = True, progress: Callable[[int], None] | None = None) -> str:
        """Train (and label) one shard unless it is done. Returns 'done' (already), 'built' or 'locked'."""
        if self.is_done(shard):
            return "done"
        try:
            claim = self._claim(shard.shard_id)
        except BuildLockedError:
            return "locked"
        try:
            self._run_shard(shard, device, batch_size, label, progress)
        finally:
            claim.unlink(missing_ok=True)
        return "built"

    def _chunks(self, shard: grids.Shard) -> tuple[dict[str, dict], Path]:
        """Valid finished chunks of a shard in progress: net_id -> its weights, curves and run info."""
        work = self.state / "work" / shard.shard_id
        found: dict[str, dict] = {}
        for meta_file in sorted(work.glob("chunk-*.json")):
            try:
                meta = json.loads(meta_file.read_text())
                wf, cf = meta_file.with_suffix(".safetensors"), meta_file.with_suffix(".parquet")
                if sha256_file(wf) != meta["sha256"]["weights"] or sha256_file(cf) != meta["sha256"]["curves"]:
                    raise ChecksumMismatchError(wf, meta["sha256"]["weights"], "(differs)")
                w = store.read_weights(wf)
                cv = store.read_curves(cf)
            except (OSError, ValueError, KeyError) as err:
                print(f"warning: discarding damaged chunk {meta_file.name} of {shard.shard_id}: {err}")
                for p in work.glob(meta_file.stem + ".*"):
                    p.unlink(missing_ok=True)
                continue
            for j, nid in enumerate(meta["net_ids"]):
                found[nid] = {"w": {n: w[n][j] for n in PARAM_NAMES}, "curves": cv[nid],
                              "epochs_run": meta["epochs_run"][j], "diverged": meta["diverged"][j]}
        return found, work

    def _run_shard(self, shard, device, batch_size, label, progress):
        found, work = self._chunks(shard)
        todo = [c for c in shard.configs if c.net_id not in found]
        pos = {c.net_id: i for i, c in enumerate(shard.configs)}
        if found and progress is not None:
            progress(sum(c.epochs for c in shard.configs if c.net_id in found))
        bs = batch_size or (len(todo) if torch.device(device).type == "cuda" else 32)
        for s in range(0, len(todo), bs):
            chunk = todo[s:s + bs]
            res = train_networks(chunk, device=device, batch_size=bs, progress=progress)
            ids = [c.net_id for c in chunk]
            stem = work / f"chunk-{pos[ids[0]]:05d}"
            store.write_weights(stem.with_suffix(".safetensors"), res.weights, ids)
            store.write_curves(stem.with_suffix(".parquet"), ids, res.curves)
            meta = {"net_ids": ids, "epochs_run": res.epochs_run.tolist(), "diverged": res.diverged.tolist(),
                    "sha256": {"weights": sha256_file(stem.with_suffix(".safetensors")),
                               "curves": sha256_file(stem.with_suffix(".parquet"))}}
            atomic_write_text(stem.with_suffix(".json"), json.dumps(meta))
            for j, nid in enumerate(ids):
                found[nid] = {"w": res.state_dict(j), "curves": {c: res.curves[c][j] for c in CURVES},
                              "epochs_run": int(res.epochs_run[j]), "diverged": bool(res.diverged[j])}
        self._finish_shard(shard, found, label, device)
        shutil.rmtree(work, ignore_errors=True)

    def _finish_shard(self, shard, found, label, device):
        ids = shard.net_ids
        weights = {n: torch.stack([found[i]["w"][n].float() for i in ids]) for n in PARAM_NAMES}
        curves = {c: [found[i]["curves"][c] for i in ids] for c in CURVES}
        wf, cf = store.weights_path(shard.family, shard.shard_id), store.curves_path(shard.family, shard.shard_id)
        store.write_weights(self.out / wf, weights, ids)
        store.write_curves(self.out / cf, ids, curves)
        df = metadata_rows(shard.configs, [found[i]["epochs_run"] for i in ids],
                           [found[i]["diverged"] for i in ids], curves, wf, cf)
        if label:
            df = label_frame(df, weights, curves["accuracy"], curves["reliability"], device)
        self._write_part(shard, df, wf, cf)

    def _write_part(self, shard, df, wf, cf):
        part = f"{STATE_DIR}/parts/{shard.shard_id}.parquet"
        store.write_table(self.out / part, df)
        files = {rel: sha256_file(self.out / rel) for rel in (wf, cf, part)}
        labelled = "outcome" in df
        atomic_write_text(self._done_file(shard.shard_id),
                          json.dumps({"files": files, "labelled": labelled, "n": len(df)}, indent=1))

    def label_shards(self, device="cpu", force: bool = False) -> int:
        """Label finished shards that are not labelled yet (all with ``force``); returns how many."""
        n = 0
        for s in self.plan.shards:
            f = self._done_file(s.shard_id)
            if not f.exists() or (json.loads(f.read_text()).get("labelled") and not force):
                continue
            df = store.read_table(self.out / STATE_DIR / "parts" / f"{s.shard_id}.parquet")
            wf, cf = df["weights_file"].iloc[0], df["curves_file"].iloc[0]
            weights = store.read_weights(self.out / wf, df["weights_index"].tolist())
            cv = store.read_curves(self.out / cf)
            df = label_frame(df, weights, [cv[i]["accuracy"] for i in df["net_id"]],
                             [cv[i]["reliability"] for i in df["net_id"]], device)
            self._write_part(s, df, wf, cf)
            n += 1
        return n

    # -- packaging
    def package(self, *, partial: bool = False, extra_info: dict | None = None) -> pd.DataFrame:
        """Merge finished shards into the release (metadata, card, zoo.json, manifest)."""
        st = self.status()
        missing = [s for s, v in st.items() if v != "done"]
        if missing and not partial:
            raise MissingShardsError(missing, "finish them with `zoo build --out DIR` (it resumes), or "
                                     "package what exists with `zoo package DIR --partial`")
        parts = []
        for s in self.plan.shards:
            if st[s.shard_id] != "done":
                continue
            marker = json.loads(self._done_file(s.shard_id).read_text())
            if not marker.get("labelled"):
                raise ZooError(f"shard {s.shard_id} is trained but not labelled; run `zoo label {self.out}`")
            parts.append(store.read_table(self.out / STATE_DIR / "parts" / f"{s.shard_id}.parquet"))
        if not parts:
            raise MissingShardsError(missing, "nothing to package yet")
        df = pd.concat(parts, ignore_index=True)
        # a partial release must not carry files of unfinished shards
        keep = set(df["weights_file"]) | set(df["curves_file"])
        for sub in ("weights", "curves"):
            for p in (self.out / sub).rglob("*") if (self.out / sub).exists() else []:
                if p.is_file() and p.relative_to(self.out).as_posix() not in keep:
                    p.unlink()
        info = {"preset": self.plan.preset, "overrides": self.plan.overrides, "code_version": __version__,
                "label_version": labels.LABEL_VERSION, "partial": bool(missing),
                "missing_shards": missing, "n_shards": len(self.plan.shards), **(extra_info or {})}
        store.finalize_release(self.out, df, info)
        return df


def relabel_release(folder: str | os.PathLike, device="cpu") -> pd.DataFrame:
    """Recompute every label of a packaged release from its weights and curves (no retraining)."""
    folder = Path(folder)
    df = store.read_table(folder / store.METADATA_PATH)
    out = []
    for wf, rows in df.groupby("weights_file", sort=True):
        weights = store.read_weights(folder / wf, rows["weights_index"].tolist())
        cv = {}
        for cf in rows["curves_file"].unique():
            cv.update(store.read_curves(folder / cf, rows["net_id"].tolist()))
        out.append(label_frame(rows, weights, [cv[i]["accuracy"] for i in rows["net_id"]],
                               [cv[i]["reliability"] for i in rows["net_id"]], device))
    new = pd.concat(out, ignore_index=True)
    info = store.read_info(folder)
    info["label_version"] = labels.LABEL_VERSION
    info.pop("n_networks", None)
    info.pop("format_version", None)
    store.finalize_release(folder, new, info)
    return new


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def _jsonable(x):
    return json.loads(json.dumps(x))
