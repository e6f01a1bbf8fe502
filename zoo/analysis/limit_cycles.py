"""Limit cycles and the other long-run behaviours of trained networks: noise-free autonomous trajectories
(:func:`autonomous_trajectories`) and the classification of a trajectory's tail into a ``dyn_state``
(:func:`analyse_tail`, with :func:`autocorrelation`). Part of the dynamics diagnostics
(:mod:`zoo.analysis.dynamics`); trajectories are run batched over K stacked networks.

Trajectories (:func:`autonomous_trajectories`). Each network is run noise-free on its nominal trial (cue,
delay, reaction; ``copies`` trials of each type, random initial state from the network's own stream), then
autonomously with zero input for ``max(autonomous_steps, 8 T_nom)`` more steps. The last ``tail_fraction``
of the autonomous part is analysed (:func:`analyse_tail`):

- periodicity: the overlap-normalised autocorrelation ``ac(lag)`` of the centred tail (all units); a
  first local maximum above ``cycle_ac`` after ``ac`` has dropped below 0.5 marks a periodic orbit, or
  >= 4 upward zero crossings of the top principal component with intervals of coefficient of variation
  < 0.05; the period (steps, not necessarily an integer) is the mean crossing interval when the crossings
  are regular, else the parabolic refinement of the autocorrelation peak;
- sustained vs decaying: the RMS excursion per period-long window, last two windows over first two
  (``>= decay_ratio`` is sustained), and the mean step size in the last vs the first quarter of the tail;
- amplitude: half the peak-to-peak range of the top principal component over the tail (rate units).

``dyn_state`` of one trajectory, a small vocabulary:

====================  ==================================================================================
``limit_cycle``       periodic, with an RMS excursion >= ``amp_tol`` that does not decay (a stable orbit)
``irregular``         sustained (non-decaying) motion that is not periodic (quasi-periodic, chaotic, or a
                      period longer than half the analysed tail)
``fixed_point``       the trajectory has converged: final step size < ``conv_speed``
``slow_point``        neither: still moving, but slowing down (a slow point / ghost, or a very weakly
                      attracting fixed point)
====================  ==================================================================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..model import PARAM_NAMES, ModelConfig
from ..simulate import nominal_steps, simulate_stacked
from ..task import TaskSpec
from .diagnostics_config import DEFAULT_CONFIG, DiagnosticsConfig

DYN_STATES = ("fixed_point", "slow_point", "limit_cycle", "irregular")


# ---------------------------------------------------------------- trajectories
def _as_stack(state: dict, device=None) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(state[k]).to(device=device, dtype=torch.float32) for k in PARAM_NAMES}


def autonomous_trajectories(state: dict, cfg: ModelConfig, task: TaskSpec, *, seeds: Sequence[int] | None = None,
                            config: DiagnosticsConfig = DEFAULT_CONFIG, device=None) -> dict:
    """Noise-free runs of K stacked networks: the nominal trial (``copies`` trials of each type), then
    zero input for ``max(autonomous_steps, 8 T_nom)`` steps.

    Returns ``rates`` (K, L + 1, B, N) and ``outputs`` (K, L, B, n_out) as float64 numpy arrays,
    ``trial_steps`` (T_nom: the autonomous part starts after state ``rates[:, T_nom]``), ``trial_types``
    (B,) and ``n_steps`` L. ``seeds`` select each network's initial-state stream (default 0)."""
    st = _as_stack(state, device)
    K = st["W_rec.weight"].shape[0]
    t_nom = nominal_steps(task)
    L = t_nom + max(int(config.autonomous_steps), 8 * t_nom)
    dev = st["W_rec.weight"].device
    u = task.inputs(device=dev, n_steps=L)  # (L, B, 2): cue, then zeros
    types = task.trial_types(dev)
    pick = torch.cat([torch.nonzero(types == t)[: config.copies, 0] for t in (0, 1)])
    seeds = [0] * K if seeds is None else [int(s) for s in seeds]
    outputs, rates = simulate_stacked(st, cfg, u[:, pick], seeds=seeds, noise=False, random_init=True)
    return {"rates": rates.double().cpu().numpy(), "outputs": outputs.double().cpu().numpy(),
            "trial_steps": t_nom, "trial_types": types[pick].cpu().numpy(), "n_steps": L}


def autocorrelation(X: np.ndarray, max_lag: int) -> np.ndarray:
    """Overlap-normalised autocorrelation of a centred multivariate series X (L, N), lags 0..max_lag:
    ``sum_t <x_t, x_{t+lag}> / sqrt(sum_t |x_t|^2 * sum_t |x_{t+lag}|^2)`` over the overlapping part."""
    L = X.shape[0]
    nfft = 1 << int(math.ceil(math.log2(2 * L)))
    F = np.fft.rfft(X, n=nfft, axis=0)
    r = np.fft.irfft((F * F.conj()).real.sum(axis=1), n=nfft)[: max_lag + 1]
    e = np.concatenate([[0.0], np.cumsum((X * X).sum(axis=1))])
    lags = np.arange(max_lag + 1)
    head = e[L - lags]  # sum over t < L - lag
    tail = e[L] - e[lags]  # sum over t >= lag
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((head > 0) & (tail > 0), r / np.sqrt(head * tail), 0.0)


