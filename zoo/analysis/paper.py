"""The authors' own figure procedures (``method="paper"``): how the paper's Figure 4 turns outcome tables into
critical delays and exponents, restated from their figure scripts (``paper-method.md``, "How the paper's
figures aggregate"). Use it to get the published numbers back from the authors' networks; the package's
default, the joint fit (:mod:`zoo.analysis.joint`), is calibrated on small zoos, and its two-step fit
(:mod:`zoo.analysis.phases`) is better founded than this one. The differences to the two-step fit:

=================================  =====================================  ========================================
step                               ``method="paper"`` (the authors)        ``method="package"`` (two-step)
=================================  =====================================  ========================================
cell fractions in the fit          every delay weighs the same            weighted by the networks of the cell
onset fit (critical delay D0)      ``scipy.optimize.curve_fit`` from a    grid search over (D0, a), then least
                                   fixed initial guess (D0 = 0.1 ms,      squares; a flat optimum (a step between
                                   a = 0.1 /ms; D0 = 0.5 ms for post):    two delays) gives the middle of the gap
                                   a local optimum near the guess
slow-point boundary                increasing logistic                    decreasing logistic with a free
                                   ``1 / (1 + exp(-k (D - D0)))``,        amplitude; midpoints outside the
                                   amplitude 1, any midpoint > 0          sampled delays are not used
rates fitted                       largest fraction >= 0.1 (0.2 post);    largest fraction >= 0.1 for every
                                   post drops its 2nd-largest rate from   family; every usable rate
                                   both exponents; the no-post slow-point
                                   exponent uses the 25 largest rates
exponent                           ``curve_fit`` of a line, beta = |B|,   OLS, beta = -slope; 95% interval from a
                                   +- 1 standard error, R^2               bootstrap over seeds
=================================  =====================================  ========================================

Delays enter the paper's fits in ms, as in the Figure 4 scripts (their delay axis is
``np.linspace(0, 400, 21)``, so the initial guesses are in ms and per ms). ``beta`` here is ``-B`` (the signed slope's negative), which is the paper's ``|B|`` whenever
the boundary moves to shorter delays as the rate grows; a positive slope shows as a negative beta instead of
being hidden by the absolute value.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize

from ..task import DT_MS
from .outcomes import ScalingFit, as_metadata, cell_counts, family_rows, psd_ratio_histogram, r_squared


@dataclass(frozen=True)
class PaperSettings:
    """The figure scripts' constants for one panel. Rates are picked by position in the zoo's own rate list,
    largest first, as the scripts index theirs: on the paper's grids these are the scripts' rates; on a zoo
    with other rates, pass ``settings`` (or ``lr=``) to choose."""

    min_fraction: float = 0.1  # rates whose largest fraction is below this are skipped
    p0_onset: tuple[float, float] = (0.1, 0.1)  # initial (D0 in ms, a per ms) of the onset fit
    p0_logistic: tuple[float, float] = (0.1, 0.1)  # initial (D0 in ms, k per ms) of the logistic fit
    dropped: tuple[int, ...] = ()  # positions (0 = largest rate) left out of both exponents by hand
    slow_point_largest: int | None = None  # only the N largest rates enter the slow-point exponent
    loss_curve_rate: int = 0  # position (0 = largest) of the rate whose loss curves per class are drawn


#: the scripts' settings per panel; families not listed (e.g. longtau) use the no-post ones without its
#: 25-rate cut, which the authors applied to their 30-rate pooled panel only
PAPER_SETTINGS = {
    "no-post": PaperSettings(slow_point_largest=25, loss_curve_rate=7),
    "post": PaperSettings(min_fraction=0.2, p0_onset=(0.5, 0.1), dropped=(1,)),
}
DEFAULT_SETTINGS = PaperSettings()


def settings_for(panel: str | None) -> PaperSettings:
    return PAPER_SETTINGS.get(panel or "", DEFAULT_SETTINGS)


def _onset(D, d0, a):
    return np.where(D < d0, 0.0, 1.0 - np.exp(-a * (D - d0)))


def _logistic(D, d0, k):
    return 1.0 / (1.0 + np.exp(-k * (D - d0)))


def _curve_fit(f, x, y, p0):
    """``curve_fit`` as the scripts call it; None if it does not converge."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # OptimizeWarning (covariance), overflow in exp
        try:
            popt, pcov = optimize.curve_fit(f, x, y, p0=p0)
        except (RuntimeError, ValueError, TypeError):
            return None
    return popt, pcov


