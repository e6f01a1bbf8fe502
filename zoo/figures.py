"""Figures of a zoo (matplotlib): phase diagrams, scaling of critical delays, psd_ratio histograms and example
trajectories. ``make_figures`` (and ``zoo figures``) writes every figure it can and skips the others with a
reason (a zoo without a mechanism, too few delays for a fit, ...). Families that the paper pools into one
panel (its "no post" = nopost + nopost-narrow, :data:`zoo.analysis.outcomes.PANELS`) get the pooled panel too.

The plot functions return :class:`matplotlib.figure.Figure` objects made without pyplot, under a local
``rc_context``: importing or calling this module never changes the user's backend or rcParams (in a notebook,
figures keep showing).

Theory lines: the paper's critical learning rates come from a reduced model whose prefactors it does not
claim to match trained networks; it compares exponents. The figures therefore draw the theory's *slopes*
(beta in [2, 3] for limit cycles, [4, 5] for slow points) through the measured boundaries, with the intercept
fitted to them, and say so in the legend; with no measured boundary there is no theory line.

Colours: the Okabe-Ito palette for categories and ``cividis`` / ``viridis`` for continuous values, all
readable with the common forms of colour blindness.
"""

from __future__ import annotations

import functools
import os
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import patheffects
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from . import labels
from .analysis import outcomes, phases, theory
from .log import logger
from .manifest import atomic_path

OKABE_ITO = {"black": "#000000", "orange": "#E69F00", "sky_blue": "#56B4E9", "green": "#009E73",
             "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7"}
OUTCOME_COLORS = {"slow_point": OKABE_ITO["blue"], "limit_cycle": OKABE_ITO["orange"],
                  "no_learning": "#7F7F7F", "unstable": OKABE_ITO["vermillion"]}
OUTCOME_TITLES = {"slow_point": "slow point", "limit_cycle": "limit cycle", "no_learning": "no learning",
                  "unstable": "unstable"}
#: theory slopes on white axes (scaling plot)
THEORY_STYLE = {"slow_point": {"color": OKABE_ITO["sky_blue"], "ls": "--"},
                "limit_cycle": {"color": OKABE_ITO["orange"], "ls": ":"}}
#: theory slopes over the cividis phase diagram: white lines with a black outline, told apart by dashes
THEORY_STYLE_MAP = {"slow_point": {"color": "white", "ls": "--"}, "limit_cycle": {"color": "white", "ls": ":"}}
#: which measured boundary each theory curve is compared with: no learning above the limit-cycle curve
BOUNDARY_OF = {"limit_cycle": "critical_delay", "slow_point": "slow_point"}
#: the fitted boundaries over the phase diagram: solid, coloured by the mechanism on the far side
FIT_STYLE_MAP = {"critical_delay": {"color": OKABE_ITO["vermillion"], "ls": "-"},
                 "slow_point": {"color": OKABE_ITO["sky_blue"], "ls": "-"}}
BOUNDARY_TITLES = {"critical_delay": "no-solution boundary D0", "slow_point": "slow-point boundary"}
FIGURES = ("phase_diagram", "scaling", "psd_ratio", "trajectories")
STYLE = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8.5,
         "axes.spines.top": False, "axes.spines.right": False, "savefig.dpi": 150}


class FigureSkipped(Exception):
    """A figure that cannot be drawn for this zoo (the message says why)."""


def _styled(fn):
    """Run a plot function under :data:`STYLE` in a local rc_context (no global rcParams change)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            return fn(*args, **kwargs)
    return wrapper


def _figure(**kw) -> Figure:
    """A new figure outside pyplot (no global state; save it with ``fig.savefig``)."""
    return Figure(layout="constrained", **kw)


def _meta(obj) -> pd.DataFrame:
    return getattr(obj, "metadata", obj)


def _family_rows(df: pd.DataFrame, family: str | None) -> tuple[pd.DataFrame, str]:
    rows, name = outcomes.family_rows(df, family)
    return rows, name or ""


def panel_title(name: str) -> str:
    """``no-post`` -> ``no post (pooled: nopost + nopost-narrow)``; a family's name as it is."""
    if name in outcomes.PANELS:
        return f"{name.replace('-', ' ')} (pooled: {' + '.join(outcomes.PANELS[name])})"
    return name


