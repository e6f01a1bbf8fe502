"""What the explorer shows, as plain data (metadata only): the networks table in columns, the panels (every
family and every pooled panel) with their boundary fits under each method of :data:`zoo.analysis.METHODS`,
the networks picked per cell for the per-network panels, and the ``load_zoo`` call that selects a cell.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import analysis, labels
from ..errors import EmptyZooError

#: cell order of the per-network picks: one of each outcome present first, in this order
PICK_ORDER = ("slow_point", "limit_cycle", "unstable", "no_learning")
#: networks per cell with precomputed panels: keeps the paper zoo's explorer under ~50 MB (docs/benchmarks.md)
DEFAULT_PER_CELL = 2


def x_column(df: pd.DataFrame) -> str:
    """The delay axis of a family: ``delay_ms``, or ``response_ms`` for the no-memory control family."""
    if "nomemory" in df.columns and len(df) and bool(df["nomemory"].fillna(False).all()):
        return "response_ms"
    return "delay_ms"


def x_values(df: pd.DataFrame) -> np.ndarray:
    """Each network's place on the delay axis: its delay, or its response length in the no-memory family."""
    nomem = df["nomemory"].fillna(False).to_numpy(bool) if "nomemory" in df.columns else np.zeros(len(df), bool)
    return np.where(nomem, df.get("response_ms", df["delay_ms"]).to_numpy(float), df["delay_ms"].to_numpy(float))


def cell_index(df: pd.DataFrame) -> np.ndarray:
    """A number per (family, lr, delay or response) cell, for each row of ``df``."""
    return df.assign(_x=x_values(df)).groupby(["family", "lr", "_x"], sort=True).ngroup().to_numpy()


def check_labelled(df: pd.DataFrame, what: str) -> None:
    """Raise :class:`EmptyZooError` for an empty selection or one without any outcome label."""
    if not len(df):
        raise EmptyZooError(f"{what}: no network to show (the filters leave an empty selection)")
    if "outcome" not in df.columns or df["outcome"].isna().all():
        raise EmptyZooError(f"{what}: no network is labelled (an unlabelled build?): run `zoo label` on the "
                            "build, then `zoo package`, before exploring it")


def rounded(values, digits: int = 4) -> list:
    """Floats rounded to ``digits`` significant digits (NaN/inf -> None), for compact JSON."""
    out = []
    for v in np.asarray(values, dtype=float).tolist():
        out.append(float(f"{v:.{digits}g}") if math.isfinite(v) else None)
    return out


def networks_columns(df: pd.DataFrame) -> dict:
    """The networks of ``df`` as columns with small codes: families, learning rates and outcomes by index."""
    fams = sorted(df["family"].astype(str).unique().tolist())
    lrs = sorted(df["lr"].astype(float).unique().tolist(), reverse=True)
    outcomes = list(labels.OUTCOMES)
    fam_i = {f: i for i, f in enumerate(fams)}
    x = x_values(df)
    out = df["outcome"].map({o: i for i, o in enumerate(outcomes)}).fillna(-1).astype(int)

    def col(name, digits=4):
        return rounded(df[name], digits) if name in df.columns else [None] * len(df)

    return {
        "families": fams, "lrs": lrs, "outcomes": outcomes,
        "net_id": df["net_id"].astype(str).tolist(),
        "family": [fam_i[f] for f in df["family"].astype(str)],
        "lr": np.searchsorted(-np.asarray(lrs), -df["lr"].to_numpy(float)).tolist(),
        "x": [int(v) if float(v).is_integer() else v for v in x.tolist()],
        "seed": df["seed"].astype(int).tolist() if "seed" in df.columns else [0] * len(df),
        "outcome": out.tolist(),
        "psd_ratio": col("psd_ratio", 3),
        "final_loss": col("final_loss", 3),
        "final_accuracy": col("final_accuracy", 3),
        "final_reliability": col("final_reliability", 3),
        "epochs": df["epochs_run" if "epochs_run" in df.columns else "epochs"].astype(int).tolist(),
        "first_learned_epoch": [int(v) if pd.notna(v) else None for v in
                                (df["first_learned_epoch"] if "first_learned_epoch" in df.columns
                                 else [None] * len(df))],
    }


