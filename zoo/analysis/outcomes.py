"""Outcome tables of a zoo: the vocabularies of the boundary fits, families and pooled panels, fractions per
(learning rate, delay) cell, psd_ratio histograms, and the result type of an exponent fit. Metadata only;
shared by the package's fits (:mod:`.phases`) and the paper's (:mod:`.paper`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import labels
from ..errors import InvalidChoiceError

NOT_LEARNED = ("no_learning", "unstable")
KINDS = ("critical_delay", "slow_point")
#: the boundary fits, one vocabulary: ``joint`` (default): one likelihood over all cells (:mod:`.joint`);
#: ``package``: the two-step robust fit, per-rate curves then a log-log line (:mod:`.phases`);
#: ``paper``: the authors' figure scripts (:mod:`.paper`)
METHODS = ("joint", "package", "paper")
DEFAULT_METHOD = "joint"
#: the confidence intervals each method offers (the first is its default)
CI_METHODS = {"joint": ("bootstrap", "profile", "none"), "package": ("bootstrap", "regression", "none"),
              "paper": ("+-1 SE (paper)",)}
#: panels that pool families as the paper's figures do: its "no post" panels hold nopost and nopost-narrow
#: (30 learning rates); pass the panel name wherever a family is asked for
PANELS = {"no-post": ("nopost", "nopost-narrow")}


# ---------------------------------------------------------------- tables
def as_metadata(obj) -> pd.DataFrame:
    """The metadata table of ``obj`` (a ``Zoo`` or the table itself)."""
    df = getattr(obj, "metadata", obj)
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a metadata DataFrame or a Zoo, got {type(obj).__name__}")
    return df


def panels_of(families) -> list[str]:
    """The pooled panels (:data:`PANELS`) for which ``families`` hold at least two member families."""
    fams = set(families)
    return [p for p, members in PANELS.items() if len(fams & set(members)) >= 2]


def family_rows(df: pd.DataFrame, family: str | None) -> tuple[pd.DataFrame, str | None]:
    """The rows of one family, or of a pooled panel (:data:`PANELS`, e.g. ``"no-post"``); ``None`` if the
    table holds a single family. Raises ``ValueError`` naming the valid choices."""
    if "family" not in df.columns:
        return df, family
    fams = sorted(df["family"].dropna().unique().tolist())
    if family in PANELS:
        members = [f for f in PANELS[family] if f in fams]
        if not members:
            raise InvalidChoiceError("family or panel", family, fams + panels_of(fams), hint=(
                f"panel {family!r} pools {list(PANELS[family])}, none of which is in this zoo"))
        return df[df["family"].isin(members)], family
    if family is not None:
        if family not in fams:
            raise InvalidChoiceError("family or panel", family, fams + panels_of(fams),
                                     hint="not in this zoo")
        return df[df["family"] == family], family
    if len(fams) > 1:
        raise InvalidChoiceError("family", None, fams + panels_of(fams),
                                 hint="the table mixes families: pass family=... (a family or a pooled panel)")
    return df, fams[0] if fams else None




def phase_diagram(metadata, family: str | None = None, *, x: str = "delay_ms") -> pd.DataFrame:
    """Fraction of each outcome per (family, lr, delay) cell.

    One row per cell: ``family``, ``lr``, ``delay_ms`` (or the column ``x``), ``n`` (networks), one column per
    outcome (``no_learning``, ``unstable``, ``limit_cycle``, ``slow_point``: fractions of ``n``), ``learned``
    and ``not_learned`` (fractions) and ``unlabelled`` (fraction with no outcome). Sorted by family, lr
    (descending), delay. ``family`` restricts to one family; by default all families are kept.
    """
    df = as_metadata(metadata)
    if family is not None:
        df, _ = family_rows(df, family)
    keys = [k for k in ("family", "lr", x) if k in df.columns]
    if x not in df.columns or "lr" not in df.columns:
        raise KeyError(f"the metadata needs the columns 'lr' and {x!r}")
    out = df.assign(_o=df["outcome"].fillna("unlabelled") if "outcome" in df.columns else "unlabelled")
    counts = out.groupby(keys)["_o"].value_counts().unstack(fill_value=0)
    n = counts.sum(axis=1)
    table = pd.DataFrame({"n": n})
    for o in (*labels.OUTCOMES, "unlabelled"):
        table[o] = (counts[o] / n) if o in counts.columns else 0.0
    table["not_learned"] = table["no_learning"] + table["unstable"]
    table["learned"] = table["limit_cycle"] + table["slow_point"]
    table = table.reset_index()
    if "family" in keys:
        table = table.sort_values(["family", "lr", x], ascending=[True, False, True])
    else:
        table = table.sort_values(["lr", x], ascending=[False, True])
    return table.reset_index(drop=True)


def psd_ratio_histogram(metadata, family: str | None = None, *, bins: int | np.ndarray = 20,
                        value_range: tuple[float, float] = (0.0, 1.0)) -> pd.DataFrame:
    """Histogram of the reference ``psd_ratio`` per mechanism (learned networks with a finite ratio).

    One row per bin: ``bin_lo``, ``bin_hi``, ``bin_center`` and the counts ``limit_cycle``, ``slow_point``
    (by the stored label, so with the default 0.5 threshold on a bin edge the two never share a bin).
    """
    df = as_metadata(metadata)
    if family is not None:
        df, _ = family_rows(df, family)
    edges = np.histogram_bin_edges([], bins=bins, range=value_range)
    out = pd.DataFrame({"bin_lo": edges[:-1], "bin_hi": edges[1:], "bin_center": (edges[:-1] + edges[1:]) / 2})
    for m in labels.MECHANISMS:
        if "mechanism" in df.columns and "psd_ratio" in df.columns:
            v = df.loc[df["mechanism"] == m, "psd_ratio"].to_numpy(dtype=float)
        else:
            v = np.empty(0)
        v = v[np.isfinite(v)]
        out[m] = np.histogram(np.clip(v, edges[0], edges[-1]), bins=edges)[0]
    return out


@dataclass
class CellCounts:
    """Counts per (lr, delay, seed): ``k`` events among ``n`` networks."""

    lrs: np.ndarray  # (R,) descending
    delays: np.ndarray  # (D,)
    seeds: np.ndarray  # (S,)
    n: np.ndarray  # (R, D, S)
    k: np.ndarray  # (R, D, S)

    def fractions(self, seed_weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        w = np.ones(len(self.seeds)) if seed_weights is None else seed_weights
        n = self.n @ w
        k = self.k @ w
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, k / np.where(n > 0, n, 1), np.nan), n


def cell_counts(df: pd.DataFrame, kind: str, among: str, x: str) -> CellCounts:
    """The event counts of ``kind`` per (lr, ``x``, seed) cell, among ``"all"`` or the ``"learned"`` networks."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if among not in ("all", "learned"):
        raise ValueError(f"among must be 'all' or 'learned', got {among!r}")
    df = df[df["outcome"].notna()] if "outcome" in df.columns else df.iloc[:0]
    if kind == "critical_delay":
        event = df["outcome"].isin(NOT_LEARNED).to_numpy()
        member = np.ones(len(df), dtype=bool)
    else:
        event = (df["outcome"] == "slow_point").to_numpy()
        member = np.ones(len(df), dtype=bool) if among == "all" else df["outcome"].isin(labels.MECHANISMS).to_numpy()
    seeds_col = df["seed"].to_numpy() if "seed" in df.columns else np.zeros(len(df), dtype=int)
    lr_col = df["lr"].to_numpy()
    lrs = np.sort(np.unique(lr_col))[::-1]
    delays, di = np.unique(df[x].to_numpy(dtype=float), return_inverse=True)
    seeds, si = np.unique(seeds_col, return_inverse=True)
    li = len(lrs) - 1 - np.searchsorted(lrs[::-1], lr_col)
    n = np.zeros((len(lrs), len(delays), len(seeds)))
    k = np.zeros_like(n)
    idx = (li[member], di[member], si[member])
    np.add.at(n, idx, 1.0)
    np.add.at(k, idx, event[member].astype(float))
    return CellCounts(lrs, delays, seeds, n, k)