def theory_through(fit: outcomes.ScalingFit, mechanism: str, delays_ms) -> dict[float, np.ndarray]:
    """The theory's slopes for ``mechanism`` (each end of its beta range) through the used points of ``fit``:
    ``{beta: lr(delays_ms)}`` with ``log lr = c - beta log D`` and ``c`` fitted (mean residual) to the points."""
    col = "d0_ms" if fit.kind == "critical_delay" else "midpoint_ms"
    used = fit.rates[fit.rates["used"]] if len(fit.rates) else fit.rates
    if not len(used):
        return {}
    logD, loglr = np.log(used[col].to_numpy(float)), np.log(used["lr"].to_numpy(float))
    D = np.asarray(delays_ms, dtype=float)
    return {b: np.exp(np.mean(loglr + b * logD)) * D ** (-b) for b in theory.THEORY_BETA_RANGE[mechanism]}


def _x_column(df: pd.DataFrame) -> tuple[str, str]:
    """The delay axis: delay_ms, or the response length for the no-memory control family."""
    if "nomemory" in df.columns and len(df) and bool(df["nomemory"].all()):
        return "response_ms", "response length (ms)"
    return "delay_ms", "delay (ms)"


def _edges(values: np.ndarray, log: bool) -> np.ndarray:
    v = np.sort(np.unique(np.asarray(values, dtype=float)))
    t = np.log(v) if log else v
    if len(t) == 1:
        half = np.log(1.5) if log else 10.0
        e = np.array([t[0] - half, t[0] + half])
    else:
        mid = (t[1:] + t[:-1]) / 2
        e = np.concatenate([[t[0] - (mid[0] - t[0])], mid, [t[-1] + (t[-1] - mid[-1])]])
    return np.exp(e) if log else e


