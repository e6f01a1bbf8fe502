"""Dynamics diagnostics of trained networks: fixed and slow points, their stability, and limit cycles.

These complement the reference ``psd_ratio`` index (see :mod:`zoo.labels`) with quantities that have a
direct dynamical meaning. All work is batched over K stacked networks (``state`` as in
:func:`zoo.simulate.simulate_stacked`: the reference parameter names, each stacked on a leading K axis).

The noise-free autonomous map (zero input) of a network is

    F(x) = (1 - a) x + a tanh(W_rec x + b_rec + b_in),        a = dt / tau,

and its *speed* is ``q(x) = |F(x) - x|^2 / 2`` (per step; ``q = a^2 |tanh(W x + b) - x|^2 / 2``).

Fixed and slow points (:func:`find_fixed_points`). From many starting states (by default taken along the
network's own trajectories), q is minimised for all networks and starts at once with Adam (float32,
hand-written gradient ``a^2 (W^T (s * G) - G)``, ``G = tanh(W x + b) - x``, ``s = 1 - tanh^2``,
cosine-decayed step). Adam results closer than ``candidate_tol`` are merged, and up to ``max_polish`` of them
per network (lowest speed first), plus the first ``direct_starts`` raw starts, are polished with batched
Levenberg-Marquardt steps on G in float64, which converge quadratically onto true fixed points and onto the
local minima of q elsewhere; polished points closer than ``dedup_tol`` are merged. A point with
``q < fixed_tol`` is a *fixed point*; a local minimum with ``fixed_tol <= q < slow_tol`` is a *slow point*;
other minima are dropped. No search can promise every fixed point (saddles far from the trajectories may be
missed); the attractors reached by the trajectories and the points they circle are found reliably. At each
point the Jacobian of F, ``DF = (1 - a) I + a diag(s) W``, gives discrete-time eigenvalues ``lambda``
(stable iff the spectral radius is < 1) and continuous-time eigenvalues ``(lambda - 1) / dt`` (per ms;
stable iff all real parts are < 0; they are those of ``tau dx/dt = -x + tanh(W x + b)``).

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

import contextlib
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import layout, store
from ..manifest import write_manifest
from ..model import PARAM_NAMES, ModelConfig
from ..simulate import nominal_steps, simulate_stacked
from ..task import TaskSpec

DIAGNOSTICS_VERSION = "1"
DYN_STATES = ("fixed_point", "slow_point", "limit_cycle", "irregular")
#: dyn_state -> the paper's mechanism
DYN_MECHANISM = {"fixed_point": "slow_point", "slow_point": "slow_point", "limit_cycle": "limit_cycle",
                 "irregular": "limit_cycle"}


@dataclass(frozen=True)
class DiagnosticsConfig:
    """Settings of the diagnostics (defaults are the documented procedure)."""

    autonomous_steps: int = 1000  # zero-input steps after the nominal trial (at least 8 T_nom)
    tail_fraction: float = 0.6  # the last fraction of the autonomous run that is analysed
    copies: int = 1  # trajectories per trial type
    n_starts: int = 48  # fixed-point search starts per network
    adam_steps: int = 500
    adam_lr: float = 1e-2
    polish_steps: int = 30
    max_polish: int = 16  # candidates per network polished (lowest speed first)
    polish_tol: float = 1.0  # candidates with a larger speed after Adam are dropped
    candidate_tol: float = 0.05  # Adam results closer than this are polished once
    direct_starts: int = 4  # the first starts are also polished directly (no Adam): in diagnose_*, each
    # trajectory's last state and tail mean (Adam can slide from there into a slow valley instead)
    fixed_tol: float = 1e-10  # q below this: fixed point
    slow_tol: float = 1e-5  # local minimum of q below this (and not fixed): slow point
    dedup_tol: float = 1e-3  # polished points closer than this (Euclidean, rate units) are one point
    conv_speed: float = 1e-5  # final |x[t+1] - x[t]| below this: converged
    cycle_ac: float = 0.9  # autocorrelation needed at the period
    amp_tol: float = 1e-3  # RMS excursion below which the tail counts as static
    decay_ratio: float = 0.9  # late / early excursion (or step size) needed for sustained motion
    threads: int | None = 1  # torch threads while diagnosing (None: leave as is); the batched problems are
    # small, and one thread avoids the synchronisation cost that dominates them on a busy CPU

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_CONFIG = DiagnosticsConfig()


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch threads (restored afterwards); None leaves the setting alone."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------- the map
def _map_params(state: dict, u: torch.Tensor | None = None, dtype=torch.float64):
    """W (K, N, N) and b (K, N) of the zero-input (or constant-input ``u``) map, on ``state``'s device."""
    W = torch.as_tensor(state["W_rec.weight"]).to(dtype)
    b = torch.as_tensor(state["W_rec.bias"]).to(W.device, dtype) + torch.as_tensor(state["W_in.bias"]).to(W.device, dtype)
    if u is not None:
        Win = torch.as_tensor(state["W_in.weight"]).to(W.device, dtype)  # (K, N, n_in)
        b = b + torch.einsum("kni,i->kn", Win, torch.as_tensor(u, dtype=dtype, device=W.device))
    return W, b


