"""Dynamics diagnostics of trained networks, per network: ``dyn_state`` and ``dyn_mechanism``, the
diagnostics table (:func:`diagnose_zoo`, :func:`diagnose_stacked`, :func:`diagnose_network`), its storage
in a release (``diagnostics/networks.parquet``) and its comparison with the reference labels.

These complement the reference ``psd_ratio`` index (see :mod:`zoo.labels`) with quantities that have a
direct dynamical meaning. All work is batched over K stacked networks (``state`` as in
:func:`zoo.simulate.simulate_stacked`: the reference parameter names, each stacked on a leading K axis).
The pieces: fixed and slow points and their stability in :mod:`zoo.analysis.fixed_points`; noise-free
trajectories, limit cycles and the ``dyn_state`` of one trajectory in :mod:`zoo.analysis.limit_cycles`; the
settings in :mod:`zoo.analysis.diagnostics_config`. Their public names are re-exported here.

A network's ``dyn_state`` is ``limit_cycle`` if any of its trajectories is, else ``irregular`` if any is,
else ``fixed_point`` if all are, else ``slow_point``. ``dyn_mechanism`` maps it onto the paper's two
mechanisms: ``limit_cycle`` for {limit_cycle, irregular} (memory held by sustained dynamics),
``slow_point`` for {fixed_point, slow_point} (memory held by activity that slows down: the slow-point
manifold). The reference label looks at trial 0 only; ``trial0_mechanism`` is the same mapping applied to
that trajectory alone (networks can hold one memory on a cycle and the other at a fixed point). Compare
with the reference label with :func:`mechanism_confusion` / :func:`mechanism_agreement`.

Columns of :func:`diagnose_zoo` (``diagnostics/networks.parquet``; speeds are q, per step):

========================  ==========================================================================
net_id                    the network
dyn_state, dyn_mechanism  see above
n_fixed_points            distinct fixed points found (q < fixed_tol)
n_stable, n_unstable      of those, spectral radius of DF < 1 / >= 1
n_slow_points             distinct local minima of q with fixed_tol <= q < slow_tol
min_speed                 smallest q over the points found (NaN if none)
end_speed                 q at the trajectories' final states (mean)
end_fixed_distance        distance from a trajectory's final state to the nearest fixed point (max
                          over trajectories; large on a cycle)
end_spectral_radius       spectral radius at the fixed point nearest trial 0's final state
end_slowest_tau_ms        its slowest time constant, -1 / max Re(continuous-time eigenvalue) (ms;
                          inf if not decaying)
cycle_period_steps, _ms   period of the limit cycle (median over the cycling trajectories)
cycle_amplitude           half the peak-to-peak range of the tail's top principal component
cycle_ac                  autocorrelation of the tail at the period
n_cycle_trajectories      trajectories on a limit cycle
trajectory_states         dyn_state of each trajectory, comma-separated (trial type 0 first)
trial0_mechanism          dyn_mechanism of trial 0's trajectory alone
output_ptp                largest peak-to-peak range of an output channel over the tails
diagnostics_version       version of this procedure
========================  ==========================================================================
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import layout, publish, store
from ..model import ModelConfig
from ..task import TaskSpec
from .diagnostics_config import DEFAULT_CONFIG, DiagnosticsConfig, torch_threads, with_config
from .fixed_points import FixedPoints, find_fixed_points, jacobian, map_params, speed, step_map
from .limit_cycles import DYN_STATES, analyse_tail, autocorrelation, autonomous_trajectories

__all__ = [
    "DEFAULT_CONFIG", "DIAGNOSTICS_VERSION", "DYN_MECHANISM", "DYN_STATES", "SUMMARY_COLUMNS", "DiagnosticsConfig",
    "FixedPoints", "NetworkDiagnosis", "analyse_tail", "autocorrelation", "autonomous_trajectories",
    "diagnose_network", "diagnose_stacked", "diagnose_zoo", "find_fixed_points", "jacobian",
    "mechanism_agreement", "mechanism_confusion", "read_diagnostics", "speed", "step_map", "torch_threads",
    "with_config", "write_diagnostics",
]

DIAGNOSTICS_VERSION = "1"
#: dyn_state -> the paper's mechanism
DYN_MECHANISM = {"fixed_point": "slow_point", "slow_point": "slow_point", "limit_cycle": "limit_cycle",
                 "irregular": "limit_cycle"}


def _network_state(states: Sequence[str]) -> str:
    if "limit_cycle" in states:
        return "limit_cycle"
    if "irregular" in states:
        return "irregular"
    if states and all(s == "fixed_point" for s in states):
        return "fixed_point"
    return "slow_point"


def _starts(rates: np.ndarray, n: int, tail: int) -> np.ndarray:
    """n starting states from one network's trajectories (L + 1, B, N): each trajectory's last state and
    the mean of its last ``tail`` states (the centre of a cycle, near the fixed point it surrounds), then
    states evenly spaced in time over all trajectories."""
    Lp1, B, N = rates.shape
    special = np.concatenate([rates[-1], rates[-tail:].mean(axis=0)])  # (2B, N)
    flat = rates.transpose(1, 0, 2).reshape(-1, N)
    m = max(0, n - len(special))
    pick = np.linspace(0, flat.shape[0] - 1, m).round().astype(int) if m else np.empty(0, dtype=int)
    return np.concatenate([special, flat[pick]])[:n]


# ---------------------------------------------------------------- per-network summaries
SUMMARY_COLUMNS = ("net_id", "dyn_state", "dyn_mechanism", "n_fixed_points", "n_stable", "n_unstable",
                   "n_slow_points", "min_speed", "end_speed", "end_fixed_distance", "end_spectral_radius",
                   "end_slowest_tau_ms", "cycle_period_steps", "cycle_period_ms", "cycle_amplitude", "cycle_ac",
                   "n_cycle_trajectories", "trajectory_states", "trial0_mechanism", "output_ptp", "diagnostics_version")


@dataclass
class NetworkDiagnosis:
    """Everything :func:`diagnose_network` computed for one network."""

    summary: dict  # the row of diagnose_zoo
    fixed_points: FixedPoints
    rates: np.ndarray  # (L + 1, B, N) noise-free trajectories
    outputs: np.ndarray  # (L, B, n_out)
    trial_types: np.ndarray  # (B,)
    trial_steps: int  # T_nom; the autonomous run starts after rates[trial_steps]
    tails: list[dict] = field(default_factory=list)  # analyse_tail per trajectory
    dt_ms: float = 5.0

    @property
    def time_ms(self) -> np.ndarray:
        return np.arange(self.rates.shape[0]) * self.dt_ms


def _summarise(net_id, fp: FixedPoints, rates: np.ndarray, outputs: np.ndarray, t_nom: int, dt_ms: float,
               W: torch.Tensor, b: torch.Tensor, alpha: float, config: DiagnosticsConfig):
    """One network's summary row and per-trajectory tail analyses. rates (L + 1, B, N)."""
    L = rates.shape[0] - 1
    n_auto = L - t_nom
    start = L + 1 - max(8, int(round(config.tail_fraction * n_auto)))
    tails = [analyse_tail(rates[start:, j], config) for j in range(rates.shape[1])]
    states = [t["state"] for t in tails]
    dyn_state = _network_state(states)
    cyc = [t for t in tails if t["state"] == "limit_cycle"]
    ends = torch.as_tensor(rates[-1], dtype=torch.float64)  # (B, N)
    end_q = speed(ends[None], W[None].double(), b[None].double(), alpha)[0].numpy()
    fixed = fp.points[fp.is_fixed]
    if len(fixed):
        d = np.linalg.norm(ends.numpy()[:, None, :] - fixed[None], axis=-1)  # (B, F)
        nearest = d.argmin(axis=1)
        end_dist = float(d.min(axis=1).max())
        near0 = int(np.flatnonzero(fp.is_fixed)[nearest[0]])
        end_rho = float(fp.spectral_radius[near0])
        end_tau = float(fp.slowest_tau_ms()[near0])
    else:
        end_dist = end_rho = end_tau = np.nan
    period = float(np.median([t["period_steps"] for t in cyc])) if cyc else np.nan
    o = outputs[start:]  # outputs[t] is read from rates[t]
    row = {
        "net_id": net_id,
        "dyn_state": dyn_state,
        "dyn_mechanism": DYN_MECHANISM[dyn_state],
        "n_fixed_points": int(fp.is_fixed.sum()),
        "n_stable": int((fp.is_fixed & fp.stable).sum()),
        "n_unstable": int((fp.is_fixed & ~fp.stable).sum()),
        "n_slow_points": int((~fp.is_fixed).sum()),
        "min_speed": float(fp.speed.min()) if len(fp) else np.nan,
        "end_speed": float(end_q.mean()),
        "end_fixed_distance": end_dist,
        "end_spectral_radius": end_rho,
        "end_slowest_tau_ms": end_tau,
        "cycle_period_steps": period,
        "cycle_period_ms": period * dt_ms,
        "cycle_amplitude": float(np.median([t["amplitude"] for t in cyc])) if cyc else np.nan,
        "cycle_ac": float(np.median([t["ac"] for t in cyc])) if cyc else np.nan,
        "n_cycle_trajectories": len(cyc),
        "trajectory_states": ",".join(states),
        "trial0_mechanism": DYN_MECHANISM[_network_state(states[:1])],
        "output_ptp": float(np.ptp(o, axis=0).max()) if o.size else np.nan,
        "diagnostics_version": DIAGNOSTICS_VERSION,
    }
    return row, tails