# ---------------------------------------------------------------- phase diagram
@_styled
def plot_phase_diagram(metadata, family: str | None = None, *, show_theory: bool = True,
                       method: str = outcomes.DEFAULT_METHOD) -> Figure:
    """2 x 2 panels: the fraction of each outcome per (learning rate, delay) cell of one family or pooled
    panel, learning rate on a log axis, delay in ms, with both fitted boundaries (``method``) as curves. With
    ``show_theory``, the theory's slopes are drawn through the measured boundaries, intercept fitted
    (:func:`theory_through`)."""
    df, family = _family_rows(_meta(metadata), family)
    if not len(df) or "outcome" not in df.columns or df["outcome"].isna().all():
        raise FigureSkipped("no labelled networks")
    x, xlabel = _x_column(df)
    table = outcomes.phase_diagram(df.drop(columns="family", errors="ignore"), x=x)
    xs = np.sort(table[x].unique())
    lrs = np.sort(table["lr"].unique())
    xe, ye = _edges(xs, log=False), _edges(lrs, log=True)
    fig = _figure(figsize=(9.5, 7.2))
    axes = fig.subplots(2, 2, sharex=True, sharey=True)
    lines, fitted = {}, {}
    if x == "delay_ms":
        D = np.linspace(max(xe[0], xs[xs > 0].min() if (xs > 0).any() else 1.0), xe[-1], 200)
        lr_grid = np.geomspace(ye[0], ye[-1], 200)
        for mech, kind in BOUNDARY_OF.items():
            fit = phases.scaling_exponent(df.drop(columns="family", errors="ignore"), family or None, kind=kind,
                                          ci="none", method=method)
            if fit.ok and fit.beta > 0:
                fitted[kind] = (fit.delay_at(lr_grid), lr_grid, fit.beta)
            if show_theory:
                lines[mech] = theory_through(fit, mech, D)
    mesh = None
    for ax, outcome in zip(axes.flat, labels.OUTCOME_DISPLAY_ORDER, strict=True):
        grid = table.pivot(index="lr", columns=x, values=outcome).reindex(index=lrs, columns=xs).to_numpy()
        mesh = ax.pcolormesh(xe, ye, np.ma.masked_invalid(grid), cmap="cividis", vmin=0, vmax=1, shading="flat")
        ax.set_yscale("log")
        ax.set_title(OUTCOME_TITLES[outcome], color=OUTCOME_COLORS[outcome] if outcome != "no_learning" else "black")
        outline = [patheffects.withStroke(linewidth=3.6, foreground="black")]
        for kind, (d_fit, lr_fit, beta) in fitted.items():
            ax.plot(d_fit, lr_fit, lw=2.0, path_effects=outline, **FIT_STYLE_MAP[kind],
                    label=f"fitted {BOUNDARY_TITLES[kind]} ({method} fit): beta = {beta:.2f}")
        for mech, by_beta in lines.items():
            for j, lr_line in enumerate(by_beta.values()):
                ax.plot(D, lr_line, lw=1.6 if j else 1.2, path_effects=outline, **THEORY_STYLE_MAP[mech],
                        label=(f"theory slopes, {OUTCOME_TITLES[mech]}: beta {' and '.join(f'{b:g}' for b in by_beta)}"
                               " (intercept fitted to the measured boundary)") if j == 0 else None)
        ax.set_ylim(ye[0], ye[-1])
        ax.set_xlim(xe[0], xe[-1])
        if len(xs) <= 12:
            ax.set_xticks(xs)
        if len(lrs) <= 8:
            ax.yaxis.set_major_locator(FixedLocator(lrs))
            ax.yaxis.set_minor_locator(NullLocator())
            ax.set_yticklabels([f"{v:.3g}" for v in lrs])
    for ax in axes[1]:
        ax.set_xlabel(xlabel)
    for ax in axes[:, 0]:
        ax.set_ylabel("learning rate")
    if fitted or any(lines.values()):
        fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncol=1, fontsize=8,
                   frameon=False)
    cb = fig.colorbar(mesh, ax=axes, shrink=0.8, label="fraction of networks")
    cb.ax.tick_params(labelsize=9)
    n = int(table["n"].sum())
    fig.suptitle(f"Phase diagram: {panel_title(family)} ({n} networks, {int(table['n'].median())} per cell)")
    return fig


# ---------------------------------------------------------------- scaling
@_styled
def write_phase_picture(path: str | os.PathLike, metadata: pd.DataFrame) -> bool:
    """Render the zoo's phase diagram (the paper's pooled panel when the zoo fills one, e.g. no-post = nopost +
    nopost-narrow, else its largest family) as a PNG at ``path``; False (and no file) when the zoo has nothing
    to draw (unlabelled). The card's picture: pass it as ``picture=`` to packaging (``zoo.release``)."""
    path = Path(path)
    fams = metadata["family"].value_counts() if "family" in metadata and len(metadata) else None
    try:
        if fams is None:
            raise FigureSkipped("empty zoo")
        fig = plot_phase_diagram(metadata, (outcomes.panels_of(fams.index) or [str(fams.index[0])])[0])
    except (FigureSkipped, ValueError, KeyError) as why:  # the card then has no picture
        logger().info(f"note: no phase diagram picture for the card ({why})")
        path.unlink(missing_ok=True)
        return False
    with atomic_path(path) as tmp:  # a pyplot-free figure (zoo.figures): nothing to close
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    return True



