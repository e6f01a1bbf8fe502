"""zoo.figures and `zoo figures`: every figure the zoo allows is written, the others are skipped with a reason."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from typer.testing import CliRunner

from zoo.cli import app
from zoo.figures import FigureSkipped, make_figures, plot_phase_diagram, plot_psd_ratio, plot_scaling

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_analysis import _synthetic  # noqa: E402


def _png_ok(path: Path) -> None:
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200


def test_cli_figures_on_smoke_zoo(smoke_zoo, tmp_path):
    out = tmp_path / "figs"
    res = CliRunner().invoke(app, ["figures", str(smoke_zoo), "--out", str(out), "--n-boot", "10"])
    assert res.exit_code == 0, res.output
    for name in ("phase_diagram_nopost", "psd_ratio_nopost", "trajectories_nopost"):
        for ext in ("png", "pdf"):
            assert (out / f"{name}.{ext}").stat().st_size > 1000
        _png_ok(out / f"{name}.png")
    # 2 delays and one rate with a not-learned network: no exponent can be fitted
    assert not (out / "scaling_nopost.png").exists()
    assert "skipped scaling_nopost" in res.output
    assert "no limit cycle network" in res.output  # the smoke zoo's learned networks are all slow points


def test_cli_figures_family_and_format(smoke_zoo, tmp_path):
    res = CliRunner().invoke(app, ["figures", str(smoke_zoo), "--family", "nopost", "--out", str(tmp_path),
                                   "--format", "png", "--n-boot", "5"])
    assert res.exit_code == 0, res.output
    assert not list(tmp_path.glob("*.pdf")) and list(tmp_path.glob("*.png"))
    bad = CliRunner().invoke(app, ["figures", str(smoke_zoo), "--family", "post", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "post" in bad.output


def test_figures_from_synthetic_metadata(tmp_path):
    df = _synthetic(seeds=6)
    fig = plot_scaling(df, n_boot=10)
    fig.savefig(tmp_path / "s.png")
    _png_ok(tmp_path / "s.png")
    plot_phase_diagram(df).savefig(tmp_path / "p.png")
    plot_psd_ratio(df).savefig(tmp_path / "h.png")
    with pytest.raises(FigureSkipped):
        plot_psd_ratio(df[df["mechanism"].isna()])
    with pytest.raises(FigureSkipped):
        plot_scaling(df[df["delay_ms"] == 100], n_boot=5)


def test_make_figures_on_empty_selection(smoke_zoo, tmp_path):
    from zoo.api import load_zoo

    z = load_zoo(smoke_zoo, learned=False)
    rep = make_figures(z, tmp_path, formats=("png",), n_boot=5, log=None)
    assert "trajectories_nopost" in rep.skipped and "psd_ratio_nopost" in rep.skipped
    assert (tmp_path / "phase_diagram_nopost.png").exists()


def test_pooled_panel_and_paper_method_figures(tmp_path):
    """The paper's "no post" panel pools nopost + nopost-narrow; its name is in the title; method="paper"."""
    df = _synthetic(seeds=6)
    df.loc[df["lr"] > 0.02, "family"] = "nopost-narrow"
    with pytest.raises(ValueError, match="no-post"):
        plot_scaling(df, n_boot=5)
    for method in ("package", "paper"):
        fig = plot_scaling(df, "no-post", n_boot=10, method=method)
        ax = fig.axes[0]
        assert "no post (pooled: nopost + nopost-narrow)" in ax.get_title()
        fig.savefig(tmp_path / f"s_{method}.png")
        _png_ok(tmp_path / f"s_{method}.png")
    fig = plot_phase_diagram(df, "no-post")
    assert "no post (pooled: nopost + nopost-narrow)" in fig.get_suptitle()


def test_joint_fit_figures_draw_intervals_band_and_boundaries(tmp_path):
    """The default (joint) scaling plot: per-rate boundaries with error bars, the fitted line with its seed-
    bootstrap band; the phase diagram overlays both fitted boundaries as curves. A metadata table is a source."""
    from matplotlib.collections import PolyCollection

    df = _synthetic(beta=2.5, d0_top=250.0, slow_beta=4.5, slow_mid_top=60.0, seeds=12)
    ax = plot_scaling(df, n_boot=20).axes[0]
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert any(lb.startswith("joint fit: beta") for lb in labels)
    assert any("per rate, 95 % profile interval" in lb for lb in labels)
    assert len(ax.containers) == 2 and sum(isinstance(c, PolyCollection) for c in ax.collections) == 2
    fig = plot_phase_diagram(df)
    fitted = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("fitted")]
    assert len(fitted) == 2 and all(len(ln.get_xdata()) == 200 for ln in fitted)
    df.to_parquet(tmp_path / "networks.parquet")
    rep = make_figures(str(tmp_path / "networks.parquet"), tmp_path / "f", formats=("png",), n_boot=10, log=None)
    assert {p.name for p in rep.written} == {"phase_diagram_nopost.png", "scaling_nopost.png", "psd_ratio_nopost.png"}
    assert "no weights" in rep.skipped["trajectories_nopost"]


def test_theory_slopes_go_through_the_data():
    """Theory lines carry the theory's slopes with the intercept fitted to the measured boundary: they pass
    through the measured points (the analytical prefactors would put them at ~10-40 ms, far from the data)."""
    df = _synthetic(seeds=10)
    ax = plot_scaling(df, n_boot=5).axes[0]
    points = [ln for ln in ax.get_lines() if ln.get_label().startswith("critical delay")][0]
    theory = [ln for ln in ax.get_lines() if "limit cycle" in str(ln.get_label()) and "theory" in str(ln.get_label())]
    assert theory and "intercept fitted" in theory[0].get_label()
    lr_pts, d_pts = points.get_xdata(), points.get_ydata()
    for ln in theory:  # at the measured rates, within a factor 1.5 of the measured delays
        lr_th, d_th = np.asarray(ln.get_xdata()), np.asarray(ln.get_ydata())
        order = np.argsort(lr_th)
        d_at = np.exp(np.interp(np.log(lr_pts), np.log(lr_th[order]), np.log(d_th[order])))
        assert np.median(np.abs(np.log(d_at / d_pts))) < np.log(1.5)


@pytest.mark.slow
def test_importing_and_plotting_leave_matplotlib_settings_alone():
    code = ("import matplotlib; b = matplotlib.get_backend(); rc = dict(matplotlib.rcParams); "
            "import zoo.figures as f, sys; sys.path.insert(0, 'tests'); from test_analysis import _synthetic; "
            "f.plot_psd_ratio(_synthetic(seeds=2)); "
            "assert matplotlib.get_backend() == b, (b, matplotlib.get_backend()); "
            "assert dict(matplotlib.rcParams) == rc")
    import subprocess

    env = {**__import__("os").environ, "MPLBACKEND": "svg"}
    res = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], env=env,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