def diagnose_stacked(state: dict, cfg: ModelConfig, task: TaskSpec, *, net_ids: Sequence[str] | None = None,
                     seeds: Sequence[int] | None = None, config: DiagnosticsConfig = DEFAULT_CONFIG, device=None,
                     keep: bool = False) -> tuple[pd.DataFrame, list[NetworkDiagnosis]]:
    """Diagnose K stacked networks sharing ``cfg`` and ``task``: one summary row per network (columns
    :data:`SUMMARY_COLUMNS`), and with ``keep`` the full :class:`NetworkDiagnosis` of each."""
    with torch_threads(config.threads):
        return _diagnose_stacked(state, cfg, task, net_ids, seeds, config, device, keep)


def _diagnose_stacked(state, cfg, task, net_ids, seeds, config, device, keep):
    K = int(torch.as_tensor(state["W_rec.weight"]).shape[0])
    net_ids = [f"net{k}" for k in range(K)] if net_ids is None else list(net_ids)
    traj = autonomous_trajectories(state, cfg, task, seeds=seeds, config=config, device=device)
    rates = traj["rates"]  # (K, L + 1, B, N)
    n_auto = traj["n_steps"] - traj["trial_steps"]
    tail = max(8, int(round(config.tail_fraction * n_auto)))
    starts = torch.as_tensor(np.stack([_starts(rates[k], config.n_starts, tail) for k in range(K)]))
    if device is not None:
        starts = starts.to(device)
    fps = find_fixed_points(state, starts, alpha=cfg.alpha, dt_ms=cfg.dt_ms, config=config)
    W, b = map_params(state)
    rows, details = [], []
    for k in range(K):
        row, tails = _summarise(net_ids[k], fps[k], rates[k], traj["outputs"][k], traj["trial_steps"], cfg.dt_ms,
                                W[k].cpu(), b[k].cpu(), cfg.alpha, config)
        rows.append(row)
        if keep:
            details.append(NetworkDiagnosis(row, fps[k], rates[k], traj["outputs"][k], traj["trial_types"],
                                            traj["trial_steps"], tails, cfg.dt_ms))
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS)), details


