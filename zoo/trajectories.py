"""Training trajectories: any network's weights at any epoch of its training, regenerated on demand.

A network is a function of its configuration, so its training can be replayed: :func:`retrain` trains the
selected networks again from their recorded configuration up to the last requested epoch and keeps copies of
the weights at the requested epochs (``train_networks(snapshot_epochs=...)``, which only reads the weights).
The time grows with the epochs retrained, never with an archive.

Epoch ``e`` means the weights after ``e`` SGD steps: 0 is the initial weights, ``epochs_run`` the final
(released) ones. :func:`log_epochs` gives the log-spaced epochs 0, 1, 2, 5, 10, 20, 50, ..., final, also
used by stored snapshots (``zoo build --snapshots log``, :func:`read_snapshots`).

Bitwise or close: a CPU-built release retrains bitwise on a CPU with the C kernels (GCC build, own matrix
products; see ``zoo.verify``). :func:`zoo.provenance.expected_reproducibility` says what the release's provenance allows
(it reads the build device / kernels where the release records them), and a retrain that reaches the final
epoch always measures the largest |difference| of the final weights against the released ones.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from . import labels, store
from .config import NetConfig
from .devices import resolve_device
from .errors import InvalidChoiceError
from .layout import snapshots_table_path
from .model import PARAM_NAMES
from .provenance import expected_reproducibility, scoring_of
from .task import CURVES
from .train import train_networks


def log_epochs(final: int) -> list[int]:
    """0, 1, 2, 5, 10, 20, 50, ... below ``final``, then ``final`` (``final`` >= 0)."""
    final = int(final)
    if final < 0:
        raise InvalidChoiceError("final epoch", final, hint="must be >= 0")
    out, scale = [0], 1
    while True:
        for m in (1, 2, 5):
            e = m * scale
            if e >= final:
                return out + ([final] if final > 0 else [])
            out.append(e)
        scale *= 10


def resolve_epochs(epochs, final: int, net_id: str = "") -> list[int]:
    """The sorted epochs asked for by ``epochs`` for a network that ran ``final`` epochs: None or ``"log"``
    (:func:`log_epochs`), ``"all"`` (0..final), or a list of ints and ``"final"``."""
    if epochs is None or (isinstance(epochs, str) and epochs == "log"):
        return log_epochs(final)
    if isinstance(epochs, str):
        if epochs == "all":
            return list(range(final + 1))
        if epochs == "final":
            return [final]
        raise InvalidChoiceError("epochs", epochs, ["log", "all", "final", "a list of epochs"])
    if isinstance(epochs, (int, np.integer)):
        epochs = [epochs]
    out = set()
    for e in epochs:
        if isinstance(e, str) and e == "final":
            out.add(final)
        elif isinstance(e, (int, np.integer)) and 0 <= int(e) <= final:
            out.add(int(e))
        else:
            raise InvalidChoiceError("epoch", e, hint=f"network {net_id} has epochs 0..{final} (0: initial weights, "
                                     f"{final}: final); or 'final'")
    if not out:
        raise InvalidChoiceError("epochs", list(epochs), hint="ask for at least one epoch")
    return sorted(out)


# ---------------------------------------------------------------- results
@dataclass
class Trajectory:
    """One network's weights at some epochs of its training (from :func:`retrain` or stored snapshots).

    ``weights[name]`` is (S, ...) float32 for the S epochs in ``epochs``; ``curves`` (retrain with
    ``curves=True``) has one row per epoch retrained (index: epoch 0..; the row of epoch e is measured on
    the weights of epoch e, before its update). ``expected`` is what the provenance allows (``bitwise`` or
    ``close``) and ``final_max_abs_diff`` the measured largest |difference| of the final weights against the
    released ones (NaN when the retrain stopped before the final epoch, or for stored snapshots).
    """

    net_id: str
    config: NetConfig
    epochs: np.ndarray  # (S,) int64, increasing
    weights: dict[str, torch.Tensor]  # name -> (S, ...)
    final_epoch: int
    curves: pd.DataFrame | None = None
    expected: str = "bitwise"
    reason: str = ""
    final_max_abs_diff: float = math.nan
    origin: str = "retrain"  # or "snapshots"

    def __len__(self) -> int:
        return len(self.epochs)

    def __repr__(self) -> str:
        return (f"Trajectory({self.net_id!r}, {len(self)} epochs {_short(self.epochs)}, final {self.final_epoch}, "
                f"{self.status})")

    @property
    def status(self) -> str:
        """``bitwise`` (final weights equal to the release's), ``close`` (measured difference, or not bitwise by
        provenance), ``unchecked`` (bitwise expected, final epoch not retrained) or ``stored``."""
        if self.origin == "snapshots":
            return "stored"
        if math.isnan(self.final_max_abs_diff):
            return "unchecked" if self.expected == "bitwise" else "close"
        return "bitwise" if self.final_max_abs_diff == 0.0 else "close"

    def state_dict(self, epoch: int | str = "final") -> dict[str, torch.Tensor]:
        """The weights after ``epoch`` epochs (one of ``epochs``, or ``"final"`` for the last one held)."""
        i = len(self.epochs) - 1 if epoch == "final" else np.flatnonzero(self.epochs == epoch)
        if not np.size(i):
            raise InvalidChoiceError("epoch", epoch, self.epochs.tolist(), hint="epochs held by this trajectory")
        i = int(np.ravel(i)[0])
        return {n: self.weights[n][i] for n in PARAM_NAMES}

    @torch.no_grad()
    def psd_ratios(self, device: str | torch.device = "cpu") -> np.ndarray:
        """(S,) the labels' psd_ratio of the weights at each epoch (the 9x trial of ``zoo.labels``; computed for
        every epoch, learned or not). Below 0.5 is a limit cycle, otherwise a slow point."""
        task, mc = self.config.task(), self.config.model_config()
        w = {n: self.weights[n].to(device) for n in PARAM_NAMES}
        rates = labels.trajectory_rates(w, mc, task, [self.config.seed] * len(self), device=device)
        X = rates.to("cpu", torch.float64).numpy()
        return np.array([labels.psd_ratio(x) for x in X])


def mechanism_onset(traj: Trajectory, psd: np.ndarray | None = None,
                    mechanism: str | None = None) -> int | None:
    """The first held epoch from which the network's (final) mechanism holds at every later held epoch: its
    psd_ratio stays on the mechanism's side of 0.5. ``mechanism`` defaults to the one of the last epoch.
    None if the last epoch's ratio is not finite."""
    psd = traj.psd_ratios() if psd is None else np.asarray(psd)
    if not len(psd) or not np.isfinite(psd[-1]):
        return None
    mech = mechanism or labels.classify_psd_ratio(psd[-1])
    same = np.array([labels.classify_psd_ratio(p) == mech and np.isfinite(p) for p in psd])
    bad = np.flatnonzero(~same)
    first = 0 if not len(bad) else int(bad[-1]) + 1
    return int(traj.epochs[first]) if first < len(psd) else None