def step_map(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """F(x) for x (K, S, N): ``(1 - a) x + a tanh(x W^T + b)``."""
    return (1 - alpha) * x + alpha * torch.tanh(torch.baddbmm(b[:, None, :], x, W.transpose(1, 2)))


def speed(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """q(x) = |F(x) - x|^2 / 2 for x (K, S, N) -> (K, S)."""
    G = torch.tanh(torch.baddbmm(b[:, None, :], x, W.transpose(1, 2))) - x
    return 0.5 * alpha**2 * (G * G).sum(-1)


def jacobian(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """DF at points x (P, N) of networks W (P, N, N), b (P, N): ``(1 - a) I + a diag(1 - tanh^2) W``."""
    h = torch.tanh(torch.bmm(W, x[:, :, None])[..., 0] + b)
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    return (1 - alpha) * eye + alpha * (1 - h * h)[:, :, None] * W


# ---------------------------------------------------------------- fixed points
@dataclass
class FixedPoints:
    """The fixed and slow points found for one network, sorted: fixed points first, then by speed."""

    points: np.ndarray  # (P, N)
    speed: np.ndarray  # (P,) q
    eigvals: np.ndarray  # (P, N) complex eigenvalues of DF, by decreasing modulus
    alpha: float
    dt_ms: float = 5.0
    fixed_tol: float = DEFAULT_CONFIG.fixed_tol

    def __len__(self) -> int:
        return int(self.points.shape[0])

    @property
    def is_fixed(self) -> np.ndarray:
        return self.speed < self.fixed_tol

    @property
    def spectral_radius(self) -> np.ndarray:
        return np.abs(self.eigvals).max(axis=1) if len(self) else np.empty(0)

    @property
    def stable(self) -> np.ndarray:
        """Spectral radius of DF < 1 (a local attractor of the map, if it is a fixed point)."""
        return self.spectral_radius < 1.0

    def ct_eigvals(self) -> np.ndarray:
        """Continuous-time eigenvalues (per ms): ``(lambda - 1) / dt``."""
        return (self.eigvals - 1.0) / self.dt_ms

    def slowest_tau_ms(self) -> np.ndarray:
        """Time constant (ms) of the slowest mode, ``-1 / max Re(ct eigenvalue)`` (inf if not decaying)."""
        mr = self.ct_eigvals().real.max(axis=1) if len(self) else np.empty(0)
        with np.errstate(divide="ignore"):
            return np.where(mr < 0, -1.0 / np.where(mr < 0, mr, -1.0), np.inf)

    def to_frame(self) -> pd.DataFrame:
        """One row per point: kind, speed, stability, leading eigenvalue and timescales."""
        if not len(self):
            return pd.DataFrame(columns=["kind", "speed", "stable", "spectral_radius", "leading_eig_angle",
                                         "n_unstable_modes", "max_real_ct_per_ms", "slowest_tau_ms", "norm"])
        lead = self.eigvals[:, 0]
        ct = self.ct_eigvals()
        return pd.DataFrame({
            "kind": np.where(self.is_fixed, "fixed", "slow"),
            "speed": self.speed,
            "stable": self.stable,
            "spectral_radius": self.spectral_radius,
            "leading_eig_angle": np.abs(np.angle(lead)),
            "n_unstable_modes": (np.abs(self.eigvals) >= 1.0).sum(axis=1),
            "max_real_ct_per_ms": ct.real.max(axis=1),
            "slowest_tau_ms": self.slowest_tau_ms(),
            "norm": np.linalg.norm(self.points, axis=1),
        })


def _dedup(x: torch.Tensor, q: torch.Tensor, tol: float) -> torch.Tensor:
    """Indices of points (x (S, N), q (S,)) kept by a greedy pass in order of increasing q: a point is
    dropped if it lies within ``tol`` of a kept one."""
    order = torch.argsort(q)
    keep: list[int] = []
    if len(order) == 0:
        return torch.empty(0, dtype=torch.long)
    d = torch.cdist(x[order], x[order])
    for i in range(len(order)):
        if not keep or bool((d[i, keep] > tol).all()):
            keep.append(i)
    return order[torch.as_tensor(keep, dtype=torch.long)]


def _adam(x: torch.Tensor, W, b, alpha: float, steps: int, lr: float) -> torch.Tensor:
    """Minimise q for all (K, S) starts at once; returns the final points."""
    m = torch.zeros_like(x)
    v = torch.zeros_like(x)
    WT = W.transpose(1, 2)
    b1, b2, eps = 0.9, 0.999, 1e-12
    a2 = alpha**2
    for t in range(1, steps + 1):
        h = torch.tanh(torch.baddbmm(b[:, None, :], x, WT))
        G = h - x
        grad = a2 * (torch.bmm((1 - h * h) * G, W) - G)
        m.mul_(b1).add_(grad, alpha=1 - b1)
        v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        step = lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t / steps)))  # cosine decay to lr / 100
        x = x - step * (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps)
    return x