def check_method(method: str) -> None:
    """Raise :class:`InvalidChoiceError` unless ``method`` is one of :data:`METHODS`."""
    if method not in METHODS:
        raise InvalidChoiceError("method", method, METHODS)


def check_ci(method: str, ci: str) -> None:
    """Raise :class:`InvalidChoiceError` unless ``ci`` is an interval method of ``method``."""
    if ci not in CI_METHODS[method]:
        raise InvalidChoiceError(f"ci of method {method!r}", ci, CI_METHODS[method])


# ---------------------------------------------------------------- regression
def loglog_regression(lr, delay_ms) -> dict:
    """OLS of ``log(lr)`` on ``log(delay)``: ``{"beta": -slope, "intercept", "slope_se", "n"}``
    (``slope_se`` NaN with fewer than 3 points)."""
    X = np.log(np.asarray(delay_ms, dtype=float))
    Y = np.log(np.asarray(lr, dtype=float))
    n = X.size
    if n < 2 or np.ptp(X) == 0:
        return {"beta": np.nan, "intercept": np.nan, "slope_se": np.nan, "n": n}
    Xm, Ym = X.mean(), Y.mean()
    sxx = float(((X - Xm) ** 2).sum())
    slope = float(((X - Xm) * (Y - Ym)).sum() / sxx)
    intercept = float(Ym - slope * Xm)
    se = np.nan
    if n >= 3:
        res = Y - (intercept + slope * X)
        se = float(np.sqrt((res**2).sum() / (n - 2) / sxx))
    return {"beta": -slope, "intercept": intercept, "slope_se": se, "n": n}


