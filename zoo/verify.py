"""Check a zoo by retraining: pick networks at random, train them again from their recorded configuration and
seed with :func:`zoo.train.train_networks`, and compare with what the release holds.

Compared per network: the final weights (bitwise by default; ``atol`` allows a documented tolerance, and the
largest absolute difference is always reported), the per-epoch curves (``loss``, ``accuracy``,
``reliability``, ``grad_norm``: same length, values within ``atol``), the run info (``epochs_run``,
``diverged``) and the labels (recomputed with :func:`zoo.metadata.label_frame` from the retrained weights and
curves: ``outcome``, ``mechanism``, ``learned``, ``stable``, ``first_learned_epoch`` equal, ``psd_ratio``
within ``psd_atol``). Labels are compared only when the release was labelled with the current
``LABEL_VERSION`` (otherwise they are reported as skipped: relabel the release first).

Training is deterministic and batch invariant on a given device type (each network's noise has its own
counter-based stream), so a release built on the CPU retrains bitwise on the CPU (also on another x86-64 CPU
with AVX2 + FMA: the C kernels' own matrix products sum in one fixed order). Across device types (built
on CUDA, verified on the CPU, or with TF32) results differ in the last bits and the difference grows during
training: verify on the build's device type, or pass a tolerance.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import labels as _labels
from . import layout, store
from .config import NetConfig
from .devices import resolve_device
from .errors import InvalidChoiceError
from .metadata import label_frame
from .model import PARAM_NAMES
from .provenance import scoring_of
from .task import CURVES
from .train import train_networks

#: label columns compared exactly
LABEL_COLUMNS = ("outcome", "mechanism", "learned", "stable", "first_learned_epoch")
RUN_COLUMNS = ("epochs_run", "diverged")


@dataclass
class NetCheck:
    """The comparison of one retrained network with the released one."""

    net_id: str
    weights_max_abs_diff: float
    weights_bitwise: bool
    curves_max_abs_diff: dict[str, float]
    run_diffs: dict[str, tuple] = field(default_factory=dict)
    label_diffs: dict[str, tuple] = field(default_factory=dict)
    labels_checked: bool = True
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class VerifyReport:
    """Result of :func:`verify_zoo`: one :class:`NetCheck` per retrained network."""

    source: str
    n_networks: int
    checks: list[NetCheck]
    atol: float
    device: str
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def mismatches(self) -> list[NetCheck]:
        return [c for c in self.checks if not c.ok]

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([{
            "net_id": c.net_id, "weights_bitwise": c.weights_bitwise, "weights_max_abs_diff": c.weights_max_abs_diff,
            "curves_max_abs_diff": max(c.curves_max_abs_diff.values(), default=0.0),
            "labels": ("equal" if not c.label_diffs else "differ") if c.labels_checked else "skipped",
            "ok": c.ok, "problems": "; ".join(c.problems)} for c in self.checks])

    def summary(self) -> str:
        tol = "bitwise" if self.atol == 0 else f"atol {self.atol:g}"
        head = (f"verified {len(self.checks)} of {self.n_networks} networks of {self.source} by retraining on "
                f"{self.device} ({tol}) in {self.seconds:.1f} s: ")
        if self.ok:
            return head + "all match"
        return head + f"{len(self.mismatches)} MISMATCH(ES): " + ", ".join(c.net_id for c in self.mismatches)


def _max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a - b|, NaN where exactly one side is NaN (NaN on both sides counts as equal)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return math.inf
    if not a.size:
        return 0.0
    both = np.isnan(a) & np.isnan(b)
    one = np.isnan(a) ^ np.isnan(b)
    if one.any():
        return math.nan
    d = np.abs(np.where(both, 0.0, a - b))
    return float(d.max())


def _same(a, b) -> bool:
    na = a is None or (isinstance(a, float) and math.isnan(a))
    nb = b is None or (isinstance(b, float) and math.isnan(b))
    if na or nb:
        return na and nb
    return bool(a == b)


def _py(x):
    return x.item() if hasattr(x, "item") else x


def verify_zoo(source: str | os.PathLike | None, *, sample: int | None = 4, seed: int = 0,
               net_ids: Sequence[str] | None = None, device: str | torch.device = "cpu", atol: float = 0.0,
               psd_atol: float = 1e-9, batch_size: int | None = None, check_labels: bool = True,
               revision: str | None = None) -> VerifyReport:
    """Retrain ``sample`` networks of ``source`` (chosen with ``numpy.random.default_rng(seed)``; ``None`` or
    0: all; or exactly ``net_ids``) and compare them with the release. See the module doc for what is
    compared. Never raises on a mismatch: check ``report.ok``."""
    import time

    from .api import load_zoo

    if atol < 0 or not math.isfinite(atol):
        raise InvalidChoiceError("atol", atol, hint="must be a finite number >= 0")
    t0 = time.perf_counter()
    zoo = load_zoo(source, revision=revision, fetch=False)
    meta = zoo.metadata
    if net_ids is not None:
        missing = sorted(set(net_ids) - set(meta["net_id"]))
        if missing:
            raise InvalidChoiceError("net_id", missing[0], hint=f"not in this zoo ({len(missing)} unknown)")
        rows = meta[meta["net_id"].isin(list(net_ids))]
    elif sample and sample < len(meta):
        if sample < 0:
            raise InvalidChoiceError("sample", sample, hint="must be >= 0 (0: every network)")
        pick = np.sort(np.random.default_rng(seed).choice(len(meta), size=int(sample), replace=False))
        rows = meta.iloc[pick]
    else:
        rows = meta
    dev = resolve_device(device)
    report = VerifyReport(str(source if source is not None else "the bundled sample zoo"), len(meta), [], atol,
                          str(dev))
    if not len(rows):
        return report
    sub = zoo.filter(net_id=list(rows["net_id"]))
    rows = sub.metadata
    released_w = sub.weights()
    released_c = sub.curves()
    configs = [NetConfig.from_dict(json.loads(s)) for s in rows["config"]]
    for c, nid in zip(configs, rows["net_id"], strict=True):
        if c.net_id != nid:
            report.notes.append(f"{nid}: its config describes network {c.net_id}")
    res = train_networks(configs, device=dev, batch_size=batch_size, scoring=scoring_of(rows))
    new_w = {n: res.weights[n].float().cpu() for n in PARAM_NAMES}

    do_labels = check_labels and "outcome" in rows
    if do_labels:
        versions = set(rows["label_version"].dropna()) if "label_version" in rows else set()
        if versions and versions != {_labels.LABEL_VERSION}:
            do_labels = False
            report.notes.append(f"labels not compared: the release was labelled with {sorted(versions)}, this code "
                                f"labels with {_labels.LABEL_VERSION!r} (run `zoo label` on it first)")
    if do_labels:
        base = rows.drop(columns=[c for c in rows.columns if c in LABEL_COLUMNS + ("psd_ratio",)])
        relabelled = label_frame(base, new_w, res.curves["accuracy"], res.curves["reliability"], dev)

    for i, (_, row) in enumerate(rows.iterrows()):
        nid = row["net_id"]
        diffs = [float((new_w[n][i] - released_w[n][i]).abs().max()) if new_w[n][i].numel() else 0.0
                 for n in PARAM_NAMES]
        wmax = max(diffs)
        bitwise = all(torch.equal(new_w[n][i], released_w[n][i].float()) for n in PARAM_NAMES)
        cdiff = {k: _max_abs_diff(res.curves[k][i], released_c[nid][k]) for k in CURVES}
        chk = NetCheck(nid, wmax, bitwise, cdiff, labels_checked=do_labels)
        if not (bitwise if atol == 0 else wmax <= atol):
            chk.problems.append(f"weights differ (max |diff| {wmax:.3g})")
        bad_c = {k: v for k, v in cdiff.items() if not (v <= atol)}  # NaN and inf fail too
        if bad_c:
            chk.problems.append("curves differ: " + ", ".join(f"{k} {v:.3g}" for k, v in bad_c.items()))
        run = {"epochs_run": int(res.epochs_run[i]), "diverged": bool(res.diverged[i])}
        for k, v in run.items():
            if k in row and not _same(_py(row[k]), v):
                chk.run_diffs[k] = (_py(row[k]), v)
        if chk.run_diffs:
            chk.problems.append("run differs: " + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in chk.run_diffs.items()))
        if do_labels:
            new = relabelled.iloc[i]
            for k in LABEL_COLUMNS:
                if k in row and not _same(_py(row[k]), _py(new[k])):
                    chk.label_diffs[k] = (_py(row[k]), _py(new[k]))
            a, b = float(row["psd_ratio"]), float(new["psd_ratio"])
            if not ((math.isnan(a) and math.isnan(b)) or abs(a - b) <= psd_atol):
                chk.label_diffs["psd_ratio"] = (a, b)
            if chk.label_diffs:
                chk.problems.append("labels differ: " + ", ".join(f"{k} {a!r} -> {b!r}"
                                                                  for k, (a, b) in chk.label_diffs.items()))
        report.checks.append(chk)
    report.seconds = time.perf_counter() - t0
    return report


def expected_result(source: str | os.PathLike | None, *, net_ids: Sequence[str] | None = None,
                    device: str | torch.device = "cpu", revision: str | None = None) -> tuple[str, str]:
    """What retraining ``source``'s networks (``net_ids``, else all) on ``device`` here can reproduce:
    ``("bitwise" | "close" | "mixed", why)``, from the provenance the release records (``zoo.json`` and the
    per-network ``train_*`` columns; :func:`zoo.provenance.expectation`)."""
    from .api import load_zoo
    from .provenance import expectation

    zoo = load_zoo(source, revision=revision, fetch=False)
    meta = zoo.metadata if net_ids is None else zoo.metadata[zoo.metadata["net_id"].isin(list(net_ids))]
    return expectation(meta, zoo.info, device)


# ---------------------------------------------------------------- two releases
def compare_releases(a: str | os.PathLike, b: str | os.PathLike) -> list[str]:
    """Differences between two release folders, [] if they hold the same networks: equal metadata tables
    (every row and column), the same weight files with bitwise equal tensors and the same header, and equal
    curves. ``zoo.json`` and the card are not compared (they may differ in build-only details)."""
    a, b = Path(a), Path(b)
    out: list[str] = []
    ma, mb = (store.read_table(p / layout.METADATA_PATH) for p in (a, b))
    if list(ma.columns) != list(mb.columns):
        out.append(f"metadata columns differ: {sorted(set(ma.columns) ^ set(mb.columns))}")
    elif len(ma) != len(mb) or list(ma["net_id"]) != list(mb["net_id"]):
        out.append(f"metadata lists other networks ({len(ma)} vs {len(mb)} rows)")
    elif not ma.equals(mb):
        cols = [c for c in ma.columns if not ma[c].equals(mb[c])]
        out.append(f"metadata values differ in columns {cols}")
    for sub, pattern in (("weights", "*.safetensors"), ("curves", "*.parquet")):
        fa = sorted(p.relative_to(a).as_posix() for p in (a / sub).rglob(pattern))
        fb = sorted(p.relative_to(b).as_posix() for p in (b / sub).rglob(pattern))
        if fa != fb:
            out.append(f"{sub} files differ: {sorted(set(fa) ^ set(fb))}")
            continue
        for rel in fa:
            if sub == "weights":
                if store.read_parts(a / rel) != store.read_parts(b / rel):
                    out.append(f"{rel}: weights differ")
            else:
                ca, cb = store.read_curves(a / rel), store.read_curves(b / rel)
                if ca.keys() != cb.keys() or any(
                        not np.array_equal(ca[k][c], cb[k][c], equal_nan=True) for k in ca for c in ca[k]):
                    out.append(f"{rel}: curves differ")
    return out