def plot_scaling(metadata, family: str | None = None, *, n_boot: int = 200,
                 fits: Sequence[outcomes.ScalingFit] | None = None, method: str = outcomes.DEFAULT_METHOD) -> Figure:
    """Critical delay (not-learned onset) and slow-point boundary vs learning rate (log-log), with the
    fitted power laws (beta and its interval in the legend, fitted with ``method``) and the theory's slopes
    through the same points (intercept fitted). For the joint fit, each rate's boundary carries its own 95 %
    interval and the line its pointwise bootstrap band."""
    df, family = _family_rows(_meta(metadata), family)
    x, _ = _x_column(df)
    if x != "delay_ms":
        raise FigureSkipped("no delay axis (no-memory control family)")
    if fits is None:
        flat = df.drop(columns="family", errors="ignore")  # one family or one pooled panel, named by `family`
        fits = [phases.scaling_exponent(flat, family or None, kind=k, n_boot=n_boot, method=method)
                for k in outcomes.KINDS]
    usable = [f for f in fits if f.ok]
    if not usable:
        raise FigureSkipped("; ".join(f.summary() for f in fits))
    fig = _figure(figsize=(6.8, 5.2))
    ax = fig.subplots()
    lrs = np.sort(df["lr"].unique())
    lr_line = np.geomspace(lrs.min() / 1.3, lrs.max() * 1.3, 100)
    style = {"critical_delay": (OKABE_ITO["black"], "o", "critical delay D0 (not-learned onset)"),
             "slow_point": (OKABE_ITO["blue"], "s", "slow-point boundary (logistic midpoint)")}
    mech_of = {kind: mech for mech, kind in BOUNDARY_OF.items()}
    for f in fits:
        color, marker, label = style[f.kind]
        col = "d0_ms" if f.kind == "critical_delay" else "midpoint_ms"
        used = f.rates[f.rates["used"]] if len(f.rates) else f.rates
        if not len(used):
            continue
        lo_col, hi_col = col.replace("_ms", "_lo_ms"), col.replace("_ms", "_hi_ms")
        if lo_col in used.columns:  # the joint fit: each rate's boundary with its own interval
            err = np.vstack([used[col] - used[lo_col], used[hi_col] - used[col]]).clip(min=0)
            ax.errorbar(used["lr"], used[col], yerr=err, fmt="none", ecolor=color, capsize=2, lw=1, zorder=3)
            label += " per rate, 95 % profile interval"
        ax.plot(used["lr"], used[col], marker, color=color, ms=6, label=label, zorder=3)
        if f.ok:
            lo, hi = f.ci
            interval = (f"+- {f.slope_se:.2f} (1 SE, paper's fit)" if f.method == "paper"
                        else f"[{lo:.2f}, {hi:.2f}] ({f.level:.0%} {f.ci_method} CI)")
            ax.plot(lr_line, f.delay_at(lr_line), "-", color=color, lw=1.5,
                    label=f"{f.method} fit: beta = {f.beta:.2f} {interval}")
            band_lo, band_hi = f.band(lr_line)
            if np.isfinite(band_lo).all():
                ax.fill_between(lr_line, band_lo, band_hi, color=color, alpha=0.15, lw=0,
                                label=f"{f.level:.0%} band of the line (seed bootstrap)")
        mech = mech_of[f.kind]
        D_line = np.geomspace(used[col].min() / 1.5, used[col].max() * 1.5, 50)
        for j, lr_th in enumerate(theory_through(f, mech, D_line).values()):
            ax.plot(lr_th, D_line, lw=1.8, alpha=0.9, **THEORY_STYLE[mech],
                    label=(f"theory slopes, {OUTCOME_TITLES[mech]}: beta {' and '.join(f'{b:g}' for b in theory.THEORY_BETA_RANGE[mech])}"
                           " (intercept fitted to these points)") if j == 0 else None)
    ax.set_xscale("log")
    ax.set_yscale("log")
    measured = np.concatenate([f.rates.loc[f.rates["used"], "d0_ms" if f.kind == "critical_delay" else "midpoint_ms"]
                               .to_numpy(float) for f in fits if len(f.rates)] + [np.array([])])
    measured = measured[np.isfinite(measured) & (measured > 0)]
    if len(measured):  # frame the measurements; a poorly determined fit line must not set the scale
        ax.set_ylim(measured.min() / 2, measured.max() * 2)
    ax.set_xlim(lr_line[0], lr_line[-1])
    ax.set_xlabel("learning rate")
    ax.set_ylabel("critical delay (ms)")
    ax.set_title(f"Critical delay vs learning rate: {panel_title(family)}"
                 + {"paper": " (the paper's fitting)", "package": " (two-step fit)"}.get(method, ""))
    ax.legend(loc="best", framealpha=0.9, fontsize=7.5)
    skipped = [textwrap.fill(f.summary(), 90) for f in fits if not f.ok]
    if skipped:
        ax.text(0.01, 0.01, "\n".join(skipped), transform=ax.transAxes, fontsize=7.5, va="bottom", color="#555555")
    return fig


