"""The boundary fits' entry points (``scaling_exponent``, ``critical_delays``, ``slow_point_boundaries``: one
``method=`` over :data:`METHODS`, the joint fit of :mod:`.joint` by default) and the package's two-step robust
fit (``method="package"``): critical delays, slow-point boundaries and scaling exponents from a zoo's outcome
labels (the tables they start from are in :mod:`.outcomes`). The rest of this docstring describes the two-step
fit.

Everything here works on the metadata table alone (a :class:`pandas.DataFrame` with the columns of
``metadata/networks.parquet``, or a :class:`zoo.api.Zoo`, whose ``.metadata`` is used); no weights are read.

Critical delay (the spec's procedure). For one family and one learning rate, the not-learned fraction
(``no_learning`` + ``unstable``) per delay is fitted with

    f(D) = 0                        for D < D0
    f(D) = 1 - exp(-a (D - D0))     for D >= D0

by weighted least squares (weights = networks per cell). Rates whose largest not-learned fraction is below
0.1 are skipped. ``D0`` (ms) is the critical delay. The fit is a grid search over (D0, a) followed by
``scipy.optimize.least_squares``; where the data do not pin D0 down (a step between two delays fits equally
well for any D0 in between), the middle of the set of equally good D0 is taken, not an end of it.

Slow-point boundary. Per learning rate, the slow-point fraction (of all networks of the cell by default, or
of the learned ones) is fitted with a decreasing logistic ``A / (1 + exp((D - Dm) / s))``; the midpoint Dm
(ms) is the boundary. Rates whose largest slow-point fraction is below 0.1 are skipped, and so are midpoints
outside the sampled delays (extrapolated).

Scaling exponent. ``log(lr) = c - beta * log(D*)`` by ordinary least squares over the rates with a usable
D* > 0 (D* = D0 or Dm, in ms; beta does not depend on the unit); at least 2 rates are needed.
Confidence interval (``ci=``):

- ``"bootstrap"`` (default): a percentile interval from resampling *seeds* with replacement. A seed is one
  network index, with the same initial weights in every (lr, delay) cell, so resampling whole seeds keeps
  the correlation between cells; every replicate recomputes all cell fractions, refits every rate and
  regresses again. Replicates with fewer than 2 usable rates are dropped (their number is reported).
  With a single seed it falls back to ``"regression"``.
- ``"regression"``: ``beta +- t(1 - (1 - level) / 2, n - 2) * SE(slope)`` from the OLS fit (needs >= 3
  rates; NaN otherwise). It treats the fitted D* as exact, so it ignores their own uncertainty.

Both are computed when possible: ``ScalingFit.ci`` is the requested one, ``ScalingFit.ci_regression`` the
OLS one.

Pooled panels. The paper's "no post" panels pool two families (nopost and nopost-narrow, 30 learning rates);
every function here accepts a panel of :data:`PANELS` (``family="no-post"``) where it takes a family.

The authors' procedure. ``method="paper"`` reproduces the figure scripts instead (:mod:`zoo.analysis.paper`,
whose docstring tabulates how it differs from the two-step fit). Why the joint fit is the default:
docs/method.md, "Calibration by simulation".
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import optimize

from ..task import DT_MS
from .joint import joint_exponent
from .outcomes import (
    DEFAULT_METHOD,
    KINDS,
    CellCounts,
    ScalingFit,
    as_metadata,
    cell_counts,
    check_ci,
    check_method,
    family_rows,
    loglog_regression,
    r_squared,
    t_quantile,
)
from .paper import paper_exponent, paper_rates

MIN_FRACTION = 0.1  # rates whose largest fraction is below this are not fitted


class FitError(ValueError):
    """A curve that cannot be fitted (too few delays, no signal)."""


# ---------------------------------------------------------------- one curve
def onset_curve(delays, d0: float, a: float) -> np.ndarray:
    """The spec's not-learned curve: 0 below ``d0``, ``1 - exp(-a (D - d0))`` above."""
    D = np.asarray(delays, dtype=float)
    return np.where(D > d0, 1.0 - np.exp(-a * np.maximum(D - d0, 0.0)), 0.0)


def logistic_curve(delays, midpoint: float, width: float, amplitude: float = 1.0) -> np.ndarray:
    """Decreasing logistic ``amplitude / (1 + exp((D - midpoint) / width))``."""
    D = np.asarray(delays, dtype=float)
    return amplitude / (1.0 + np.exp(np.clip((D - midpoint) / width, -60, 60)))