def _fit_json(fit: analysis.ScalingFit | None, why: str = "") -> dict:
    if fit is None:
        return {"ok": False, "summary": why, "rates": []}
    col = "d0_ms" if fit.kind == "critical_delay" else "midpoint_ms"
    rates = fit.rates
    rows = []
    for _, r in rates.iterrows() if len(rates) else []:
        # per-rate intervals, where a method gives them (the joint fit: d0_lo_ms, d0_hi_ms, ...)
        lo, hi = r.get(col.replace("_ms", "_lo_ms"), np.nan), r.get(col.replace("_ms", "_hi_ms"), np.nan)
        rows.append({"lr": float(r["lr"]), "value": rounded([r.get(col, np.nan)])[0], "used": bool(r.get("used", False)),
                     "lo": rounded([lo])[0], "hi": rounded([hi])[0], "reason": str(r.get("reason", "") or "")})
    return {"ok": fit.ok, "summary": fit.summary(), "beta": rounded([fit.beta])[0],
            "intercept": rounded([fit.intercept], 8)[0], "ci": rounded(list(fit.ci)), "rates": rows}


def panel_fits(df: pd.DataFrame, name: str, *, n_boot: int) -> dict:
    """``{method: {kind: fit}}`` for one family or pooled panel, every method of :data:`analysis.METHODS`;
    a fit that cannot be made holds its reason (``ok`` false, ``summary``)."""
    out = {}
    for method in analysis.METHODS:
        out[method] = {}
        for kind in analysis.outcomes.KINDS:
            try:
                fit = analysis.scaling_exponent(df, name, kind=kind, method=method, n_boot=n_boot)
                out[method][kind] = _fit_json(fit)
            except (ValueError, RuntimeError, np.linalg.LinAlgError) as err:  # a degenerate panel: say why
                out[method][kind] = _fit_json(None, f"no fit: {err}")
    return out


def panels(df: pd.DataFrame, *, n_boot: int = 200, fits: bool = True) -> list[dict]:
    """Every family of ``df`` and every pooled panel it fills: name, title, member families, x axis and fits."""
    fams = sorted(df["family"].astype(str).unique().tolist())
    out = []
    for name in fams + analysis.panels_of(fams):
        members = [f for f in analysis.PANELS.get(name, (name,)) if f in fams]
        rows = df[df["family"].isin(members)]
        x = x_column(rows)
        title = (f"{name.replace('-', ' ')} (pooled: {' + '.join(members)})" if name in analysis.PANELS else name)
        entry = {"name": name, "title": title, "families": members, "x": x,
                 "xlabel": "response length (ms)" if x == "response_ms" else "delay (ms)", "fits": {}}
        if fits and x == "delay_ms" and rows["outcome"].notna().any():
            entry["fits"] = panel_fits(rows, name, n_boot=n_boot)
        out.append(entry)
    return out


def pick_networks(df: pd.DataFrame, per_cell: int = DEFAULT_PER_CELL) -> pd.DataFrame:
    """Up to ``per_cell`` networks of each (family, lr, delay or response) cell: one of each outcome present
    (in :data:`PICK_ORDER`), then the next by seed; the lowest seed first within an outcome."""
    if per_cell <= 0 or not len(df):
        return df.iloc[:0]
    rank = {o: i for i, o in enumerate(PICK_ORDER)}
    x = x_values(df)
    d = df.assign(_x=x, _rank=df["outcome"].map(rank).fillna(len(rank)),
                  _seed=df["seed"] if "seed" in df.columns else 0)
    d = d.sort_values(["family", "lr", "_x", "_rank", "_seed", "net_id"])
    d["_k"] = d.groupby(["family", "lr", "_x", "_rank"]).cumcount()  # 0 for the first of each outcome
    d = d.sort_values(["family", "lr", "_x", "_k", "_rank", "_seed"])
    picked = d.groupby(["family", "lr", "_x"], sort=False).head(per_cell)
    return df.loc[picked.index]


def source_call(source) -> str:
    """The first argument of a ``load_zoo(...)`` call that opens ``source`` again (empty for the bundled sample)."""
    if source is None:
        return ""
    return repr(str(source))