# ---------------------------------------------------------------- psd ratio
@_styled
def plot_psd_ratio(metadata, family: str | None = None, *, bins: int = 20) -> Figure:
    """Histogram of the reference spectral index per mechanism, with the 0.5 threshold."""
    df, family = _family_rows(_meta(metadata), family)
    h = outcomes.psd_ratio_histogram(df.drop(columns="family", errors="ignore"), bins=bins)
    total = int(h[["limit_cycle", "slow_point"]].to_numpy().sum())
    if total == 0:
        raise FigureSkipped("no learned network with a psd_ratio")
    fig = _figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
    width = h["bin_hi"] - h["bin_lo"]
    for mech in labels.MECHANISM_DISPLAY_ORDER:
        n = int(h[mech].sum())
        ax.bar(h["bin_lo"], h[mech], width=width, align="edge", color=OUTCOME_COLORS[mech], alpha=0.85,
               edgecolor="white", linewidth=0.5, label=f"{OUTCOME_TITLES[mech]} (n = {n})")
    ax.axvline(0.5, color="black", ls="--", lw=1, label="threshold 0.5")
    ax.set_xlim(0, 1)
    ax.set_xlabel("psd_ratio (fraction of spectral power within radius 3)")
    ax.set_ylabel("networks")
    ax.set_title(f"Spectral index of learned networks: {panel_title(family)}")
    ax.legend(loc="upper center", framealpha=0.9)
    return fig


# ---------------------------------------------------------------- trajectories
def pick_examples(metadata, family: str | None = None) -> dict[str, str]:
    """One net_id per mechanism present: the longest delay, then the most typical index (lowest psd_ratio
    for a limit cycle, highest for a slow point), then the smallest net_id."""
    df, _ = _family_rows(_meta(metadata), family)
    out = {}
    for mech in labels.MECHANISM_DISPLAY_ORDER:
        rows = df[df["mechanism"] == mech] if "mechanism" in df.columns else df.iloc[:0]
        if not len(rows):
            continue
        key = rows["psd_ratio"].fillna(0.5) * (1 if mech == "limit_cycle" else -1)
        rows = rows.assign(_k=key).sort_values(["delay_ms", "_k", "net_id"], ascending=[False, True, True])
        out[mech] = str(rows["net_id"].iloc[0])
    return out


def simulate_example(net, extend: int = 9) -> dict[str, np.ndarray]:
    """Trial 0 (and the first trial of type 1) of ``net`` on a trial ``extend`` times the nominal length,
    noise on, from its reproducible stream (as the labels): time_ms (L,), outputs (L, 2, 2), rates (L, 2, N)."""
    import torch

    from .analysis.diagnostics_config import torch_threads
    from .simulate import extended_inputs

    task = net.task
    u = extended_inputs(task, extend)
    pick = [int(torch.nonzero(task.trial_types() == t)[0]) for t in (0, 1)]
    with torch.no_grad(), torch_threads(1):  # a small sequential problem: one thread is fastest
        outputs, rates = net.model()(u[:, pick], seed=int(net.row["seed"]))
    return {"time_ms": np.arange(u.shape[0]) * task.dt_ms, "outputs": outputs.numpy(),
            "rates": rates[1:].numpy(), "cue_ms": task.cue_steps * task.dt_ms, "dt_ms": task.dt_ms,
            "reaction_ms": (task.reaction_start * task.dt_ms, (task.reaction_start + task.reaction_steps) * task.dt_ms)}