def _group_key(config_json: str):
    from ..config import NetConfig

    c = NetConfig.from_dict(json.loads(config_json))
    return c.model_config(), c.task()


def diagnose_zoo(zoo, *, config: DiagnosticsConfig = DEFAULT_CONFIG, chunk_size: int = 32, device=None,
                 progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """Diagnostics of every network of ``zoo`` (a :class:`zoo.api.Zoo`), one row per network in the order of
    ``zoo.metadata`` (columns :data:`SUMMARY_COLUMNS`). Networks sharing a model and task are stacked and
    run ``chunk_size`` at a time; ``progress(n)`` is called after each chunk with its size."""
    from ..api import Zoo

    meta = zoo.metadata
    if not len(meta):
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    keys = [_group_key(c) for c in meta["config"]]
    parts = []
    for key in dict.fromkeys(keys):
        cfg, task = key
        rows = meta[np.array([k == key for k in keys], dtype=bool)]
        for lo in range(0, len(rows), max(1, int(chunk_size))):
            chunk = rows.iloc[lo:lo + max(1, int(chunk_size))]
            sub = Zoo(zoo.source, chunk, zoo.info)
            df, _ = diagnose_stacked(sub.weights(), cfg, task, net_ids=chunk["net_id"].tolist(),
                                     seeds=chunk["seed"].tolist(), config=config, device=device)
            df.index = chunk.index
            parts.append(df)
            if progress is not None:
                progress(len(chunk))
    return pd.concat(parts).loc[meta.index].reset_index(drop=True)


def diagnose_network(net, *, config: DiagnosticsConfig = DEFAULT_CONFIG, device=None) -> NetworkDiagnosis:
    """On-demand diagnostics of one :class:`zoo.api.Network`: its summary row, fixed points, noise-free
    trajectories and per-trajectory tail analyses."""
    c = net.config
    state = {k: v[None] for k, v in net.state_dict().items()}
    _, details = diagnose_stacked(state, c.model_config(), c.task(), net_ids=[net.row["net_id"]],
                                  seeds=[int(net.row["seed"])], config=config, device=device, keep=True)
    return details[0]


# ---------------------------------------------------------------- storage and comparison
def write_diagnostics(folder: str | os.PathLike, df: pd.DataFrame, *, merge: bool = True) -> Path:
    """Store ``df`` (from :func:`diagnose_zoo`) as ``diagnostics/networks.parquet`` in the release
    ``folder`` (atomically, with :func:`zoo.store.write_table`), then refresh the release's manifest.

    With ``merge`` (default) the rows of networks that ``df`` does not cover are kept from an existing table,
    so diagnosing a subset never drops the others. Rows are ordered by ``net_id``. Returns the file's path."""
    folder = Path(folder)
    if not (folder / layout.METADATA_PATH).exists():
        raise FileNotFoundError(f"{folder} is not a zoo release (no {layout.METADATA_PATH})")
    if "net_id" not in df.columns:
        raise ValueError("the diagnostics table needs a net_id column")
    path = folder / layout.DIAGNOSTICS_PATH
    if merge and path.exists():
        old = store.read_table(path)
        df = pd.concat([old[~old["net_id"].isin(df["net_id"])], df], ignore_index=True)
    with publish.Staging(folder) as staged:  # switched in with a new manifest at once (readers see old or new)
        store.write_table(staged.path(layout.DIAGNOSTICS_PATH), df.sort_values("net_id", kind="stable")
                          .reset_index(drop=True))
        publish.publish(staged)
    return path


def read_diagnostics(source) -> pd.DataFrame:
    """The stored diagnostics of a release folder, or of a :class:`zoo.api.Zoo` (restricted to its
    networks, in its order). Raises FileNotFoundError if the release has none."""
    if hasattr(source, "metadata") and hasattr(source, "source"):
        df = store.read_table(source.source.local_path(layout.DIAGNOSTICS_PATH))
        ids = source.metadata["net_id"]
        return df.set_index("net_id").reindex(ids).reset_index()
    path = Path(source) / layout.DIAGNOSTICS_PATH
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run `zoo diagnose {source} --write`")
    return store.read_table(path)


def _with_reference(diagnostics: pd.DataFrame, metadata: pd.DataFrame | None) -> pd.DataFrame:
    if metadata is None:
        if "mechanism" not in diagnostics.columns:
            raise ValueError("pass the metadata (or a diagnostics table with a 'mechanism' column)")
        return diagnostics
    meta = getattr(metadata, "metadata", metadata)
    cols = [c for c in ("net_id", "mechanism", "outcome", "psd_ratio") if c in meta.columns]
    return diagnostics.drop(columns=[c for c in cols if c != "net_id" and c in diagnostics.columns]).merge(
        meta[cols], on="net_id", how="left")


def mechanism_confusion(diagnostics: pd.DataFrame, metadata=None, *, column: str = "dyn_mechanism",
                        learned_only: bool = True) -> pd.DataFrame:
    """Confusion table: reference ``mechanism`` (rows) vs ``column`` of the diagnostics (``dyn_mechanism``
    or ``dyn_state``), with totals. ``learned_only`` keeps the networks with a reference mechanism;
    otherwise unlearned ones appear as their outcome."""
    df = _with_reference(diagnostics, metadata)
    ref = df["mechanism"]
    if learned_only:
        df = df[ref.notna()]
        ref = df["mechanism"]
    else:
        ref = ref.fillna(df["outcome"] if "outcome" in df.columns else "not_learned")
    return pd.crosstab(ref.rename("reference"), df[column].rename(column), margins=True, margins_name="total")


def mechanism_agreement(diagnostics: pd.DataFrame, metadata=None) -> float:
    """Fraction of learned networks whose ``dyn_mechanism`` equals the reference mechanism (NaN if none)."""
    df = _with_reference(diagnostics, metadata)
    df = df[df["mechanism"].notna()]
    return float((df["mechanism"] == df["dyn_mechanism"]).mean()) if len(df) else float("nan")