# scipy.stats costs ~0.3 s to import, a tenth of `zoo build`'s fixed cost: these two are the same formulas
def r_squared(x, y) -> float:
    """R^2 of the least-squares line through (x, y), as ``scipy.stats.linregress(x, y).rvalue ** 2``."""
    sxx, sxy, _, syy = np.cov(np.asarray(x, dtype=float), np.asarray(y, dtype=float), bias=1).flat
    if sxx == 0.0 or syy == 0.0:
        return float(np.nan if sxy == 0 else 0.0)
    return float(np.clip(sxy / np.sqrt(sxx * syy), -1.0, 1.0) ** 2)


def t_quantile(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t with ``df`` degrees of freedom (``scipy.stats.t.ppf(q, df)``)."""
    from scipy import special

    return float(special.stdtrit(df, q))


@dataclass
class ScalingFit:
    """``log(lr) = intercept - beta * log(D*/ms)`` over the usable rates, with a confidence interval."""

    kind: str  # "critical_delay" or "slow_point"
    family: str | None
    beta: float
    intercept: float
    ci: tuple[float, float]
    ci_method: str  # "bootstrap" or "regression"
    level: float
    slope_se: float
    ci_regression: tuple[float, float]
    n_rates: int
    rates: pd.DataFrame  # the per-rate table (critical_delays / slow_point_boundaries)
    bootstrap: np.ndarray = field(default_factory=lambda: np.empty(0))  # betas of the valid replicates
    n_boot_failed: int = 0
    reason: str = ""  # why beta is NaN
    method: str = "package"  # one of METHODS
    r2: float = np.nan  # R^2 of the log-log line (the paper's figures report it)
    #: the (intercept, beta) of every valid bootstrap replicate, for a band around the line (joint fit)
    bootstrap_lines: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    params: dict = field(default_factory=dict)  # the joint fit's parameters at the optimum

    def band(self, lr, level: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise ``level`` band (default: the fit's) of the critical delay at ``lr`` over the bootstrap
        replicates of the line; NaN without replicates."""
        lr = np.asarray(lr, dtype=float)
        if len(self.bootstrap_lines) < 10:
            return np.full(lr.shape, np.nan), np.full(lr.shape, np.nan)
        c, b = self.bootstrap_lines[:, :1], self.bootstrap_lines[:, 1:]
        d = np.exp((c - np.log(lr)[None, :]) / b)
        q = (1 - (self.level if level is None else level)) / 2
        return np.quantile(d, q, axis=0), np.quantile(d, 1 - q, axis=0)

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.beta))

    def lr_at(self, delay_ms):
        """The fitted critical learning rate at ``delay_ms``."""
        return np.exp(self.intercept) * np.asarray(delay_ms, dtype=float) ** (-self.beta)

    def delay_at(self, lr):
        """The fitted critical delay (ms) at learning rate ``lr``."""
        return (np.asarray(lr, dtype=float) / np.exp(self.intercept)) ** (-1.0 / self.beta)

    def summary(self) -> str:
        what = "critical delay" if self.kind == "critical_delay" else "slow-point boundary"
        if not self.ok:
            return f"{what}: no exponent ({self.reason})"
        lo, hi = self.ci
        if self.method == "joint":
            interval = (f" [{lo:.2f}, {hi:.2f}] ({self.level:.0%} {self.ci_method} CI," if np.isfinite([lo, hi]).all()
                        else " (no interval,")
            return f"{what}: beta = {self.beta:.2f}{interval} joint likelihood over {self.n_rates} learning rates)"
        if self.method == "paper":
            return (f"{what}: beta = {self.beta:.2f} +- {self.slope_se:.2f} (1 SE, the paper's curve_fit), "
                    f"R^2 = {self.r2:.2f}, from {self.n_rates} learning rates")
        return (f"{what}: beta = {self.beta:.2f}  [{lo:.2f}, {hi:.2f}] ({self.level:.0%} {self.ci_method} CI), "
                f"from {self.n_rates} learning rates")