def _shade(ax, sim):
    ax.axvspan(0, sim["cue_ms"], color="#BBBBBB", alpha=0.5, lw=0, label="cue")
    ax.axvspan(*sim["reaction_ms"], color=OKABE_ITO["green"], alpha=0.2, lw=0, label="reaction window")


@_styled
def plot_network(net, *, extend: int = 9, axes=None, legend: bool = True) -> Figure:
    """Outputs (trial types 0 and 1) and firing rates (trial 0, units sorted by the time of their peak,
    min-max normalised per unit) of one network over a trial ``extend`` times the nominal length."""
    sim = simulate_example(net, extend)
    if axes is None:
        fig = _figure(figsize=(7, 6.2))
        axes = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1, 1.6]})
    else:
        fig = axes[0].figure
    t = sim["time_ms"]
    ax = axes[0]
    _shade(ax, sim)
    ch_colors = (OKABE_ITO["vermillion"], OKABE_ITO["blue"])
    for ch in (0, 1):
        ax.plot(t, sim["outputs"][:, 0, ch], color=ch_colors[ch], lw=1.4, label=f"output {ch} (trial type 0)")
        ax.plot(t, sim["outputs"][:, 1, ch], color=ch_colors[ch], lw=1.0, ls="--", alpha=0.8,
                label=f"output {ch} (trial type 1)")
    ax.set_ylabel("output")
    ax.set_ylim(-0.05, 1.05)
    if legend:
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    r = sim["rates"][:, 0, :]  # (L, N)
    lo, hi = r.min(0), r.max(0)
    norm = (r - lo) / np.where(hi - lo > 0, hi - lo, 1.0)
    order = np.argsort(np.argmax(r, axis=0), kind="stable")
    im = axes[1].imshow(norm[:, order].T, aspect="auto", origin="lower", cmap="viridis", vmin=0, vmax=1,
                        extent=(t[0], t[-1] + (t[1] - t[0] if len(t) > 1 else sim["dt_ms"]), 0, r.shape[1]),
                        interpolation="nearest")
    axes[1].set_ylabel("unit (sorted by peak time)")
    axes[1].set_xlabel("time (ms)")
    fig.colorbar(im, ax=axes[1], label="rate (min-max per unit)", pad=0.01)
    row = net.row
    ratio = row.get("psd_ratio", np.nan)
    label = OUTCOME_TITLES.get(row.get("outcome"), str(row.get("outcome", "?")))
    axes[0].set_title(f"{label}: {row['net_id']}\n(delay {row['delay_ms']} ms, lr {row['lr']:.3g}"
                      + (f", psd_ratio {ratio:.2f})" if pd.notna(ratio) else ")"), fontsize=9.5,
                      color=OUTCOME_COLORS.get(row.get("outcome"), "black"))
    return fig


@_styled
def plot_trajectories(zoo, family: str | None = None, *, extend: int = 9) -> tuple[Figure, list[str]]:
    """Example trajectories of a slow-point and a limit-cycle network of ``zoo`` (one column each). Returns
    the figure and the mechanisms that the zoo lacks."""
    examples = pick_examples(zoo.metadata, family)
    missing = [m for m in labels.MECHANISM_DISPLAY_ORDER if m not in examples]
    if not examples:
        raise FigureSkipped("no learned network (neither mechanism present)")
    n = len(examples)
    fig = _figure(figsize=(6.4 * n, 6.4))
    axes = fig.subplots(2, n, sharex="col", squeeze=False, gridspec_kw={"height_ratios": [1, 1.6]})
    for j, net_id in enumerate(examples.values()):
        plot_network(zoo[net_id], extend=extend, axes=axes[:, j], legend=j == 0)
    fig.suptitle(f"Example trajectories over a {extend}x extended trial"
                 + (f" (no {', '.join(OUTCOME_TITLES[m] for m in missing)} network in this zoo)" if missing else ""))
    return fig, missing


