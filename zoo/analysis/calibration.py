"""Calibration of the exponent fits by simulation, and the power planner.

A :class:`Truth` is a known phase diagram (both boundaries as power laws, the paper's onset shape with a
plateau and an early-failure floor, a logistic slow-point boundary); :func:`synthetic_zoo` draws a zoo's outcome
table from it on a :class:`Design` (rates, delays, seeds), every network independently. :func:`calibrate` fits
many such zoos with every method (:data:`METHODS`) and :func:`calibration_table` summarises how far each
method's exponent lands from the truth, how much it scatters and how often its nominal interval covers the
truth. :func:`power` answers, before training, how wide the joint fit's intervals will be on a design.

The truth is placed relative to the design: the no-solution boundary crosses ``d0_frac`` of the longest
delay at the design's middle (geometric-mean) rate, the slow-point boundary ``x0_frac`` of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from .outcomes import KINDS, METHODS, PANELS, panels_of, t_quantile

#: the interval each method is calibrated with (a cheap one where its default is a bootstrap)
CALIBRATION_CI = {"joint": "profile", "package": "regression", "paper": "95 % from its 1 SE (t quantile)"}


@dataclass(frozen=True)
class Design:
    """The grid of a zoo: learning rates (with each rate's family), delays (ms) and seeds per cell."""

    name: str
    lrs: tuple[float, ...]
    families: tuple[str, ...]  # one per rate
    delays_ms: tuple[float, ...]
    seeds: int

    @property
    def panel(self) -> str | None:
        """The family or pooled panel that the fits are asked for."""
        fams = sorted(set(self.families))
        if len(fams) == 1:
            return fams[0]
        pooled = panels_of(fams)
        return pooled[0] if pooled and set(fams) <= set(PANELS[pooled[0]]) else None

    def with_seeds(self, seeds: int) -> Design:
        return replace(self, seeds=int(seeds))

    def describe(self) -> str:
        return (f"{self.name}: {len(self.lrs)} rates ({min(self.lrs):.3g}..{max(self.lrs):.3g}) x "
                f"{len(self.delays_ms)} delays ({min(self.delays_ms):g}..{max(self.delays_ms):g} ms) x {self.seeds} seeds")


def design_from_configs(configs: Iterable, name: str = "plan") -> list[Design]:
    """The designs of a build's networks (:class:`zoo.config.NetConfig`): one per pooled panel the families
    fill, one per remaining family (the no-memory control family has no delay axis and is left out)."""
    rows = pd.DataFrame([{"family": c.family, "lr": c.lr, "delay_ms": c.delay_ms, "seed": c.seed,
                          "nomemory": getattr(c, "nomemory", False)} for c in configs])
    if not len(rows):
        return []
    rows = rows[~rows["nomemory"].astype(bool)]
    fams = sorted(rows["family"].unique())
    groups = []
    for p in panels_of(fams):
        groups.append((p, [f for f in PANELS[p] if f in fams]))
    pooled = {f for _, members in groups for f in members}
    groups += [(f, [f]) for f in fams if f not in pooled]
    out = []
    for label, members in groups:
        sub = rows[rows["family"].isin(members)]
        by_lr = sub.groupby("lr")["family"].first().sort_index(ascending=False)
        seeds = int(sub.groupby(["lr", "delay_ms"])["seed"].nunique().min())
        out.append(Design(f"{name} {label}", tuple(float(v) for v in by_lr.index), tuple(by_lr.to_list()),
                          tuple(float(d) for d in np.sort(sub["delay_ms"].unique())), seeds))
    return out


def validation_design(seeds: int = 8) -> Design:
    """The validation zoo's design (preset ``validation-pooled``: 14 rates, 11 delays)."""
    from ..grids import make_grid

    (d,) = design_from_configs(make_grid("validation-pooled"), "validation")
    return d.with_seeds(seeds)


def paper_design(seeds: int = 100) -> Design:
    """The paper's pooled no-post design: nopost + nopost-narrow, 30 rates x 21 delays."""
    from ..grids import make_grid

    configs = [c for f in PANELS["no-post"] for c in make_grid(family=f, seeds=1)]
    (d,) = design_from_configs(configs, "paper")
    return d.with_seeds(seeds)


@dataclass(frozen=True)
class Truth:
    """A known phase diagram (see the module docstring for where it is placed on a design)."""

    beta_lc: float = 2.5
    beta_sp: float = 4.5
    d0_frac: float = 0.3  # D0 at the middle rate, as a fraction of the longest delay
    rate_mid: float = 1 / 100.0  # saturation rate a (per ms) at the middle rate ...
    rate_slope: float = 0.3  # ... times (lr / lr_mid) ** rate_slope
    floor: float = 0.02  # failures below D0
    plateau: float = 0.9  # the failing share at long delays
    jump: float = 0.0  # a share that fails at once past D0 (> 0: an onset the joint fit's shape does not have)
    x0_frac: float = 0.2  # the slow-point midpoint at the middle rate, as a fraction of the longest delay
    width_frac: float = 0.06  # the logistic's width, as a fraction of the longest delay
    sp_low: float = 0.02  # slow points far beyond the boundary
    sp_high: float = 0.98  # slow points far below it

    def probabilities(self, design: Design) -> tuple[np.ndarray, np.ndarray]:
        """(R, D) arrays: P(not learned) and P(slow point | learned)."""
        lrs, D = np.asarray(design.lrs), np.asarray(design.delays_ms, dtype=float)
        u = np.log(lrs) - np.log(lrs).mean()
        top = D.max()
        d0 = top * self.d0_frac * np.exp(-u / self.beta_lc)
        a = self.rate_mid * np.exp(self.rate_slope * u)
        x = np.maximum(D[None] - d0[:, None], 0)
        p_nl = self.floor + self.jump * (x > 0) + (self.plateau - self.floor - self.jump) * -np.expm1(-a[:, None] * x)
        x0 = top * self.x0_frac * np.exp(-u / self.beta_sp)
        z = np.clip((D[None] - x0[:, None]) / (top * self.width_frac), -60, 60)
        q = self.sp_low + (self.sp_high - self.sp_low) / (1 + np.exp(z))
        return p_nl, q

    def beta(self, kind: str) -> float:
        return self.beta_lc if kind == "critical_delay" else self.beta_sp


def synthetic_zoo(design: Design, truth: Truth, rng: np.random.Generator | int = 0) -> pd.DataFrame:
    """An outcome table (columns ``family``, ``lr``, ``delay_ms``, ``seed``, ``outcome``, ``mechanism``) drawn
    from ``truth`` on ``design``; failures split evenly between ``no_learning`` and ``unstable``."""
    rng = np.random.default_rng(rng)
    p_nl, q = truth.probabilities(design)
    R, nD, S = len(design.lrs), len(design.delays_ms), design.seeds
    shape = (R, nD, S)
    fail = rng.random(shape) < p_nl[..., None]
    unstable = rng.random(shape) < 0.5
    slow = rng.random(shape) < q[..., None]
    outcome = np.where(fail, np.where(unstable, "unstable", "no_learning"),
                       np.where(slow, "slow_point", "limit_cycle"))
    ri, di, si = np.indices(shape).reshape(3, -1)
    out = pd.DataFrame({"family": np.asarray(design.families)[ri], "lr": np.asarray(design.lrs)[ri],
                        "delay_ms": np.asarray(design.delays_ms)[di], "seed": si, "outcome": outcome.reshape(-1)})
    out["mechanism"] = out["outcome"].where(~fail.reshape(-1))
    return out


def fit_exponent(df: pd.DataFrame, design: Design, kind: str, method: str, *, joint_ci: str = "profile",
                 n_boot: int = 100) -> tuple[float, float, float]:
    """(beta, lo, hi) of one method with its calibration interval (:data:`CALIBRATION_CI`; ``joint_ci`` for the
    joint fit, e.g. ``"bootstrap"`` with ``n_boot`` replicates)."""
    from .joint import joint_exponent
    from .paper import paper_exponent
    from .phases import scaling_exponent

    if method == "joint":
        f = joint_exponent(df, design.panel, kind=kind, ci=joint_ci, n_boot=n_boot)
        return f.beta, *f.ci
    if method == "package":
        f = scaling_exponent(df, design.panel, kind=kind, ci="regression", method="package")
        return f.beta, *f.ci
    f = paper_exponent(df, design.panel, kind=kind)
    if not f.ok or f.n_rates < 3 or not np.isfinite(f.slope_se):
        return f.beta, np.nan, np.nan
    t = t_quantile(0.975, f.n_rates - 2)
    return f.beta, f.beta - t * f.slope_se, f.beta + t * f.slope_se


def calibrate(designs: Sequence[Design], truths: Sequence[Truth], seeds: Sequence[int], draws: int, *,
              methods: Sequence[str] = METHODS, kinds: Sequence[str] = KINDS, seed: int = 0,
              joint_ci: str = "profile", n_boot: int = 100, progress=None) -> pd.DataFrame:
    """Fit ``draws`` synthetic zoos per (design, truth, seed count) with every method: one row per fit with
    ``design``, ``seeds``, ``method``, ``kind``, ``truth``, ``beta``, ``lo``, ``hi``, ``covered``
    (``joint_ci``, ``n_boot``: the joint fit's interval, :func:`fit_exponent`)."""
    rows = []
    ss = np.random.SeedSequence(seed)
    for design in designs:
        for S in seeds:
            d = design.with_seeds(S)
            for ti, truth in enumerate(truths):
                for child in ss.spawn(draws):
                    df = synthetic_zoo(d, truth, np.random.default_rng(child))
                    for method in methods:
                        for kind in kinds:
                            b, lo, hi = fit_exponent(df, d, kind, method, joint_ci=joint_ci, n_boot=n_boot)
                            t = truth.beta(kind)
                            rows.append({"design": design.name, "seeds": S, "method": method, "kind": kind,
                                         "truth_index": ti, "truth": t, "beta": b, "lo": lo, "hi": hi,
                                         "covered": bool(lo <= t <= hi)})
                    if progress:
                        progress(1)
    return pd.DataFrame(rows)


def calibration_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per (kind, design, seeds, method): the median of estimate - truth, the interquartile range of that error,
    the coverage of the nominal 95 % interval and the share of fits with no exponent, over all draws."""
    r = results.assign(err=results["beta"] - results["truth"])

    def one(g):
        ok = np.isfinite(g["err"])
        e = g.loc[ok, "err"]
        return pd.Series({"draws": len(g), "median_error": float(e.median()) if len(e) else np.nan,
                          "iqr": float(e.quantile(0.75) - e.quantile(0.25)) if len(e) else np.nan,
                          "coverage": float(g["covered"].mean()), "failed": float(1 - ok.mean())})

    keys = ["kind", "design", "seeds", "method"]
    t = r.groupby(keys, sort=False)[["err", "covered"]].apply(one).reset_index()
    order = {k: i for i, k in enumerate((*KINDS, *METHODS))}
    return t.sort_values(["kind", "design", "seeds", "method"], key=lambda c: c.map(order) if c.name in (
        "kind", "method") else c, kind="stable").reset_index(drop=True)


def power(design: Design, truth: Truth | None = None, *, draws: int = 20, seed: int = 0,
          kinds: Sequence[str] = KINDS) -> pd.DataFrame:
    """The joint fit's expected precision on ``design``, by simulation from ``truth`` (default: the middle of
    the theory's ranges, beta_LC = 2.5 and beta_SP = 4.5): per kind, the median width of the 95 % profile
    interval, its 10-90 % range over the draws, the median |error|, the share of draws with no exponent or
    interval (``no_exponent``) and the share of draws whose interval excludes at least one end of the theory's
    range (beta_LC in [2, 3], beta_SP in [4, 5])."""
    from .joint import joint_exponent
    from .theory import THEORY_BETA_RANGE

    truth = truth or Truth()
    rng = np.random.default_rng(seed)
    mech = {"critical_delay": "limit_cycle", "slow_point": "slow_point"}
    res = {k: [] for k in kinds}
    for _ in range(draws):
        df = synthetic_zoo(design, truth, rng)
        for k in kinds:
            f = joint_exponent(df, design.panel, kind=k, ci="profile")
            res[k].append((f.beta, *f.ci))
    rows = []
    for k in kinds:
        a = np.asarray(res[k], dtype=float)
        ok = np.isfinite(a).all(axis=1)
        a = a[ok]
        width = a[:, 2] - a[:, 1]
        lo_t, hi_t = THEORY_BETA_RANGE[mech[k]]
        tells = (a[:, 2] < hi_t) | (a[:, 1] > lo_t)

        def q(v, p):
            return float(np.quantile(v, p)) if len(v) else np.nan

        rows.append({"design": design.describe(), "kind": k, "truth": truth.beta(k), "draws": draws,
                     "median_width": q(width, 0.5), "width_p10": q(width, 0.1), "width_p90": q(width, 0.9),
                     "median_abs_error": q(np.abs(a[:, 0] - truth.beta(k)), 0.5),
                     "excludes_an_end": float(tells.sum() / draws), "no_exponent": float(1 - ok.mean())})
    return pd.DataFrame(rows)
