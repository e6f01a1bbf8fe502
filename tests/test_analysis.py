"""zoo.analysis: phase diagrams, exponent fits, theory, and the dynamics diagnostics on hand-built networks."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.optimize import brentq
from scipy.stats import linregress

from zoo.analysis import (
    DYN_MECHANISM,
    METHODS,
    SUMMARY_COLUMNS,
    analyse_tail,
    critical_delay_steps,
    critical_delays,
    critical_lr,
    critical_lr_tr_equals_t,
    diagnose_network,
    diagnose_stacked,
    diagnose_zoo,
    eta_c_limit_cycle,
    eta_c_slow_point,
    find_fixed_points,
    fit_critical_delay,
    logistic_curve,
    mechanism_agreement,
    mechanism_confusion,
    ms_to_steps,
    onset_curve,
    phase_diagram,
    psd_ratio_histogram,
    read_diagnostics,
    scaling_exponent,
    slow_point_boundaries,
    steps_to_ms,
    write_diagnostics,
)
from zoo.model import ModelConfig
from zoo.task import TaskSpec


# ---------------------------------------------------------------- hand-built networks
def _state(*Ws: torch.Tensor, biases=None) -> dict[str, torch.Tensor]:
    """Stacked state of networks with the given W_rec (zero input weights and readout)."""
    K, N = len(Ws), Ws[0].shape[0]
    b = torch.zeros(K, N) if biases is None else torch.stack(biases)
    return {"W_in.weight": torch.zeros(K, N, 2), "W_in.bias": torch.zeros(K, N),
            "W_rec.weight": torch.stack(Ws).float(), "W_rec.bias": b.float(),
            "W_out.weight": torch.zeros(K, 2, N), "W_out.bias": torch.zeros(K, 2)}


def _contraction(N=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(N, N, generator=g, dtype=torch.float64))
    W = (0.5 * Q).float()  # the network holds float32 weights: iterate with exactly those
    b = (0.5 * torch.randn(N, generator=g, dtype=torch.float64)).float()
    x = torch.zeros(N, dtype=torch.float64)
    for _ in range(400):  # x -> tanh(W x + b) contracts with factor 0.5
        x = torch.tanh(W.double() @ x + b.double())
    return W, b, x


def _bistable(N=6, w=2.0):
    return torch.full((N, N), w / N)


def test_fixed_points_batched_contraction_and_bistable():
    N, w, alpha = 6, 2.0, 0.5
    Wc, bc, xc = _contraction(N)
    Wb = _bistable(N, w)
    state = _state(Wc, Wb, biases=[bc, torch.zeros(N)])
    g = torch.Generator().manual_seed(1)
    starts = torch.rand(2, 24, N, generator=g) * 2 - 1
    # bistable net: starts spread along (1, ..., 1) around all three points, with some scatter
    starts[1] = torch.linspace(-1, 1, 24)[:, None] + 0.1 * starts[1]
    fc, fb = find_fixed_points(state, starts, alpha=alpha)

    # contraction: exactly one fixed point, stable, where iteration converges
    assert fc.is_fixed.sum() == 1
    assert np.abs(fc.points[0] - xc.numpy()).max() < 1e-8
    assert fc.stable[0] and fc.spectral_radius[0] < 1

    # bistable: +-x* (1, ..., 1) stable, 0 unstable; x* solves x = tanh(w x)
    xs = brentq(lambda v: v - math.tanh(w * v), 0.1, 1.0)
    pts = fb.points[fb.is_fixed]
    assert len(pts) == 3
    stable = pts[fb.stable[fb.is_fixed]]
    assert len(stable) == 2
    assert np.allclose(np.sort(stable.mean(1)), [-xs, xs], atol=1e-8)
    assert np.allclose(np.abs(stable), xs, atol=1e-8)
    origin = pts[~fb.stable[fb.is_fixed]]
    assert np.abs(origin).max() < 1e-8
    # leading eigenvalue along (1, ..., 1): (1 - a) + a (1 - x*^2) w at +-x*, (1 - a) + a w at 0
    rho = fb.spectral_radius[fb.is_fixed]
    assert np.allclose(np.sort(rho), sorted([1 - alpha + alpha * (1 - xs**2) * w] * 2 + [1 - alpha + alpha * w]),
                       atol=1e-8)
    ct = fb.ct_eigvals()
    assert np.allclose(ct, (fb.eigvals - 1) / 5.0)
    frame = fb.to_frame()
    assert list(frame["kind"]) == ["fixed"] * 3 and frame["stable"].sum() == 2


def test_limit_cycle_period_of_rotation_oscillator():
    # alpha = 1 (tau = dt): x -> tanh(g R(theta) x); g > 1 destabilises the origin, tanh bounds the orbit
    P, g, N = 16, 1.1, 4
    th = 2 * math.pi / P
    W = torch.zeros(N, N)
    W[:2, :2] = g * torch.tensor([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    W[2, 2], W[3, 3] = 0.5, -0.3  # decaying extra units
    cfg = ModelConfig(n_units=N, tau_ms=5.0)
    df, (d,) = diagnose_stacked(_state(W), cfg, TaskSpec(), seeds=[0], keep=True)
    row = df.iloc[0]
    assert row["dyn_state"] == "limit_cycle" and row["dyn_mechanism"] == "limit_cycle"
    assert abs(row["cycle_period_steps"] - P) < 0.08 * P
    assert row["cycle_period_ms"] == pytest.approx(5.0 * row["cycle_period_steps"])
    assert row["cycle_amplitude"] > 0.1
    assert row["n_fixed_points"] == 1 and row["n_stable"] == 0  # the origin, inside the cycle
    assert d.fixed_points.spectral_radius[0] == pytest.approx(g)
    assert list(df.columns) == list(SUMMARY_COLUMNS)


def test_bistable_network_is_a_fixed_point_network():
    cfg = ModelConfig(n_units=6)
    df, _ = diagnose_stacked(_state(_bistable(6, 2.0)), cfg, TaskSpec(), seeds=[3])
    row = df.iloc[0]
    assert row["dyn_state"] == "fixed_point" and row["dyn_mechanism"] == "slow_point"
    assert row["n_stable"] >= 1 and row["end_fixed_distance"] < 1e-4
    assert np.isnan(row["cycle_period_steps"])


def test_analyse_tail_vocabulary():
    t = np.arange(600)
    basis = np.linalg.qr(np.random.default_rng(0).normal(size=(10, 2)))[0].T  # (2, 10)
    P = 17.3
    cyc = np.stack([np.cos(2 * np.pi * t / P), np.sin(2 * np.pi * t / P)], 1) @ basis
    out = analyse_tail(cyc)
    assert out["state"] == "limit_cycle" and abs(out["period_steps"] - P) < 0.1
    assert out["amplitude"] == pytest.approx(1.0, rel=0.05)
    damped = cyc * (0.99**t)[:, None]
    assert analyse_tail(damped)["state"] in ("slow_point", "fixed_point")
    assert analyse_tail(np.ones((600, 10)))["state"] == "fixed_point"
    drift = np.outer(1 - np.exp(-t / 3000.0), np.ones(10))
    assert analyse_tail(drift)["state"] == "slow_point"
    assert analyse_tail(np.full((600, 10), np.nan))["state"] == "irregular"
    assert set(DYN_MECHANISM) == {"fixed_point", "slow_point", "limit_cycle", "irregular"}


# ---------------------------------------------------------------- theory
def test_theory_curves_and_units():
    assert eta_c_slow_point(10, 10) == pytest.approx(math.pi**4 / 4 * 10 * 10**-5)
    assert eta_c_limit_cycle(10, 10) == pytest.approx(10 * 10**-3 / 4)
    # with T_r = T the paper states its own closed forms, not the substitution into the T_r formulas
    T = 20.0
    assert critical_lr(T, "limit_cycle", response_steps=T) == pytest.approx(T**-2 / 4)
    assert critical_lr_tr_equals_t(T, "slow_point") == pytest.approx(3 * math.pi**4 / 32 * T**-4)
    assert critical_lr_tr_equals_t(T, "limit_cycle") == pytest.approx(T**-2 / 24)
    assert np.isinf(critical_lr_tr_equals_t(0, "limit_cycle"))
    for mech in ("slow_point", "limit_cycle"):
        lr = critical_lr(30.0, mech)
        assert critical_delay_steps(lr, mech) == pytest.approx(30.0)
    assert np.isinf(critical_lr(0, "slow_point"))
    assert ms_to_steps(400) == 80 and steps_to_ms(80) == 400
    assert np.allclose(ms_to_steps(np.array([0, 20, 35])), [0, 4, 7])
    with pytest.raises(ValueError):
        critical_lr(10, "ghost")


# ---------------------------------------------------------------- tables and fits
def _synthetic(beta=2.5, d0_top=50.0, a=0.03, seeds=30, lrs=None, seed=0, slow_beta=None, slow_mid_top=100.0):
    """Outcome table with not-learned fractions from the spec's f(D) and D0(lr) = c lr^(-1/beta), binomial
    draws per network; learned networks are slow points with a logistic probability if ``slow_beta``."""
    rng = np.random.default_rng(seed)
    lrs = np.logspace(-1, -3, 8) if lrs is None else lrs
    delays = np.arange(0, 401, 20)
    c = d0_top * 0.1 ** (1 / beta)
    rows = []
    for lr in lrs:
        d0 = c * lr ** (-1 / beta)
        mid = slow_mid_top * (lr / 0.1) ** (-1 / slow_beta) if slow_beta else None
        for D in delays:
            p_nl = onset_curve(D, d0, a)
            p_sp = logistic_curve(D, mid, 25.0) if slow_beta else 0.5
            for s in range(seeds):
                if rng.random() < p_nl:
                    o = "unstable" if rng.random() < 0.3 else "no_learning"
                else:
                    o = "slow_point" if rng.random() < p_sp else "limit_cycle"
                rows.append({"family": "nopost", "lr": lr, "delay_ms": int(D), "seed": s, "outcome": o,
                             "mechanism": o if o in ("slow_point", "limit_cycle") else None,
                             "psd_ratio": rng.uniform(0.5, 1) if o == "slow_point" else
                             (rng.uniform(0, 0.5) if o == "limit_cycle" else np.nan)})
    return pd.DataFrame(rows)


def test_phase_diagram_and_histogram():
    df = _synthetic(seeds=5)
    pd_ = phase_diagram(df)
    assert len(pd_) == 8 * 21
    assert np.allclose(pd_[["no_learning", "unstable", "limit_cycle", "slow_point"]].sum(axis=1), 1.0)
    assert (pd_["n"] == 5).all()
    assert pd_["lr"].is_monotonic_decreasing
    h = psd_ratio_histogram(df, bins=10)
    assert h["limit_cycle"].sum() == (df["mechanism"] == "limit_cycle").sum()
    assert h.loc[h["bin_lo"] >= 0.5, "limit_cycle"].sum() == 0
    with pytest.raises(ValueError):
        phase_diagram(df, family="post")


def test_fit_critical_delay_exact_and_step():
    D = np.arange(0, 401, 20.0)
    fit = fit_critical_delay(D, onset_curve(D, 130.0, 0.02))
    assert fit["d0"] == pytest.approx(130.0, abs=1e-3) and fit["a"] == pytest.approx(0.02, rel=1e-3)
    step = (D >= 200).astype(float)  # a step between 180 and 200: D0 is taken in the middle of the gap
    assert 180.0 <= fit_critical_delay(D, step)["d0"] < 200.0


def test_exponent_recovered_from_synthetic_outcomes():
    df = _synthetic(beta=2.5)
    fit = scaling_exponent(df, n_boot=60, method="package")
    assert fit.ok and fit.ci_method == "bootstrap" and fit.n_rates == 8
    assert abs(fit.beta - 2.5) < 0.3
    assert fit.ci[0] < 2.5 < fit.ci[1]
    assert fit.ci_regression[0] < fit.beta < fit.ci_regression[1]
    t = critical_delays(df, method="package")
    assert t["used"].all() and (t["d0_steps"] == t["d0_ms"] / 5).all()
    assert np.allclose(fit.lr_at(fit.delay_at(0.01)), 0.01)
    reg = scaling_exponent(df, ci="regression", method="package")
    assert reg.ci_method == "regression" and reg.ci == reg.ci_regression


def test_slow_point_boundary_exponent():
    df = _synthetic(beta=2.5, d0_top=250.0, slow_beta=4.5, slow_mid_top=60.0, seeds=40)
    t = slow_point_boundaries(df, among="learned", method="package")
    assert t["used"].sum() >= 6
    fit = scaling_exponent(df, kind="slow_point", among="learned", n_boot=40, method="package")
    assert abs(fit.beta - 4.5) < 0.8, fit.summary()


def test_exponent_degenerate_cases():
    # every network learned: no rate reaches a not-learned fraction of 0.1
    df = _synthetic(d0_top=10_000.0, seeds=3)
    fit = scaling_exponent(df, n_boot=10, method="package")
    assert not fit.ok and "usable" in fit.reason
    assert (critical_delays(df, method="package")["reason"].str.contains("largest fraction")).all()
    joint = scaling_exponent(df, n_boot=10)
    assert not joint.ok and joint.method == "joint" and "none is" in joint.reason
    # a single delay
    one = _synthetic(seeds=3)
    one = one[one["delay_ms"] == 200]
    for method in METHODS:
        assert not scaling_exponent(one, n_boot=10, method=method).ok
        # empty
        assert not scaling_exponent(one.iloc[:0], n_boot=10, method=method).ok


# ---------------------------------------------------------------- on a real (smoke) release
@pytest.mark.slow
def test_diagnose_smoke_zoo_and_store(smoke_zoo, tmp_path):
    from zoo.api import load_zoo
    from zoo.manifest import verify_folder

    rel = tmp_path / "zoo"
    shutil.copytree(smoke_zoo, rel)
    z = load_zoo(rel)
    df = diagnose_zoo(z, chunk_size=5)
    assert len(df) == len(z) and list(df["net_id"]) == list(z.metadata["net_id"])
    assert set(df["dyn_state"]) <= {"fixed_point", "slow_point", "limit_cycle", "irregular"}
    assert (df["n_fixed_points"] >= 0).all()
    path = write_diagnostics(rel, df)
    assert path.exists()
    assert "diagnostics/networks.parquet" in verify_folder(rel)
    back = read_diagnostics(load_zoo(rel, learned=True))
    assert len(back) == int(z.metadata["learned"].sum())
    conf = mechanism_confusion(df, z.metadata)
    assert conf.loc["total", "total"] == int(z.metadata["mechanism"].notna().sum())
    agree = mechanism_agreement(df, z.metadata)
    assert np.isnan(agree) or 0 <= agree <= 1
    d = diagnose_network(z[0])
    assert d.summary["net_id"] == z[0].row["net_id"]
    assert d.rates.shape[1] == 2 and d.time_ms[1] == 5.0


@pytest.mark.slow
def test_cli_diagnose_writes_into_release(smoke_zoo, tmp_path):
    from typer.testing import CliRunner

    from zoo.cli import app

    rel = tmp_path / "zoo"
    shutil.copytree(smoke_zoo, rel)
    res = CliRunner().invoke(app, ["diagnose", str(rel), "--learned", "--write", "--out", str(tmp_path / "d.csv")])
    assert res.exit_code == 0, res.output
    assert "agreement" in res.output and (tmp_path / "d.csv").exists()
    first = read_diagnostics(rel)
    res = CliRunner().invoke(app, ["diagnose", str(rel), "--lr", "0.03", "--write"])
    assert res.exit_code == 0, res.output
    merged = read_diagnostics(rel)  # the second call's rows are added to the first's, none dropped
    assert set(first["net_id"]) <= set(merged["net_id"]) and len(merged) >= len(first)


# ---------------------------------------------------------------- the paper's procedures, pooled panels
@pytest.mark.parametrize("method", ["joint", "package", "paper"])
def test_every_method_recovers_known_exponents(method):
    df = _synthetic(beta=2.5)
    fit = scaling_exponent(df, method=method, n_boot=30)
    assert fit.ok and fit.method == method and fit.n_rates == 8 and abs(fit.beta - 2.5) < 0.3, fit.summary()
    assert method == "joint" or fit.r2 > 0.95
    sp = _synthetic(beta=2.5, d0_top=250.0, slow_beta=4.5, slow_mid_top=60.0, seeds=40)
    fit = scaling_exponent(sp, kind="slow_point", method=method, n_boot=30)
    assert abs(fit.beta - 4.5) < 0.8, fit.summary()


def test_paper_method_is_the_scripts_procedure():
    """beta +- 1 SE from curve_fit of the line = the OLS slope and its standard error; the line drawn in ms."""
    df = _synthetic(beta=2.5)
    fit = scaling_exponent(df, method="paper")
    t = critical_delays(df, method="paper")
    reg = linregress(np.log(t["d0_ms"]), np.log(t["lr"]))
    assert fit.beta == pytest.approx(-reg.slope, rel=1e-6) and fit.slope_se == pytest.approx(reg.stderr, rel=1e-4)
    assert fit.ci == pytest.approx((fit.beta - fit.slope_se, fit.beta + fit.slope_se))
    assert fit.r2 == pytest.approx(reg.rvalue ** 2)
    assert np.allclose(fit.lr_at(t["d0_ms"]), np.exp(reg.intercept + reg.slope * np.log(t["d0_ms"])), rtol=1e-5)
    assert "1 SE" in fit.summary()


def test_methods_differ_as_documented_on_unequal_cells():
    """The package weights each delay by its networks; the paper weighs every delay the same. One crowded
    cell that disagrees with its neighbours pulls the package's D0, not the paper's."""
    D = np.arange(0, 401, 40)
    f_true = onset_curve(D, 150.0, 0.02)
    n = np.full(D.size, 8)
    n[D == 120] = 200  # a crowded cell just below D0 ...
    k = np.round(f_true * n).astype(int)
    k[D == 120] = 100  # ... where half of its networks fail
    rows = [{"family": "nopost", "lr": 0.05, "delay_ms": int(d), "seed": s,
             "outcome": "no_learning" if s < kk else "limit_cycle"} for d, nn, kk in zip(D, n, k, strict=True) for s in range(nn)]
    df = pd.DataFrame(rows)
    ours = critical_delays(df, method="package")["d0_ms"].iloc[0]
    paper = critical_delays(df, method="paper")["d0_ms"].iloc[0]
    frac = k / n
    assert ours == pytest.approx(fit_critical_delay(D, frac, n)["d0"], abs=0.5)
    assert paper == pytest.approx(fit_critical_delay(D, frac)["d0"], abs=2.0)  # unweighted least squares
    assert paper - ours > 20.0


def test_paper_settings_skip_and_drop_rates():
    df = _synthetic(beta=2.5, seeds=10)
    post = df.assign(family="post")
    t = critical_delays(post, method="paper")
    assert not t["used"].iloc[1] and "by hand" in t["reason"].iloc[1] and t["used"].drop(index=1).all()
    assert critical_delays(df, method="paper")["used"].all()
    with pytest.raises(ValueError, match="method.*'joint', 'package', 'paper'"):
        scaling_exponent(df, method="authors")


def _figure4_script(df, kind, *, p0, min_fraction, dropped=(), largest=None):
    """Figure 4's scripts restated: fractions per (rate, delay) over T_all = linspace(0, 400, 21) ms, curve_fit
    of the onset or the logistic from p0 per rate (largest rate first), the hand mask, then curve_fit of the
    line log(lr) = B log(D0) + c. Returns (D0 per rate, 0 where skipped; B; its standard error)."""
    from scipy.optimize import curve_fit

    T_all = np.linspace(0, 400, 21)
    lrs = np.sort(df["lr"].unique())[::-1]
    onset = lambda x, x0, a: np.where(x < x0, 0, 1 - np.exp(-a * (x - x0)))  # noqa: E731
    sigmoid = lambda x, x0, k: 1 / (1 + np.exp(-k * (x - x0)))  # noqa: E731
    hit = df["outcome"].isin(["no_learning", "unstable"]) if kind == "critical_delay" else df["outcome"] == "slow_point"
    met = df.assign(hit=hit).pivot_table(index="lr", columns="delay_ms", values="hit", aggfunc="mean")
    met = met.loc[lrs, T_all.astype(int)].to_numpy()
    a_all = np.zeros(len(lrs))
    for k in range(len(lrs)):
        if met[k].max() < min_fraction:
            continue
        with np.errstate(over="ignore"):
            popt, _ = curve_fit(onset if kind == "critical_delay" else sigmoid, T_all, met[k], p0=p0)
        a_all[k] = popt[0]
    ns = largest or len(lrs)
    mask = a_all[:ns] > 0
    for i in dropped:
        mask[i] = False
    (B, _), pcov = curve_fit(lambda t, B, c: B * t + c, np.log(a_all[:ns][mask]), np.log(lrs[:ns][mask]))
    return a_all, B, np.sqrt(pcov[0, 0])


@pytest.mark.parametrize("panel", ["post", "nopost"])
def test_paper_method_matches_the_figure4_scripts_in_ms(panel):
    """The scripts fit on delays in ms (their initial guesses D0 = 0.1 or 0.5 and a = 0.1 are in ms and per
    ms); post also leaves its second-largest rate out of both exponents. Fitted in seconds, the post guess
    D0 = 0.5 s lies beyond every delay and curve_fit never leaves it."""
    df = _synthetic(beta=2.5, d0_top=60.0, seeds=40, lrs=np.logspace(-1, -3, 15), slow_beta=4.5,
                    slow_mid_top=60.0).assign(family=panel)
    post = panel == "post"
    p0, floor, dropped = ((0.5, 0.1), 0.2, (1,)) if post else ((0.1, 0.1), 0.1, ())
    for kind, p0_kind in (("critical_delay", p0), ("slow_point", (0.1, 0.1))):
        d0, B, se = _figure4_script(df, kind, p0=p0_kind, min_fraction=floor, dropped=dropped)
        fit = scaling_exponent(df, kind=kind, method="paper")
        table = fit.rates
        col = "d0_ms" if kind == "critical_delay" else "midpoint_ms"
        fitted = np.where(table["max_fraction"] < floor, 0.0, table[col].to_numpy())
        assert np.allclose(fitted, d0, rtol=1e-6, atol=1e-6), (kind, fitted, d0)
        assert fit.beta == pytest.approx(-B, rel=1e-6) and fit.slope_se == pytest.approx(se, rel=1e-4)
        assert (not table["used"].iloc[1]) == post
    crit = critical_delays(df, method="paper")
    assert crit["used"].sum() >= 10 and crit.loc[crit["used"], "d0_ms"].between(0, 400).all()
    assert abs(scaling_exponent(df, method="paper").beta - 2.5) < 0.4


def test_pooled_no_post_panel():
    """nopost-narrow (large rates) and nopost (small rates) pooled as the paper's "no post" panel."""
    df = _synthetic(beta=2.5)
    df.loc[df["lr"] > 0.02, "family"] = "nopost-narrow"
    with pytest.raises(ValueError, match="no-post"):
        scaling_exponent(df)
    pooled = scaling_exponent(df, family="no-post", n_boot=20)
    assert pooled.family == "no-post" and pooled.n_rates == 8 and abs(pooled.beta - 2.5) < 0.3
    paper = scaling_exponent(df, family="no-post", method="paper")
    assert paper.family == "no-post" and paper.n_rates == 8 and abs(paper.beta - 2.5) < 0.3
    assert critical_delays(df, "no-post", method="paper")["used"].sum() == 8
    assert scaling_exponent(df, family="nopost", n_boot=0).n_rates == 5
    assert len(phase_diagram(df, family="no-post")) == 8 * 21
    with pytest.raises(ValueError, match="none of which"):
        scaling_exponent(df.assign(family="post"), family="no-post")