def _prepare(delays, fractions, weights):
    D = np.asarray(delays, dtype=float)
    f = np.asarray(fractions, dtype=float)
    w = np.ones_like(D) if weights is None else np.asarray(weights, dtype=float)
    if not (D.shape == f.shape == w.shape) or D.ndim != 1:
        raise ValueError("delays, fractions and weights must be 1-D arrays of the same length")
    ok = np.isfinite(D) & np.isfinite(f) & (w > 0)
    D, f, w = D[ok], f[ok], w[ok]
    order = np.argsort(D)
    D, f, w = D[order], f[order], w[order]
    if np.unique(D).size < 2:
        raise FitError("fewer than 2 delays")
    w = w / w.mean()
    return D, f, w


def _middle_of_flat(profile: np.ndarray) -> int:
    """Index of the middle of the contiguous run of (near-)minimal values that holds the first minimum:
    where the data cannot tell the location apart (a step between two delays), take the middle."""
    best = profile.min()
    flat = profile <= best + 1e-9 * max(1.0, abs(best)) + 1e-12
    i = int(np.argmax(flat))
    j = i
    while j + 1 < len(flat) and flat[j + 1]:
        j += 1
    return (i + j) // 2


def _zoom_search(sse_fn, g1: np.ndarray, g2: np.ndarray, bounds1, bounds2, levels: int = 3, points: int = 11):
    """Minimise ``sse_fn(g1, g2) -> (len(g1), len(g2))`` over a linear grid ``g1`` and a geometric grid
    ``g2``, then zoom ``levels`` times into +-1 cell of the optimum (``points`` x ``points`` each)."""
    sse = sse_fn(g1, g2)
    i = _middle_of_flat(sse.min(axis=1))
    j = int(np.argmin(sse[i]))
    for _ in range(levels):
        d1 = g1[1] - g1[0]
        r2 = g2[1] / g2[0]
        c1, c2 = g1[i], g2[j]
        g1 = np.linspace(max(bounds1[0], c1 - d1), min(bounds1[1], c1 + d1), points)
        g2 = np.geomspace(max(bounds2[0], c2 / r2), min(bounds2[1], c2 * r2), points)
        sse = sse_fn(g1, g2)
        i = _middle_of_flat(sse.min(axis=1))
        j = int(np.argmin(sse[i]))
    return float(g1[i]), float(g2[j]), float(sse[i, j])


def fit_critical_delay(delays, fractions, weights=None, *, polish: bool = True) -> dict:
    """Fit :func:`onset_curve` to not-learned ``fractions`` at ``delays`` (ms); ``weights`` e.g. the
    networks per cell. Returns ``{"d0", "a", "sse"}`` (D0 in the unit of ``delays``, ``a`` per that unit).

    D0 is searched in ``[min(D) - step, max(D)]`` (step = smallest delay spacing), a in
    ``[0.02 / span, 50 / step]``: a grid search with two zoom levels, then (``polish``) a
    ``scipy.optimize.least_squares`` refinement. Raises :class:`FitError` with fewer than 2 distinct delays."""
    D, f, w = _prepare(delays, fractions, weights)
    step = float(np.diff(np.unique(D)).min())
    span = float(D[-1] - D[0])
    b1, b2 = (D[0] - step, D[-1]), (0.02 / span, 50.0 / step)

    def sse_fn(d0s, As):
        x = D[None, :] - d0s[:, None]  # (G, n)
        pos = x > 0
        e = np.exp(-As[None, :, None] * np.where(pos, x, 0.0)[:, None, :])  # (G, A, n)
        return (((1.0 - e) * pos[:, None, :] - f) ** 2 * w).sum(-1)

    d0, a, sse = _zoom_search(sse_fn, np.linspace(*b1, 41), np.geomspace(*b2, 16), b1, b2)
    best = (sse, np.array([d0, np.log(a)]))
    if polish:
        sw = np.sqrt(w)

        def resid(p):
            return sw * (onset_curve(D, p[0], np.exp(p[1])) - f)

        def jac(p):
            a_ = np.exp(p[1])
            xx = np.maximum(D - p[0], 0.0)
            ee = np.where(D > p[0], np.exp(-a_ * xx), 0.0)
            return np.stack([-sw * a_ * ee, sw * a_ * xx * ee], axis=1)

        try:
            r = optimize.least_squares(resid, best[1], jac=jac, bounds=([b1[0], np.log(b2[0])], [b1[1], np.log(b2[1])]),
                                       x_scale=[step, 1.0])
            s = float(np.sum(r.fun**2))
            if s < best[0] - 1e-12:
                best = (s, r.x)
        except (ValueError, np.linalg.LinAlgError):  # pragma: no cover - keep the grid optimum
            pass
    return {"d0": float(best[1][0]), "a": float(np.exp(best[1][1])), "sse": float(best[0])}


