"""The joint fit (``method="joint"``, the default): both phase boundaries of a family or pooled panel fitted to
all its (learning rate, delay) cells at once, by maximum likelihood on the counts.

A cell of ``n`` networks with ``k`` events is binomial data, not a fraction. With ``u = log(lr) - mean log(lr)``
over the panel's rates:

- **No-solution boundary** (``kind="critical_delay"``): a network is not learned with probability

      p(lr, D) = floor + (plateau - floor) (1 - exp(-a(lr) (D - D0(lr))))   for D > D0, ``floor`` below,

  ``D0(lr) = D0_mid exp(-u / beta_LC)`` (the paper's onset shape on one power law), ``a(lr) = a_mid exp(c u)``
  (the saturation rate varies smoothly with lr). The ``floor`` takes rare failures below D0 (one network that
  fails at a short delay no longer pulls that rate's D0 to zero), the ``plateau`` the share that fails at long
  delays.
- **Slow-point boundary** (``kind="slow_point"``): among the *learned* networks of a cell, a slow point with
  probability ``lo + (hi - lo) / (1 + exp((D - x0(lr)) / w(lr)))``, ``x0(lr) = x0_mid exp(-u / beta_SP)``,
  ``w(lr) = w_mid exp(c u)``. With the not-learned probability above, the cell's three outcomes are one
  multinomial whose likelihood factorises into these two binomials, so each boundary is fitted on its own.

The optimum is found from the best points of a coarse grid by bounded SLSQP with the analytic gradient.
Intervals (``ci=``): ``"bootstrap"`` (default): percentiles over replicates that resample whole *seeds* (a seed
fixes the initial weights in every cell, so seeds, not networks, are the independent units); ``"profile"``: the
profile likelihood of ``1/beta`` (chi-square with 1 degree of freedom; assumes independent networks);
``"none"``. There is no curvature (Wald) interval: the onset's kink at D0 makes the likelihood non-smooth, and
its curvature far too sharp. Per rate, the boundary (``d0_ms`` / ``midpoint_ms``) is re-estimated on that rate's
cells alone with the shared parameters held at the joint optimum, with its own profile interval (``*_lo_ms``,
``*_hi_ms``); ``*_line_ms`` is the joint power law at that rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special

from ..task import DT_MS
from .outcomes import KINDS, CellCounts, ScalingFit, as_metadata, cell_counts, check_ci, family_rows

_EPS = 1e-9


@dataclass(frozen=True)
class _Shape:
    """One boundary's likelihood: parameter names, bounds and the probability of an event per cell."""

    kind: str
    names: tuple[str, ...]

    def bounds(self, D: np.ndarray) -> list[tuple[float, float]]:
        top = np.log(max(D.max(), 1.0) * 20.0)
        if self.kind == "critical_delay":
            return [(np.log(1.0), top), (0.02, 3.0), (np.log(1e-4), np.log(1.0)), (-4.0, 4.0), (1e-4, 0.3), (0.2, 1.0)]
        return [(np.log(1.0), top), (0.02, 3.0), (np.log(0.5), np.log(max(D.max(), 10.0))), (-4.0, 4.0), (0.0, 0.45),
                (0.55, 1.0)]

    def prob(self, p, u: np.ndarray, D: np.ndarray, grad: bool = False):
        """Event probability per (rate, delay) cell for parameters ``p`` (shape (R, D)); with ``grad``, also
        its derivatives by each parameter (shape (6, R, D))."""
        mid, g, s0, c, lo, hi = p
        where = np.exp(mid - g * u)[:, None]  # D0 or x0 per rate
        scale = np.exp(s0 + c * u)[:, None]  # a (per ms) or w (ms) per rate
        uu = np.broadcast_to(np.asarray(u, dtype=float)[:, None], (len(u), len(D)))
        if self.kind == "critical_delay":
            x = np.maximum(D[None, :] - where, 0.0)
            e = np.exp(-scale * x)
            q = lo + (hi - lo) * (1.0 - e)
            if not grad:
                return q
            dx = (hi - lo) * scale * e * (x > 0)  # dq/dx; x = D - D0 above the onset
            da = (hi - lo) * x * e * scale  # dq/dlog(a)
            return q, np.stack([-dx * where, dx * where * uu, da, da * uu, e, 1.0 - e])
        z = np.clip((D[None, :] - where) / scale, -60.0, 60.0)
        L = 1.0 / (1.0 + np.exp(z))
        q = lo + (hi - lo) * L
        if not grad:
            return q
        dz = -(hi - lo) * L * (1.0 - L)  # dq/dz
        dmid = dz * (-where / scale)
        return q, np.stack([dmid, -dmid * uu, -dz * z, -dz * z * uu, 1.0 - L, L])

    def starts(self, D: np.ndarray) -> np.ndarray:
        """A coarse grid of starting points (rows)."""
        span = max(D.max() - D.min(), 1.0)
        mids = np.log(np.geomspace(max(D.min(), span / 20), D.max() * 1.5, 9))
        gs = np.array([0.1, 0.25, 0.4, 0.6, 1.0])
        if self.kind == "critical_delay":
            s0s = np.log(np.array([3.0, 15.0]) / span)
            rest = [(0.0, 0.02, 0.7), (0.0, 0.02, 0.95)]
        else:
            s0s = np.log(np.array([0.05, 0.2]) * span)
            rest = [(0.0, 0.03, 0.97)]
        return np.array([[m, g, s, *r] for m in mids for g in gs for s in s0s for r in rest])