@pytest.mark.bitwise("rerun")  # the same formulas on the same numbers, in one process
def test_regression_helpers_are_scipy_stats_formulas():
    """r_squared and t_quantile give scipy.stats' bits (linregress's rvalue ** 2, t.ppf) without importing it:
    the card's picture (zoo build) and zoo figures never load scipy.stats."""
    from scipy import stats

    from zoo.analysis.outcomes import r_squared, t_quantile

    g = np.random.default_rng(3)
    for n in (3, 4, 7, 30):
        for _ in range(20):
            x = np.log(g.uniform(10, 1000, n))
            y = -1.3 * x + g.normal(0, g.uniform(0.01, 2), n)
            assert r_squared(x, y) == stats.linregress(x, y).rvalue ** 2
            assert t_quantile(0.975, n - 2) == stats.t.ppf(0.975, n - 2)
    flat = ([1.0, 2.0, 3.0], [2.0, 2.0, 2.0])  # no variation in y: NaN, as linregress gives
    assert math.isnan(r_squared(*flat)) and math.isnan(stats.linregress(*flat).rvalue)
    code = "import sys, zoo.figures, zoo.release, zoo.build; print('scipy.stats' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False"], out.stderr[-2000:]


def test_paper_psd_ratio_panel_is_the_scripts():
    """49 bins (np.linspace(0, 1, 50) as edges) of densities, expon with scale = the limit cycles' mean, and
    norm.fit of the slow points, over the learned networks."""
    from scipy import stats

    from zoo.analysis import PSD_BIN_EDGES, paper_psd_ratio_fits

    df = _synthetic(seeds=10)
    fits = paper_psd_ratio_fits(df)
    lc = df.loc[df["mechanism"] == "limit_cycle", "psd_ratio"].to_numpy()
    sp = df.loc[df["mechanism"] == "slow_point", "psd_ratio"].to_numpy()
    assert len(fits.histogram) == 49 and np.allclose(PSD_BIN_EDGES, np.linspace(0, 1, 50))
    assert np.allclose(fits.histogram["limit_cycle"], np.histogram(lc, bins=np.linspace(0, 1, 50), density=True)[0])
    assert np.allclose(fits.histogram["slow_point"], np.histogram(sp, bins=np.linspace(0, 1, 50), density=True)[0])
    assert fits.lc_scale == pytest.approx(1 / (1 / np.mean(lc)))
    assert (fits.sp_mean, fits.sp_std) == pytest.approx(stats.norm.fit(sp))
    assert fits.sp_std == pytest.approx(np.std(sp))  # maximum likelihood: ddof 0
    x = np.linspace(0, 1, 5)
    assert np.allclose(fits.pdf(x)["limit_cycle"], stats.expon.pdf(x, scale=np.mean(lc)))
    assert (fits.n_limit_cycle, fits.n_slow_point) == (lc.size, sp.size)


