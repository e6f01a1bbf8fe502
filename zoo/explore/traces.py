"""The per-network panels of the explorer, precomputed: training curves, the outputs of both trial types on the
extended trial the labels use (9x), and trial 0's firing rates in the plane of their top two principal
components (both trial types projected), all thinned to at most ``max_points`` points per series.

Networks are simulated in batches with :func:`zoo.simulate.simulate_stacked`, noise on, from each network's
own stream (as the labels do), so the trajectory shown is the one the psd_ratio label was computed from.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import torch

from .. import labels, store
from ..analysis.diagnostics_config import torch_threads
from ..config import NetConfig
from ..simulate import extended_inputs, nominal_steps, simulate_stacked
from .tables import rounded

#: points per series at most (curves and trajectories are thinned to this)
DEFAULT_MAX_POINTS = 150
#: networks simulated together
BATCH = 64


def thin(n: int, max_points: int, keep: tuple[int, ...] = ()) -> np.ndarray:
    """Indices of ``n`` samples thinned evenly to about ``max_points``, always with the first, the last and
    ``keep`` (e.g. the first learned epoch)."""
    if n <= max_points:
        return np.arange(n)
    idx = np.unique(np.round(np.linspace(0, n - 1, max_points)).astype(int))
    extra = [k for k in keep if 0 <= k < n]
    return np.unique(np.concatenate([idx, np.asarray(extra, dtype=int)]))


def curve_panel(curves: dict[str, np.ndarray], first_learned: int | None, max_points: int) -> dict:
    """Loss, accuracy and reliability per epoch, thinned (the first learned epoch always kept)."""
    n = len(curves["loss"])
    keep = (int(first_learned),) if first_learned is not None and first_learned >= 0 else ()
    idx = thin(n, max_points, keep)
    return {"epoch": idx.tolist(), "loss": rounded(curves["loss"][idx], 3),
            "accuracy": rounded(curves["accuracy"][idx], 3), "reliability": rounded(curves["reliability"][idx], 3),
            "first_learned_epoch": keep[0] if keep else None}


def pca_axes(X: np.ndarray) -> np.ndarray:
    """(N, 2) top-2 principal axes of X (L, N), centred, signed as :func:`zoo.labels._pca2` signs them (the
    loading of largest absolute value positive). Computed with torch on one thread: numpy's LAPACK may start
    a thread per core, which on a busy machine makes this small problem a thousand times slower."""
    Xc = torch.from_numpy(X - X.mean(axis=0, keepdims=True))
    with torch_threads(1):
        V = torch.linalg.svd(Xc, full_matrices=False).Vh[:2].T.numpy().copy()
    for c in range(V.shape[1]):
        if V[np.argmax(np.abs(V[:, c])), c] < 0:
            V[:, c] = -V[:, c]
    return V


def _pc_plane(rates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(2 types, L, 2) projections of both trial types' rates (2, L, N) on the top-2 principal axes of trial 0
    (the axes of the labels' psd_ratio), centred on trial 0's mean; and the variance explained."""
    X0 = rates[0].astype(np.float64)
    V = pca_axes(X0)
    mean = X0.mean(axis=0)
    total = float(((X0 - mean) ** 2).sum())
    proj = np.stack([(r.astype(np.float64) - mean) @ V for r in rates])
    explained = (((X0 - mean) @ V) ** 2).sum(axis=0) / total if total > 0 else np.zeros(2)
    return proj, explained


def simulation_panel(outputs: np.ndarray, rates: np.ndarray, task, max_points: int) -> dict:
    """One network's outputs (L, 2 types, 2 channels) and rates (L, 2 types, N) on the extended trial."""
    L = outputs.shape[0]
    stride = -(-L // max_points)  # a uniform step, so the page rebuilds the times from it
    idx = np.arange(0, L, stride)
    proj, explained = _pc_plane(np.transpose(rates, (1, 0, 2)))
    dt = task.dt_ms
    return {
        "t_step_ms": stride * dt, "dt_ms": dt, "nominal_ms": nominal_steps(task) * dt,
        "cue_ms": [0, task.cue_steps * dt],
        "delay_ms": [task.cue_steps * dt, task.reaction_start * dt],
        "reaction_ms": [task.reaction_start * dt, (task.reaction_start + task.reaction_steps) * dt],
        "outputs": [[rounded(outputs[idx, k, c], 3) for c in (0, 1)] for k in (0, 1)],
        "pc": [[rounded(proj[k, idx, c], 3) for c in (0, 1)] for k in (0, 1)],
        "explained": rounded(explained, 3),
    }


def _groups(picked: pd.DataFrame) -> Iterator[tuple[NetConfig, pd.DataFrame]]:
    """Picked rows grouped by what a batched simulation must share (model settings and task)."""
    cfgs = [NetConfig.from_dict(json.loads(c)) for c in picked["config"]]
    keys = [(c.model_config(), c.task()) for c in cfgs]
    order: dict = {}
    for i, k in enumerate(keys):
        order.setdefault(k, []).append(i)
    for idx in order.values():
        yield cfgs[idx[0]], picked.iloc[idx]


def network_panels(zoo, picked: pd.DataFrame, *, max_points: int = DEFAULT_MAX_POINTS,
                   extend: int = labels.EXTENSION_FACTOR, batch: int = BATCH,
                   progress: Callable[[int], None] | None = None) -> Iterator[tuple[str, dict]]:
    """``(net_id, panels)`` for every row of ``picked`` (rows of ``zoo.metadata``): curves and the extended-trial
    simulation, computed in batches of ``batch`` networks; ``progress(k)`` after each batch of k networks."""
    from ..api import Zoo

    for cfg, rows in _groups(picked):
        task, mcfg = cfg.task(), cfg.model_config()
        u = extended_inputs(task, extend)
        types = task.trial_types()
        pick = [int(torch.nonzero(types == t)[0]) for t in (0, 1)]
        for lo in range(0, len(rows), batch):
            part = rows.iloc[lo:lo + batch]
            sub = Zoo(zoo.source, part, zoo.info)
            with torch_threads(1):  # small sequential problems: one thread is fastest
                outputs, rates = simulate_stacked(sub.weights(), mcfg, u[:, pick],
                                                  seeds=part["seed"].astype(int).tolist())
            outputs, rates = outputs.numpy(), rates[:, 1:].numpy()  # rates after each update, as the labels
            curves = {}
            for f, ids in part.groupby("curves_file")["net_id"]:
                curves.update(store.read_curves(zoo.source.local_path(f), ids.tolist()))
            for k, (_, row) in enumerate(part.iterrows()):
                first = row.get("first_learned_epoch")
                yield row["net_id"], {
                    "curves": curve_panel(curves[row["net_id"]], None if pd.isna(first) else int(first), max_points),
                    "sim": simulation_panel(outputs[k], rates[k], task, max_points)}
            if progress is not None:
                progress(len(part))