def paper_rates(metadata, family: str | None = None, *, kind: str = "critical_delay",
                settings: PaperSettings | None = None, x: str = "delay_ms") -> pd.DataFrame:
    """Per learning rate (largest first), the authors' fit of the not-learned onset (``kind="critical_delay"``)
    or of the slow-point logistic (``kind="slow_point"``) to the fractions of all networks of each cell.

    Columns: ``lr``, ``n_delays``, ``n_networks``, ``max_fraction``, ``value_ms`` (D0), ``value_steps``,
    ``param`` (a or k, per ms), ``used`` (enters the exponent fit), ``reason`` (why not). A rate the
    scripts leave out by hand (``settings.dropped``) is still fitted, and shown unused."""
    df, panel = family_rows(as_metadata(metadata), family)
    st = settings or settings_for(panel)
    cells = cell_counts(df, kind, "all", x)
    frac, n = cells.fractions()
    rows = []
    for i, lr in enumerate(cells.lrs):
        ok = np.isfinite(frac[i])
        D, f = cells.delays[ok].astype(float), frac[i][ok]
        row = {"lr": float(lr), "n_delays": int(ok.sum()), "n_networks": int(n[i][ok].sum()),
               "max_fraction": float(f.max()) if f.size else np.nan, "value_ms": np.nan, "param": np.nan,
               "used": False, "reason": ""}
        rows.append(row)
        if f.size == 0 or f.max() < st.min_fraction:
            row["reason"] = f"largest fraction < {st.min_fraction:g}"
            continue
        model, p0 = (_onset, st.p0_onset) if kind == "critical_delay" else (_logistic, st.p0_logistic)
        fit = _curve_fit(model, D, f, p0)
        if fit is None or not np.all(np.isfinite(fit[0])):
            row["reason"] = "curve_fit did not converge"
            continue
        d0, p = fit[0]
        row.update(value_ms=float(d0), param=float(p))
        if d0 <= 0:
            row["reason"] = "D0 <= 0"
        elif i in st.dropped:
            row["reason"] = "left out by hand in the authors' script"
        else:
            row["used"] = True
    out = pd.DataFrame(rows)
    if kind == "slow_point" and st.slow_point_largest is not None and len(out):
        beyond = out.index >= st.slow_point_largest
        out.loc[beyond & out["used"], "reason"] = f"not among the {st.slow_point_largest} largest rates"
        out.loc[beyond, "used"] = False
    if len(out):
        out["value_steps"] = out["value_ms"] / DT_MS
    return out


def paper_exponent(metadata, family: str | None = None, *, kind: str = "critical_delay",
                   settings: PaperSettings | None = None, x: str = "delay_ms") -> ScalingFit:
    """The exponent as the figure scripts compute it: ``curve_fit`` of ``log(lr) = B log(D0) + c`` over the
    used rates; ``beta = -B`` with ``+- sqrt(pcov[0, 0])`` (one standard error) as its interval and
    ``r2`` as ``scipy.stats.linregress`` gives it (:func:`.outcomes.r_squared`)."""
    df, panel = family_rows(as_metadata(metadata), family)
    rates = paper_rates(df, panel, kind=kind, settings=settings or settings_for(panel), x=x)
    col = "d0_ms" if kind == "critical_delay" else "midpoint_ms"
    table = rates.rename(columns={"value_ms": col, "value_steps": col.replace("_ms", "_steps")})
    nan2 = (np.nan, np.nan)
    fit = ScalingFit(kind, panel, np.nan, np.nan, nan2, "+-1 SE (paper)", 0.6827, np.nan, nan2, 0, table,
                     method="paper")
    if not len(rates):
        fit.reason = "no labelled networks"
        return fit
    used = rates[rates["used"]]
    fit.n_rates = len(used)
    if len(used) < 2:
        fit.reason = f"only {len(used)} learning rate(s) with a usable fit (need 2)"
        return fit
    X, Y = np.log(used["value_ms"].to_numpy()), np.log(used["lr"].to_numpy())
    line = _curve_fit(lambda t, B, c: B * t + c, X, Y, (1.0, 0.0))
    if line is None:  # pragma: no cover - a straight line always fits
        fit.reason = "curve_fit of the line did not converge"
        return fit
    (B, c), pcov = line
    se = float(np.sqrt(pcov[0, 0])) if np.isfinite(pcov[0, 0]) else np.nan
    fit.beta = -float(B)
    fit.intercept = float(c)
    fit.slope_se = se
    fit.ci = (fit.beta - se, fit.beta + se)
    fit.ci_regression = fit.ci
    fit.r2 = r_squared(X, Y) if len(used) >= 3 else np.nan
    return fit


#: Figure 4's psd_ratio histogram: ``np.linspace(0, 1, 50)`` as the bin edges (49 bins), as densities
PSD_BIN_EDGES = np.linspace(0.0, 1.0, 50)
#: Figure 4's loss curves: the last this many epochs of each network, aligned at the end
LOSS_CURVE_EPOCHS = 1000
#: the classes of Figure 4's loss panel: the scripts merge unstable into not learned (class 3 -> 0)
LOSS_CLASSES = {"not_learned": ("no_learning", "unstable"), "limit_cycle": ("limit_cycle",),
                "slow_point": ("slow_point",)}