def test_paper_loss_curves_per_class():
    """Figure 4's loss panel: at one rate, the last 1,000 losses of every network (aligned at the end), per
    class with unstable merged into not learned, nanmean and nanstd / sqrt(n)."""
    from zoo import load_zoo
    from zoo.analysis import PaperSettings, paper_loss_curves

    zoo = load_zoo()
    with pytest.raises(ValueError, match=r"no network at lr 0.07; valid: \[0.3, 0.2, 0.1, 0.05, 0.03\]"):
        paper_loss_curves(zoo, lr=0.07)
    with pytest.raises(ValueError, match="5 learning rates, so no rate at position 7"):
        paper_loss_curves(zoo, settings=PaperSettings(loss_curve_rate=7))
    assert paper_loss_curves(zoo).attrs["lr"] == 0.3  # a panel without a script's pick: the largest rate
    t = paper_loss_curves(zoo, lr=0.1)
    assert t.attrs["lr"] == 0.1 and set(t["class"]) == {"not_learned", "limit_cycle", "slow_point"}
    sel = zoo.filter(lr=0.1)
    meta = sel.metadata
    for name, outcomes in (("not_learned", ("no_learning", "unstable")), ("slow_point", ("slow_point",))):
        ids = meta.loc[meta["outcome"].isin(outcomes), "net_id"].tolist()
        losses = np.stack([sel.filter(net_id=[i])[0].curves()["loss"].to_numpy()[-1000:] for i in ids])
        part = t[t["class"] == name]
        assert part["n"].iloc[0] == len(ids) and len(part) == 1000 and part["epoch"].iloc[-1] == 1000
        assert np.allclose(part["mean"], losses.mean(0)) and np.allclose(part["se"], losses.std(0) / np.sqrt(len(ids)))
