"""Fixed and slow points of trained networks, and their stability: the network's autonomous map, its speed
and Jacobian (:func:`step_map`, :func:`speed`, :func:`jacobian`), and the batched search
:func:`find_fixed_points` returning :class:`FixedPoints`. Part of the dynamics diagnostics
(:mod:`zoo.analysis.dynamics`); all work is batched over K stacked networks.

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .diagnostics_config import DEFAULT_CONFIG, DiagnosticsConfig, torch_threads


# ---------------------------------------------------------------- the map
def map_params(state: dict, u: torch.Tensor | None = None, dtype=torch.float64):
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
    W, b = map_params(state, u)
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