def fit_slow_point_midpoint(delays, fractions, weights=None, *, polish: bool = True) -> dict:
    """Fit the decreasing :func:`logistic_curve` to slow-point ``fractions`` at ``delays`` (ms).
    Returns ``{"midpoint", "width", "amplitude", "sse"}``.

    The midpoint is searched within one span of the sampled delays on either side (callers decide whether an
    extrapolated midpoint is usable), the width in ``[step / 20, 2 span]``, the amplitude in [0, 1] (solved
    in closed form on the grid): a grid search with two zoom levels, then (``polish``) least squares."""
    D, f, w = _prepare(delays, fractions, weights)
    step = float(np.diff(np.unique(D)).min())
    span = float(D[-1] - D[0])
    b1, b2 = (D[0] - span, D[-1] + span), (step / 20.0, 2.0 * span)

    def shapes(ms, ss):
        return 1.0 / (1.0 + np.exp(np.clip((D[None, None, :] - ms[:, None, None]) / ss[None, :, None], -60, 60)))

    def amplitude(g):
        return np.clip((g * f * w).sum(-1) / np.maximum((g * g * w).sum(-1), 1e-300), 0.0, 1.0)

    def sse_fn(ms, ss):
        g = shapes(ms, ss)
        return ((amplitude(g)[..., None] * g - f) ** 2 * w).sum(-1)

    m, s_, sse = _zoom_search(sse_fn, np.linspace(*b1, 61), np.geomspace(*b2, 16), b1, b2)
    A = float(amplitude(shapes(np.array([m]), np.array([s_])))[0, 0])
    best = (sse, np.array([m, np.log(s_), A]))
    if polish:
        sw = np.sqrt(w)

        def resid(p):
            return sw * (logistic_curve(D, p[0], np.exp(p[1]), p[2]) - f)

        def jac(p):
            width = np.exp(p[1])
            z = np.clip((D - p[0]) / width, -60, 60)
            gg = 1.0 / (1.0 + np.exp(z))
            dg = gg * (1.0 - gg)
            return np.stack([sw * p[2] * dg / width, sw * p[2] * dg * z, sw * gg], axis=1)

        try:
            r = optimize.least_squares(resid, best[1], jac=jac,
                                       bounds=([b1[0], np.log(b2[0]), 0.0], [b1[1], np.log(b2[1]), 1.0]),
                                       x_scale=[step, 1.0, 0.1])
            s = float(np.sum(r.fun**2))
            if s < best[0] - 1e-12:
                best = (s, r.x)
        except (ValueError, np.linalg.LinAlgError):  # pragma: no cover
            pass
    return {"midpoint": float(best[1][0]), "width": float(np.exp(best[1][1])), "amplitude": float(best[1][2]),
            "sse": float(best[0])}