@dataclass
class PsdRatioFits:
    """Figure 4's psd_ratio panel: densities over :data:`PSD_BIN_EDGES` per mechanism, an exponential fit to
    the limit cycles' ratios (``expon`` with loc 0 and scale = their mean) and a Gaussian maximum-likelihood
    fit to the slow points' (``scipy.stats.norm.fit``: mean and the standard deviation with ddof 0)."""

    histogram: pd.DataFrame  # bin_lo, bin_hi, bin_center, limit_cycle, slow_point (densities; 0 if none)
    lc_scale: float
    sp_mean: float
    sp_std: float
    n_limit_cycle: int
    n_slow_point: int

    def pdf(self, x) -> dict[str, np.ndarray]:
        """The two fitted densities at ``x``."""
        from scipy import stats

        x = np.asarray(x, dtype=float)
        return {"limit_cycle": stats.expon.pdf(x, scale=self.lc_scale),
                "slow_point": stats.norm.pdf(x, self.sp_mean, self.sp_std)}


def paper_psd_ratio_fits(metadata, family: str | None = None) -> PsdRatioFits:
    """The psd_ratio histograms and fits of Figure 4 over the learned networks of ``family`` (the paper: the
    pooled ``"no-post"`` panel)."""
    from scipy import stats

    df, _ = family_rows(as_metadata(metadata), family)
    hist = psd_ratio_histogram(df, bins=PSD_BIN_EDGES)  # counts per mechanism -> densities, as density=True
    width = hist["bin_hi"] - hist["bin_lo"]
    values = {}
    for mech in ("limit_cycle", "slow_point"):
        n = hist[mech].sum()
        hist[mech] = hist[mech] / (n * width) if n else 0.0
        v = df.loc[df["mechanism"] == mech, "psd_ratio"].to_numpy(dtype=float) if "mechanism" in df else np.empty(0)
        values[mech] = v[np.isfinite(v)]
    lc, sp = values["limit_cycle"], values["slow_point"]
    sp_mean, sp_std = stats.norm.fit(sp) if sp.size else (np.nan, np.nan)
    return PsdRatioFits(hist, float(lc.mean()) if lc.size else np.nan, float(sp_mean), float(sp_std), int(lc.size),
                        int(sp.size))


def paper_loss_curves(zoo, family: str | None = None, *, lr: float | None = None,
                      settings: PaperSettings | None = None) -> pd.DataFrame:
    """Figure 4's loss curves per class at one learning rate (default: the panel's, position 7 of the pooled
    no-post rates = 0.1, the largest for post): every network of that rate (all delays and seeds) gives its last
    :data:`LOSS_CURVE_EPOCHS` losses aligned at the end (shorter runs padded with NaN at the start), and each
    class (:data:`LOSS_CLASSES`) their ``nanmean`` and ``nanstd / sqrt(n)`` per epoch, n counting every network
    of the class, as the scripts do. ``zoo``: a :class:`zoo.Zoo` (its curves are read).

    Columns: ``class``, ``epoch`` (1..1000), ``mean``, ``se``, ``n``; ``attrs["lr"]`` is the rate."""
    df, panel = family_rows(as_metadata(zoo.metadata), family)
    st = settings or settings_for(panel)
    lrs = np.sort(df["lr"].unique())[::-1]
    if lr is None:
        if st.loss_curve_rate >= len(lrs):
            raise ValueError(f"the panel has {len(lrs)} learning rates, so no rate at position {st.loss_curve_rate} "
                             f"(the scripts' pick): pass lr= (one of {[float(x) for x in lrs]})")
        lr = float(lrs[st.loss_curve_rate])
    rows = df[np.isclose(df["lr"], lr, rtol=1e-9, atol=0)]
    if rows.empty:
        raise ValueError(f"no network at lr {lr!r}; valid: {[float(x) for x in lrs]}")
    curves = zoo.filter(net_id=rows["net_id"].tolist()).curves()
    E = LOSS_CURVE_EPOCHS
    out = []
    for name, outcomes_ in LOSS_CLASSES.items():
        ids = rows.loc[rows["outcome"].isin(outcomes_), "net_id"]
        block = np.full((len(ids), E), np.nan)
        for i, nid in enumerate(ids):
            loss = np.asarray(curves[nid]["loss"], dtype=float)[-E:]
            block[i, E - loss.size:] = loss
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an epoch where every network is NaN
            mean, se = np.nanmean(block, 0), np.nanstd(block, 0) / np.sqrt(len(ids))
        out.append(pd.DataFrame({"class": name, "epoch": np.arange(1, E + 1), "mean": mean, "se": se,
                                 "n": len(ids)}))
    table = pd.concat(out, ignore_index=True)
    table.attrs["lr"] = float(lr)
    return table