def _ac_period(ac: np.ndarray, threshold: float) -> tuple[float, float]:
    """First local maximum of ``ac`` above ``threshold`` after ``ac`` dropped below 0.5: (period, value)."""
    below = np.flatnonzero(ac < 0.5)
    if not below.size:
        return np.nan, np.nan
    for tau in range(max(2, int(below[0])), len(ac) - 1):
        if ac[tau] >= ac[tau - 1] and ac[tau] >= ac[tau + 1] and ac[tau] > threshold:
            den = ac[tau - 1] - 2 * ac[tau] + ac[tau + 1]
            shift = 0.5 * (ac[tau - 1] - ac[tau + 1]) / den if den < 0 else 0.0
            return tau + float(np.clip(shift, -0.5, 0.5)), float(ac[tau])
    return np.nan, np.nan


def _crossings(p: np.ndarray) -> np.ndarray:
    """Times (fractional steps) of the upward zero crossings of p."""
    idx = np.flatnonzero((p[:-1] < 0) & (p[1:] >= 0))
    return idx + p[idx] / (p[idx] - p[idx + 1])


def analyse_tail(traj: np.ndarray, config: DiagnosticsConfig = DEFAULT_CONFIG) -> dict:
    """Classify one trajectory's tail (L, N) (see the module docstring). Returns ``state``, ``period_steps``
    (NaN unless periodic), ``amplitude``, ``ac`` (autocorrelation at the period), ``rms`` (RMS excursion),
    ``final_speed`` (mean |x[t+1] - x[t]| over the last 5 steps) and ``speed_ratio`` (late / early)."""
    X = np.asarray(traj, dtype=np.float64)
    out = {"state": "irregular", "period_steps": np.nan, "amplitude": np.nan, "ac": np.nan, "rms": np.nan,
           "final_speed": np.nan, "speed_ratio": np.nan}
    if X.ndim != 2 or X.shape[0] < 8 or not np.all(np.isfinite(X)):
        return out
    L = X.shape[0]
    steps = np.linalg.norm(np.diff(X, axis=0), axis=1)
    out["final_speed"] = float(steps[-5:].mean())
    q = max(1, len(steps) // 4)
    early, late = steps[:q].mean(), steps[-q:].mean()
    out["speed_ratio"] = float(late / early) if early > 0 else (1.0 if late == 0 else np.inf)
    Xc = X - X.mean(axis=0)
    out["rms"] = rms = float(np.sqrt((Xc * Xc).sum(axis=1).mean()))
    # top principal component of the tail
    Xt = torch.from_numpy(Xc)
    _, V = torch.linalg.eigh(Xt.T @ Xt)  # torch: honours the thread setting of the diagnostics
    p = (Xt @ V[:, -1]).numpy()
    out["amplitude"] = float(0.5 * np.ptp(p))
    converged = out["final_speed"] < config.conv_speed
    if rms < config.amp_tol:
        out["state"] = "fixed_point" if converged else "slow_point"
        return out
    ac = autocorrelation(Xc, L // 2)
    period, ac_peak = _ac_period(ac, config.cycle_ac)
    intervals = np.diff(_crossings(p))
    regular = len(intervals) >= 3 and intervals.mean() > 1 and intervals.std() / intervals.mean() < 0.05
    if regular:
        # regular crossings of the top PC give a sub-step period; keep the autocorrelation's instead if it
        # found a clearly different one (the top PC can cross twice per period)
        if not (np.isfinite(period) and abs(intervals.mean() - period) > 0.25 * period):
            period = float(intervals.mean())
    periodic = bool(np.isfinite(period))
    sustained = out["speed_ratio"] >= config.decay_ratio
    if periodic:
        P = max(2, int(round(period)))
        n_win = L // P
        if n_win >= 4:  # RMS excursion per period-long window: last two vs first two
            win = []
            for i in range(n_win):
                w = Xc[i * P:(i + 1) * P]
                w = w - w.mean(axis=0)
                win.append(float(np.sqrt((w * w).sum(axis=1).mean())))
            first, last = np.mean(win[:2]), np.mean(win[-2:])
            sustained = bool(first > 0 and last / first >= config.decay_ratio)
        out["ac"] = float(ac[min(int(round(period)), len(ac) - 1)])
        if sustained:
            out["state"] = "limit_cycle"
            out["period_steps"] = float(period)
            return out
    if converged:
        out["state"] = "fixed_point"
    elif sustained and not periodic:
        out["state"] = "irregular"
    else:
        out["state"] = "slow_point"
    return out