# ---------------------------------------------------------------- per-rate tables
def _fit_rates(cells: CellCounts, kind: str, min_fraction: float, seed_weights=None,
               table: bool = True, polish: bool = True) -> pd.DataFrame | tuple[np.ndarray, np.ndarray]:
    """Fit every rate of ``cells``: a per-rate table, or (with ``table=False``, for the bootstrap) the arrays
    ``(value_ms, used)``."""
    frac, n = cells.fractions(seed_weights)
    rows = []
    values = np.full(len(cells.lrs), np.nan)
    used = np.zeros(len(cells.lrs), dtype=bool)
    for i, lr in enumerate(cells.lrs):
        ok = np.isfinite(frac[i])
        D, f, w = cells.delays[ok], frac[i][ok], n[i][ok]
        row = {"lr": float(lr), "n_delays": int(ok.sum()), "n_networks": int(round(w.sum())),
               "max_fraction": float(f.max()) if f.size else np.nan, "value_ms": np.nan, "used": False,
               "reason": ""}
        if kind == "critical_delay":
            row.update(rate_per_ms=np.nan)
        else:
            row.update(width_ms=np.nan, amplitude=np.nan)
        if f.size == 0 or not f.max() >= min_fraction:
            row["reason"] = f"largest fraction < {min_fraction:g}"
        elif np.unique(D).size < 2:
            row["reason"] = "fewer than 2 delays"
        elif kind == "critical_delay":
            fit = fit_critical_delay(D, f, w, polish=polish)
            row.update(value_ms=fit["d0"], rate_per_ms=fit["a"])
            if fit["d0"] > 0:
                row["used"] = True
            else:
                row["reason"] = "D0 <= 0 (not learned already at the shortest delay)"
        else:
            fit = fit_slow_point_midpoint(D, f, w, polish=polish)
            row.update(value_ms=fit["midpoint"], width_ms=fit["width"], amplitude=fit["amplitude"])
            if not (D[0] <= fit["midpoint"] <= D[-1]):
                row["reason"] = "midpoint outside the sampled delays (extrapolated)"
            elif fit["midpoint"] <= 0:
                row["reason"] = "midpoint <= 0"
            else:
                row["used"] = True
        values[i], used[i] = row["value_ms"], row["used"]
        rows.append(row)
    if not table:
        return values, used
    out = pd.DataFrame(rows)
    if len(out):
        out["value_steps"] = out["value_ms"] / DT_MS
    return out


def critical_delays(metadata, family: str | None = None, *, min_fraction: float = MIN_FRACTION,
                    x: str = "delay_ms", method: str = DEFAULT_METHOD) -> pd.DataFrame:
    """Per learning rate, the critical delay D0 of the not-learned fraction. ``method="joint"`` (default):
    each rate's D0 under the joint fit's shared shape, with its 95 % profile interval (``d0_lo_ms``,
    ``d0_hi_ms``) and the joint power law's value (``d0_line_ms``), :mod:`zoo.analysis.joint`;
    ``"package"``: the two-step fit of the module docstring; ``"paper"``: the authors' fit,
    :mod:`zoo.analysis.paper` (both ignore ``min_fraction`` but ``package``).

    Columns: ``lr``, ``n_delays``, ``n_networks``, ``max_fraction``, ``d0_ms``, ``d0_steps``,
    ``rate_per_ms`` (a; ``param``, a per ms, for the paper's fit), ``used`` (enters the regression; for
    the joint fit: bounded by the sampled delays), ``reason`` (why not)."""
    check_method(method)
    if method == "joint":
        return joint_exponent(metadata, family, kind="critical_delay", ci="none", x=x).rates
    df, _ = family_rows(as_metadata(metadata), family)
    if method == "paper":
        t = paper_rates(df, family, kind="critical_delay", x=x)
        return t.rename(columns={"value_ms": "d0_ms", "value_steps": "d0_steps"})
    t = _fit_rates(cell_counts(df, "critical_delay", "all", x), "critical_delay", min_fraction)
    return t.rename(columns={"value_ms": "d0_ms", "value_steps": "d0_steps"})


def slow_point_boundaries(metadata, family: str | None = None, *, among: str = "all",
                          min_fraction: float = MIN_FRACTION, x: str = "delay_ms",
                          method: str = DEFAULT_METHOD) -> pd.DataFrame:
    """Per learning rate, the midpoint of a decreasing logistic fit of the slow-point fraction vs delay.
    ``method="joint"`` (default): each rate's midpoint under the joint fit's shared shape (slow points among
    the learned networks, so ``among`` does not apply), with its profile interval, :mod:`zoo.analysis.joint`;
    ``"package"``: ``among="all"`` (default) divides by all networks of the cell, ``"learned"`` by the learned
    ones; ``"paper"``: the authors' logistic fit (fractions of all networks), :mod:`zoo.analysis.paper`.

    Columns: ``lr``, ``n_delays``, ``n_networks``, ``max_fraction``, ``midpoint_ms``, ``midpoint_steps``,
    ``width_ms``, ``amplitude`` (``param``, k per ms, for the paper's fit), ``used``, ``reason``."""
    check_method(method)
    if method == "joint":
        return joint_exponent(metadata, family, kind="slow_point", ci="none", x=x).rates
    df, _ = family_rows(as_metadata(metadata), family)
    if method == "paper":
        t = paper_rates(df, family, kind="slow_point", x=x)
        return t.rename(columns={"value_ms": "midpoint_ms", "value_steps": "midpoint_steps"})
    t = _fit_rates(cell_counts(df, "slow_point", among, x), "slow_point", min_fraction)
    return t.rename(columns={"value_ms": "midpoint_ms", "value_steps": "midpoint_steps"})