SHAPES = {k: _Shape(k, names) for k, names in (
    ("critical_delay", ("log_d0_mid", "inv_beta", "log_rate_mid", "rate_slope", "floor", "plateau")),
    ("slow_point", ("log_x0_mid", "inv_beta", "log_width_mid", "width_slope", "low", "high")))}


def _nll(shape: _Shape, p, u, D, n, k) -> float:
    q = np.clip(shape.prob(p, u, D), _EPS, 1 - _EPS)
    return float(-(k * np.log(q) + (n - k) * np.log1p(-q)).sum())


def _nll_grad(shape: _Shape, p, u, D, n, k) -> tuple[float, np.ndarray]:
    q, dq = shape.prob(p, u, D, grad=True)
    q = np.clip(q, _EPS, 1 - _EPS)
    v = -(k * np.log(q) + (n - k) * np.log1p(-q)).sum()
    w = -(k / q - (n - k) / (1 - q))
    return float(v), (dq * w).sum(axis=(1, 2))


def _optimise(shape, u, D, n, k, start, bounds, fixed_g: float | None = None):
    """Bounded minimisation from ``start`` (``fixed_g``: with 1/beta held, for the profile). Returns (params, nll)."""
    if fixed_g is None:
        f = lambda p: _nll_grad(shape, p, u, D, n, k)  # noqa: E731
        x0, b = start, bounds
    else:
        def f(p):
            v, gr = _nll_grad(shape, np.insert(p, 1, fixed_g), u, D, n, k)
            return v, np.delete(gr, 1)
        x0, b = np.delete(start, 1), bounds[:1] + bounds[2:]
    x0 = np.clip(x0, [lo for lo, _ in b], [hi for _, hi in b])
    # SLSQP, not L-BFGS-B: scipy's L-BFGS-B calls the threaded BLAS on 6-vectors, 20-50x slower on a busy machine
    r = optimize.minimize(f, x0, jac=True, method="SLSQP", bounds=b, options={"maxiter": 500, "ftol": 1e-9})
    p = r.x if fixed_g is None else np.insert(r.x, 1, fixed_g)
    return p, float(r.fun)


def _fit(shape: _Shape, u, D, n, k, start=None) -> tuple[np.ndarray, float]:
    """The maximum-likelihood parameters: from ``start`` alone, or from the 3 best points of the grid."""
    bounds = shape.bounds(D)
    if start is not None:
        return _optimise(shape, u, D, n, k, start, bounds)
    grid = shape.starts(D)
    vals = np.array([_nll(shape, p, u, D, n, k) for p in grid])
    best = None
    for i in np.argsort(vals)[:3]:
        p, v = _optimise(shape, u, D, n, k, grid[i], bounds)
        if best is None or v < best[1]:
            best = (p, v)
    return best