def _polish(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """Levenberg-Marquardt on G(x) = tanh(W x + b) - x for P points (x (P, N), W (P, N, N), b (P, N))."""
    P, N = x.shape
    if P == 0:
        return x
    eye = torch.eye(N, dtype=x.dtype, device=x.device)

    def residual(z):
        return torch.tanh(torch.bmm(W, z[:, :, None])[..., 0] + b) - z

    lam = torch.full((P,), 1e-3, dtype=x.dtype, device=x.device)
    G = residual(x)
    cost = (G * G).sum(-1)
    stalled = 0
    for _ in range(steps):
        if bool((cost < 1e-26).all()) or stalled >= 8:
            break
        h = torch.tanh(torch.bmm(W, x[:, :, None])[..., 0] + b)
        J = (1 - h * h)[:, :, None] * W - eye  # (P, N, N)
        JT = J.transpose(1, 2)
        H = torch.bmm(JT, J)
        g = torch.bmm(JT, G[:, :, None])[..., 0]
        scale = torch.diagonal(H, dim1=1, dim2=2).mean(-1).clamp_min(1e-12)
        A = H + (lam * scale)[:, None, None] * eye
        try:
            delta = torch.linalg.solve(A, -g[:, :, None])[..., 0]
        except RuntimeError:  # pragma: no cover - singular despite damping
            delta = -g * 1e-2
        x_new = x + delta
        G_new = residual(x_new)
        cost_new = (G_new * G_new).sum(-1)
        better = torch.isfinite(cost_new) & (cost_new < cost)
        progress = better & (cost_new < cost * (1 - 1e-6)) & (cost > 1e-26)
        stalled = 0 if bool(progress.any()) else stalled + 1
        x = torch.where(better[:, None], x_new, x)
        G = torch.where(better[:, None], G_new, G)
        cost = torch.where(better, cost_new, cost)
        lam = torch.where(better, lam / 3, lam * 4).clamp(1e-12, 1e8)
    return x


def find_fixed_points(state: dict, starts: torch.Tensor, *, alpha: float, dt_ms: float = 5.0,
                      u: torch.Tensor | None = None, config: DiagnosticsConfig = DEFAULT_CONFIG) -> list[FixedPoints]:
    """Fixed and slow points of K stacked networks from ``starts`` (K, S, N), by minimising the speed q.

    ``state`` holds at least ``W_rec.weight`` (K, N, N), ``W_rec.bias`` and ``W_in.bias`` (K, N) (and
    ``W_in.weight`` if a constant input ``u`` (n_in,) is given). Returns one :class:`FixedPoints` per
    network (see the module docstring for the method and ``config`` for the tolerances). Runs in float64 on
    the device of ``starts``."""
    with torch_threads(config.threads):
        return _find_fixed_points(state, starts, alpha, dt_ms, u, config)


def _find_fixed_points(state, starts, alpha, dt_ms, u, config) -> list[FixedPoints]:
    W, b = _map_params(state, u)
    dev = starts.device
    W, b = W.to(dev), b.to(dev)
    K, S, N = starts.shape
    if W.shape[0] != K:
        raise ValueError(f"{W.shape[0]} networks but starts for {K}")
    with torch.no_grad():
        x = _adam(starts.to(torch.float32), W.float(), b.float(), alpha, config.adam_steps, config.adam_lr).double()
        q = speed(x, W, b, alpha)
        cand, owner = [], []
        for k in range(K):
            ok = torch.isfinite(q[k]) & (q[k] < config.polish_tol)
            idx = torch.nonzero(ok)[:, 0]
            keep = idx[_dedup(x[k, idx], q[k, idx], config.candidate_tol)][: config.max_polish]
            direct = starts[k, : config.direct_starts].to(torch.float64)
            cand.append(torch.cat([x[k, keep], direct]))
            owner += [k] * (len(keep) + len(direct))
        X = torch.cat(cand) if cand else torch.empty(0, N, dtype=torch.float64, device=dev)
        own = torch.as_tensor(owner, dtype=torch.long, device=dev)
        X = _polish(X, W[own], b[own], config.polish_steps)
        Q = speed(X[:, None, :], W[own], b[own], alpha)[:, 0] if len(X) else torch.empty(0, dtype=X.dtype)
        J = jacobian(X, W[own], b[own], alpha) if len(X) else torch.empty(0, N, N, dtype=X.dtype)
        eig = torch.linalg.eigvals(J) if len(X) else torch.empty(0, N, dtype=torch.complex128)
    X, Q, eig, own = X.cpu().numpy(), Q.cpu().numpy(), eig.cpu().numpy(), own.cpu().numpy()
    out = []
    for k in range(K):
        sel = np.flatnonzero((own == k) & (Q < config.slow_tol))
        xs, qs, es = X[sel], Q[sel], eig[sel]
        if len(sel) > 1:  # merge what the polish brought together
            keep = _dedup(torch.as_tensor(xs), torch.as_tensor(qs), config.dedup_tol).numpy()
            xs, qs, es = xs[keep], qs[keep], es[keep]
        order = np.lexsort((qs, qs >= config.fixed_tol))
        xs, qs, es = xs[order], qs[order], es[order]
        es = np.take_along_axis(es, np.argsort(-np.abs(es), axis=1, kind="stable"), axis=1)
        out.append(FixedPoints(xs, qs, es, float(alpha), float(dt_ms), config.fixed_tol))
    return out


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
    W, b = _map_params(state)
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
    store.write_table(path, df.sort_values("net_id", kind="stable").reset_index(drop=True))
    write_manifest(folder)
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


def with_config(config: DiagnosticsConfig | None = None, **changes) -> DiagnosticsConfig:
    """A :class:`DiagnosticsConfig` with some settings changed."""
    return replace(config or DEFAULT_CONFIG, **changes)