def _max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest |a - b|; NaN on both sides counts as equal, NaN on one side gives NaN."""
    if not a.numel():
        return 0.0
    d = (a.double() - b.double()).abs()
    d[torch.isnan(a) & torch.isnan(b)] = 0.0
    return float(d.max()) if not torch.isnan(d).any() else math.nan


def _short(epochs: np.ndarray) -> str:
    e = [int(x) for x in epochs]
    return str(e) if len(e) <= 6 else f"[{e[0]}, {e[1]}, {e[2]}, ..., {e[-1]}]"


class Trajectories(Sequence):
    """The trajectories of several networks (a list), with a summary table."""

    def __init__(self, items: list[Trajectory], seconds: float = 0.0, device: str = "cpu"):
        self.items, self.seconds, self.device = items, seconds, device

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Trajectory]:
        return iter(self.items)

    def __getitem__(self, key):
        if isinstance(key, str):
            for t in self.items:
                if t.net_id == key:
                    return t
            raise KeyError(f"no trajectory of {key!r}")
        return self.items[key]

    def __repr__(self) -> str:
        return f"Trajectories({len(self)} networks, {self.seconds:.1f} s on {self.device})"

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([{"net_id": t.net_id, "epochs": len(t), "last_epoch": int(t.epochs[-1]),
                              "final_epoch": t.final_epoch, "expected": t.expected, "status": t.status,
                              "final_max_abs_diff": t.final_max_abs_diff, "reason": t.reason} for t in self.items])


# ---------------------------------------------------------------- retrain
def retrain(zoo, epochs=None, *, curves: bool = False, device: str | torch.device = "cpu",
            batch_size: int | None = None, progress: bool | Callable[[int], None] = True) -> Trajectories:
    """Train the networks of ``zoo`` (a :class:`zoo.api.Zoo`) again and return their weights at ``epochs``.

    ``epochs``: None / ``"log"`` (0, 1, 2, 5, ..., final), ``"all"``, or a list of epochs (ints, ``"final"``);
    each network trains only up to the last epoch asked for. ``curves`` adds the per-epoch curves of the
    retrained epochs. Networks of one trial shape train together (``batch_size`` per batch, on ``device``).
    ``progress``: a rich progress bar (True), a callback of network-epochs, or False.
    """
    t0 = time.perf_counter()
    dev = resolve_device(device)
    meta = zoo.metadata
    configs = [NetConfig.from_dict(json.loads(s)) for s in meta["config"]]
    finals = [int(x) for x in (meta["epochs_run"] if "epochs_run" in meta else [c.epochs for c in configs])]
    want = [resolve_epochs(epochs, f, nid) for f, nid in zip(finals, meta["net_id"], strict=True)]
    # each network trains up to its last requested epoch only (at least 1: epoch 0 is taken before training)
    short = [replace(c, epochs=max(1, w[-1])) for c, w in zip(configs, want, strict=True)]
    total = sum(c.epochs for c in short)
    reaches = [w[-1] == f for w, f in zip(want, finals, strict=True)]
    if not len(meta):
        return Trajectories([], 0.0, str(dev))

    bar = None
    if progress is True:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("[bold]retrain"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("network-epochs"), TimeRemainingColumn(), transient=True)
        task = bar.add_task("retrain", total=total)
        callback = lambda n: bar.advance(task, n)  # noqa: E731
    else:
        callback = progress or None
    try:
        if bar is not None:
            bar.start()
        res = train_networks(short, device=dev, batch_size=batch_size, progress=callback, snapshot_epochs=want,
                             scoring=scoring_of(meta))
    finally:
        if bar is not None:
            bar.stop()

    released, pos = None, {}
    if any(reaches):  # compare the final weights with the release's
        sub = zoo.filter(net_id=[nid for nid, r in zip(meta["net_id"], reaches, strict=True) if r])
        released, pos = sub.weights(), {nid: i for i, nid in enumerate(sub.metadata["net_id"])}
    out = []
    for k, (nid, c) in enumerate(zip(meta["net_id"], configs, strict=True)):
        snaps = res.snapshots[k]
        got = [e for e in want[k] if e in snaps]
        if got != want[k]:  # cannot happen unless the retrain diverged earlier than the release did
            missing = sorted(set(want[k]) - set(got))
            raise RuntimeError(f"{nid}: the retrain stopped at epoch {int(res.epochs_run[k])} and never reached "
                               f"epochs {missing} (the release says it ran {finals[k]}); the code or machine "
                               "trains it differently")
        w = {n: torch.stack([snaps[e][n] for e in got]).float() for n in PARAM_NAMES}
        expected, why = expected_reproducibility(meta.iloc[k], zoo.info, dev)
        diff = math.nan
        if reaches[k]:
            i = pos[nid]
            diff = max(_max_abs_diff(w[n][-1], released[n][i]) for n in PARAM_NAMES)
        cv = None
        if curves:
            cv = pd.DataFrame({name: res.curves[name][k] for name in CURVES}).rename_axis("epoch")
        out.append(Trajectory(nid, c, np.asarray(got, dtype=np.int64), w, finals[k], cv, expected, why, diff))
    return Trajectories(out, time.perf_counter() - t0, str(dev))


# ---------------------------------------------------------------- stored snapshots (zoo build --snapshots log)
#: ``zoo build --snapshots`` modes: epochs whose weights a release stores besides the final ones
SNAPSHOT_MODES = ("log",)


def snapshot_epochs(mode: str, epochs: int) -> list[int]:
    """The epochs stored for a network planned for ``epochs`` epochs (``log``: :func:`log_epochs`)."""
    if mode not in SNAPSHOT_MODES:
        raise InvalidChoiceError("snapshots", mode, SNAPSHOT_MODES)
    return log_epochs(epochs)


def write_snapshots(folder, rel: str, net_ids: Sequence[str],
                    snaps: Sequence[Mapping[int, Mapping[str, torch.Tensor]]]) -> list[str]:
    """Write the snapshots of ``net_ids`` (per network ``{epoch: state}``) as one float32 safetensors file,
    rows stacked over (network, epoch) in that order, and its table (``net_id``, ``epoch``, ``index``: the
    row). Returns the two relative paths."""
    from pathlib import Path

    ids, eps, rows = [], [], {n: [] for n in PARAM_NAMES}
    for nid, s in zip(net_ids, snaps, strict=True):
        for e in sorted(s):
            ids.append(nid)
            eps.append(int(e))
            for n in PARAM_NAMES:
                rows[n].append(s[e][n].float())
    store.write_weights(Path(folder) / rel, {n: torch.stack(v) for n, v in rows.items()}, ids)
    table = pd.DataFrame({"net_id": ids, "epoch": np.asarray(eps, dtype=np.int64),
                          "index": np.arange(len(ids), dtype=np.int64)})
    store.write_table(Path(folder) / snapshots_table_path(rel), table)
    return [rel, snapshots_table_path(rel)]


def read_snapshots(zoo, row: Mapping) -> Trajectory:
    """The stored snapshots of one network (metadata ``row`` of ``zoo``): reads its table and only its rows of
    the snapshot shard (downloaded on first use from the Hub)."""
    from .errors import ZooError

    f = row.get("snapshots_file") if hasattr(row, "get") else None
    if not isinstance(f, str) or not f:
        raise ZooError(f"{row['net_id']}: this release stores no snapshots (built without `zoo build --snapshots "
                       "log`); regenerate them with net.retrain(epochs=...)")
    paths = zoo.source.local_paths([snapshots_table_path(f), f])
    table = store.read_table(paths[snapshots_table_path(f)])
    mine = table[table["net_id"] == row["net_id"]].sort_values("epoch")
    if not len(mine):
        raise ZooError(f"{f} holds no snapshots of {row['net_id']}")
    w = store.read_weights(paths[f], mine["index"].tolist())
    cfg = NetConfig.from_dict(json.loads(row["config"]))
    return Trajectory(str(row["net_id"]), cfg, mine["epoch"].to_numpy(dtype=np.int64), w,
                      int(row.get("epochs_run", cfg.epochs)), origin="snapshots",
                      reason="stored in the release")