def _profile_ci(shape, u, D, n, k, p_hat, nll_hat, level: float) -> tuple[float, float]:
    """Interval of 1/beta where the profile deviance stays below the chi-square quantile, mapped to beta."""
    crit = float(special.chdtri(1, 1.0 - level)) / 2.0  # chi2(1) quantile; scipy.stats costs 0.3 s to import
    bounds = shape.bounds(D)
    g_lo, g_hi = bounds[1]
    ends = []
    for direction in (-1, 1):
        g, p, prev = p_hat[1], p_hat, (p_hat[1], 0.0)
        end = g_lo if direction < 0 else g_hi
        step = 0.01  # in log(1/beta), growing: fine near a sharp optimum, quick across a flat profile
        for _ in range(60):
            g_new = float(np.clip(g * np.exp(direction * step), g_lo, g_hi))
            if g_new == g:
                break
            p, v = _optimise(shape, u, D, n, k, p, bounds, fixed_g=g_new)
            rise = max(v - nll_hat, 0.0)
            if rise >= crit:  # the crossing, interpolated in the root deviance (about linear in 1/beta)
                a, b = np.sqrt(prev[1]), np.sqrt(rise)
                t = (np.sqrt(crit) - a) / max(b - a, 1e-12)
                end = prev[0] + t * (g_new - prev[0])
                break
            g, prev = g_new, (g_new, rise)
            step = min(step * 1.4, 0.15)
        ends.append(end)
    g_a, g_b = ends
    return float(1.0 / g_b), float(1.0 / g_a)