# ---------------------------------------------------------------- all of them
@dataclass
class FigureReport:
    written: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _save(fig: Figure, out: Path, stem: str, formats: Sequence[str], report: FigureReport) -> None:
    for ext in formats:
        p = out / f"{stem}.{ext}"
        fig.savefig(p, bbox_inches="tight")
        report.written.append(p)


def make_figures(source=None, out: str | os.PathLike = "figures", *, family: str | None = None,
                 formats: Sequence[str] = ("png", "pdf"), n_boot: int = 200, method: str = outcomes.DEFAULT_METHOD,
                 log: Callable[[str], None] | None = print) -> FigureReport:
    """Write every figure that ``source`` (a :class:`zoo.api.Zoo`, a release folder, a Hub id, None for the
    bundled sample, or a metadata table: a DataFrame or a ``.parquet`` file) allows into ``out``:
    ``phase_diagram_<name>``, ``scaling_<name>``, ``psd_ratio_<name>`` and (with weights, not from a table)
    ``trajectories_<name>`` for every family, and the first three for every pooled panel the zoo can fill
    (``<name>`` = ``no-post`` for nopost + nopost-narrow, as the paper's figures pool them), each in every
    format of ``formats``. ``family`` restricts to one family or panel. ``method`` fits the boundaries: ``joint``
    (default, the calibrated likelihood fit), ``package`` (two-step, files ``..._package``) or ``paper`` (as
    the authors' scripts do, files ``..._paper``). Figures that cannot be drawn are skipped; ``log`` gets
    one line per written file and per skipped figure."""
    from .api import Zoo, load_zoo

    outcomes.check_method(method)
    zoo = None
    if isinstance(source, pd.DataFrame):
        meta = source
    elif isinstance(source, (str, os.PathLike)) and str(source).endswith(".parquet"):
        meta = pd.read_parquet(source)
    else:
        zoo = source if isinstance(source, Zoo) else load_zoo(source, fetch=False)
        meta = zoo.metadata
    all_fams = sorted(meta["family"].dropna().unique().tolist()) if len(meta) else []
    if family is None:
        names = all_fams + outcomes.panels_of(all_fams)
    else:
        outcomes.family_rows(meta, family)  # a clear error for a family or panel that is not here
        names = [family]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = FigureReport()
    say = log or (lambda s: None)
    if not all_fams:
        report.skipped["all"] = "the zoo selection is empty"
        say("skipped all figures: the zoo selection is empty")
        return report
    suffix = "" if method == outcomes.DEFAULT_METHOD else f"_{method}"
    for name in names:
        members = [f for f in outcomes.PANELS.get(name, (name,)) if f in all_fams]
        sub = meta[meta["family"].isin(members)]
        jobs = {
            f"phase_diagram_{name}{suffix}": lambda s=sub, f=name: plot_phase_diagram(s, f, method=method),
            f"scaling_{name}{suffix}": lambda s=sub, f=name: plot_scaling(s, f, n_boot=n_boot, method=method),
            f"psd_ratio_{name}": lambda s=sub, f=name: plot_psd_ratio(s, f),
        }
        if name not in outcomes.PANELS:  # examples are per family
            if zoo is None:
                report.skipped[f"trajectories_{name}"] = "a metadata table holds no weights"
                say(f"skipped trajectories_{name}: a metadata table holds no weights")
            else:
                jobs[f"trajectories_{name}"] = lambda f=name, m=members: plot_trajectories(zoo.filter(family=m), f)
        for stem, job in jobs.items():
            try:
                fig = job()
            except FigureSkipped as why:
                report.skipped[stem] = str(why)
                say(f"skipped {stem}: {why}")
                continue
            if isinstance(fig, tuple):
                fig, missing = fig
                if missing:
                    note = f"{stem}: no {' or '.join(OUTCOME_TITLES[m] for m in missing)} network to show"
                    report.notes.append(note)
                    say(f"note: {note}")
            _save(fig, out, stem, formats, report)
            for ext in formats:
                say(f"wrote {out / f'{stem}.{ext}'}")
    return report