def scaling_exponent(metadata, family: str | None = None, *, kind: str = "critical_delay", ci: str = "bootstrap",
                     n_boot: int = 200, level: float = 0.95, seed: int = 0, min_fraction: float = MIN_FRACTION,
                     among: str = "all", x: str = "delay_ms", method: str = DEFAULT_METHOD) -> ScalingFit:
    """The exponent beta of ``lr_c ~ D^-beta`` for the critical delay (``kind="critical_delay"``) or the
    slow-point boundary (``kind="slow_point"``), with a confidence interval. ``family`` may name a pooled
    panel (:data:`PANELS`, e.g. ``"no-post"``).

    ``method="joint"`` (default): one likelihood over all cells, :func:`zoo.analysis.joint.joint_exponent`
    (``ci``: bootstrap over seeds, profile or none; ``min_fraction`` and ``among`` do not apply);
    ``"package"``: the two-step fit of the module docstring (``ci``: bootstrap, regression or none);
    ``"paper"``: as the authors' figure scripts do (:func:`zoo.analysis.paper.paper_exponent`: beta +- 1 SE;
    ``ci``, ``n_boot``, ``level``, ``min_fraction`` and ``among`` do not apply). The joint fit is the
    default because it alone is calibrated on small zoos (docs/method.md, "Calibration").
    Never raises on degenerate data: ``ScalingFit.reason`` says why beta is NaN."""
    check_method(method)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if method == "paper":
        return paper_exponent(metadata, family, kind=kind, x=x)
    if method == "joint":
        return joint_exponent(metadata, family, kind=kind, ci=ci, n_boot=n_boot, level=level, seed=seed, x=x)
    check_ci(method, ci)
    if ci == "none":
        ci = "regression"
    df, fam = family_rows(as_metadata(metadata), family)
    cells = cell_counts(df, kind, among, x)
    rates = _fit_rates(cells, kind, min_fraction)
    col = "d0_ms" if kind == "critical_delay" else "midpoint_ms"
    table = rates.rename(columns={"value_ms": col, "value_steps": col.replace("_ms", "_steps")})
    nan2 = (np.nan, np.nan)
    if len(rates) == 0:
        return ScalingFit(kind, fam, np.nan, np.nan, nan2, ci, level, np.nan, nan2, 0, table,
                          reason="no labelled networks")
    used = rates[rates["used"]]
    reg = loglog_regression(used["lr"], used["value_ms"])
    t = t_quantile(1 - (1 - level) / 2, reg["n"] - 2) if reg["n"] >= 3 else np.nan
    ci_reg = (reg["beta"] - t * reg["slope_se"], reg["beta"] + t * reg["slope_se"]) if reg["n"] >= 3 else nan2
    fit = ScalingFit(kind, fam, reg["beta"], reg["intercept"], ci_reg, "regression", level, reg["slope_se"],
                     ci_reg, int(reg["n"]), table)
    if reg["n"] >= 3:
        fit.r2 = r_squared(np.log(used["value_ms"]), np.log(used["lr"]))
    if reg["n"] < 2:
        fit.reason = f"only {reg['n']} learning rate(s) with a usable fit (need 2)"
        return fit
    if ci == "bootstrap" and len(cells.seeds) > 1 and n_boot > 0:
        rng = np.random.default_rng(seed)
        S = len(cells.seeds)
        betas = []
        failed = 0
        for _ in range(int(n_boot)):
            wts = rng.multinomial(S, np.full(S, 1.0 / S)).astype(float)
            vals, ok = _fit_rates(cells, kind, min_fraction, wts, table=False)  # the point estimate's fit
            b = loglog_regression(cells.lrs[ok], vals[ok])["beta"] if ok.sum() >= 2 else np.nan
            if np.isfinite(b):
                betas.append(b)
            else:
                failed += 1
        fit.bootstrap = np.asarray(betas)
        fit.n_boot_failed = failed
        if len(betas) >= 10:
            q = (1 - level) / 2
            fit.ci = (float(np.quantile(betas, q)), float(np.quantile(betas, 1 - q)))
            fit.ci_method = "bootstrap"
    return fit