def _per_rate(shape: _Shape, p, u, D, n, k, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each rate's own boundary (D0 or x0) on its cells, the shared parameters held at ``p``: the maximum of a
    fine 1-D likelihood profile and its ``level`` interval (NaN where the interval reaches the grid's end)."""
    span = max(D.max() - D.min(), 1.0)
    grid = np.linspace(max(D.min() - 0.5 * span, 0.5), D.max() + 0.5 * span, 801)
    crit = float(special.chdtri(1, 1.0 - level)) / 2.0  # chi2(1) quantile; scipy.stats costs 0.3 s to import
    est, lo, hi = (np.full(len(u), np.nan) for _ in range(3))
    for i in range(len(u)):
        if n[i].sum() == 0:
            continue
        ui = np.full(len(grid), u[i])  # the shared shape with this rate's boundary moved to each grid point
        q = shape.prob((np.log(grid) + p[1] * u[i], *p[1:]), ui, D)
        q = np.clip(q, _EPS, 1 - _EPS)
        nll = -(k[i] * np.log(q) + (n[i] - k[i]) * np.log1p(-q)).sum(axis=1)
        j = int(np.argmin(nll))
        inside = np.flatnonzero(nll <= nll[j] + crit)
        est[i] = grid[j]
        if inside[0] > 0 and inside[-1] < len(grid) - 1:
            lo[i], hi[i] = grid[inside[0]], grid[inside[-1]]
    return est, lo, hi


def _rates_table(cells: CellCounts, kind: str, shape: _Shape, p, u, level: float) -> pd.DataFrame:
    frac, n = cells.fractions()
    k = cells.k.sum(-1)
    est, lo, hi = _per_rate(shape, p, u, cells.delays, n, k, level)
    col = "d0" if kind == "critical_delay" else "midpoint"
    rows = []
    for i, lr in enumerate(cells.lrs):
        ok = np.isfinite(frac[i])
        row = {"lr": float(lr), "n_delays": int(ok.sum()), "n_networks": int(n[i].sum()),
               "max_fraction": float(frac[i][ok].max()) if ok.any() else np.nan, f"{col}_ms": est[i],
               f"{col}_lo_ms": lo[i], f"{col}_hi_ms": hi[i], f"{col}_line_ms": float(np.exp(p[0] - p[1] * u[i])),
               "used": bool(np.isfinite(lo[i]) and np.isfinite(hi[i])), "reason": ""}
        if not row["used"]:
            row["reason"] = ("no networks" if n[i].sum() == 0 else
                             "its 95 % interval is not bounded within the searched delays")
        rows.append(row)
    out = pd.DataFrame(rows)
    if len(out):
        out[f"{col}_steps"] = out[f"{col}_ms"] / DT_MS
    return out


def joint_exponent(metadata, family: str | None = None, *, kind: str = "critical_delay", ci: str = "bootstrap",
                   n_boot: int = 200, level: float = 0.95, seed: int = 0, x: str = "delay_ms") -> ScalingFit:
    """The exponent beta of one boundary (``kind``: ``"critical_delay"`` or ``"slow_point"``) from the joint
    likelihood of all cells of ``family`` (a family or a pooled panel such as ``"no-post"``), with a ``level``
    interval by ``ci`` (see the module docstring) and the per-rate boundaries with their own intervals in
    ``.rates``. ``params`` holds the fitted parameters. Never raises on degenerate data: ``reason`` says why
    beta is NaN."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    check_ci("joint", ci)
    df, fam = family_rows(as_metadata(metadata), family)
    cells = cell_counts(df, kind, "all" if kind == "critical_delay" else "learned", x)
    nan2 = (np.nan, np.nan)
    col = "d0" if kind == "critical_delay" else "midpoint"
    empty = pd.DataFrame(columns=["lr", "n_delays", "n_networks", "max_fraction", f"{col}_ms", f"{col}_lo_ms",
                                  f"{col}_hi_ms", f"{col}_line_ms", "used", "reason", f"{col}_steps"])
    fit = ScalingFit(kind, fam, np.nan, np.nan, nan2, ci, level, np.nan, nan2, 0, empty, method="joint")
    n, k = cells.n.sum(-1), cells.k.sum(-1)
    has = n.sum(1) > 0
    fit.n_rates = int(has.sum())
    if fit.n_rates < 2 or len(cells.delays) < 2:
        fit.reason = "fewer than 2 learning rates or 2 delays with networks"
        return fit
    if k.sum() == 0 or k.sum() == n.sum():
        fit.reason = "every network is an event, or none is: no boundary"
        return fit
    shape = SHAPES[kind]
    logs = np.log(cells.lrs)
    ref = float(logs[has].mean())
    u = logs - ref
    D = cells.delays.astype(float)
    p, v = _fit(shape, u, D, n, k)
    fit.params = {**dict(zip(shape.names, (float(t) for t in p), strict=True)), "log_lr_ref": ref, "nll": v}
    fit.beta = 1.0 / p[1]
    fit.intercept = ref + p[0] * fit.beta
    fit.rates = _rates_table(cells, kind, shape, p, u, level)
    if fit.rates["used"].sum() < 2:
        fit.beta = fit.intercept = np.nan
        fit.reason = "fewer than 2 learning rates whose boundary lies within the sampled delays"
        return fit
    g_lo, g_hi = shape.bounds(D)[1]
    if not g_lo * 1.001 < p[1] < g_hi * 0.999:
        fit.beta = fit.intercept = np.nan
        fit.reason = (f"1/beta reached the end of its range [{g_lo:g}, {g_hi:g}]: over these rates the boundary "
                      "does not move with the learning rate as a power law")
        return fit
    if ci == "profile":
        fit.ci = _profile_ci(shape, u, D, n, k, p, v, level)
    elif ci == "bootstrap" and len(cells.seeds) > 1 and n_boot > 0:
        rng = np.random.default_rng(seed)
        S = len(cells.seeds)
        lines = []
        for _ in range(int(n_boot)):
            w = rng.multinomial(S, np.full(S, 1.0 / S)).astype(float)
            nb, kb = cells.n @ w, cells.k @ w
            if kb.sum() == 0 or kb.sum() == nb.sum():
                continue
            pb, _ = _fit(shape, u, D, nb, kb, start=p)
            lines.append((ref + pb[0] / pb[1], 1.0 / pb[1]))
        fit.bootstrap_lines = np.asarray(lines).reshape(-1, 2)
        fit.bootstrap = fit.bootstrap_lines[:, 1]
        fit.n_boot_failed = int(n_boot) - len(lines)
        if len(lines) >= 10:
            q = (1 - level) / 2
            fit.ci = (float(np.quantile(fit.bootstrap, q)), float(np.quantile(fit.bootstrap, 1 - q)))
            fit.slope_se = float(np.std(fit.bootstrap, ddof=1))
        else:
            fit.ci_method = "none"
    elif ci == "bootstrap":
        fit.ci_method = "none"  # a single seed: nothing to resample
    return fit
