"""zoo explore: the explorer's data (cells, fits, picks, per-network panels), its files (self-contained, no CDN),
bad input (empty selection, unlabelled zoo, metadata only, one cell) and the CLI. The page in a real browser:
tests/test_explore_browser.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("plotly", reason="zoo explore needs plotly: pip install -e '.[explore]'")

from zoo import analysis, load_zoo  # noqa: E402
from zoo.errors import EmptyZooError, InvalidChoiceError  # noqa: E402
from zoo.explore import build_explorer, pick_networks  # noqa: E402
from zoo.explore.traces import thin  # noqa: E402

VALIDATION = Path(__file__).resolve().parents[1] / "docs" / "validation" / "networks.parquet"


def read_script(path: Path, call: str):
    text = path.read_text()
    assert text.startswith(call + "(") and text.rstrip().endswith(");")
    return json.loads(text[len(call) + 1:text.rstrip().rindex(")")])


@pytest.fixture(scope="module")
def sample_explorer(tmp_path_factory):
    out = tmp_path_factory.mktemp("explore") / "sample"
    calls = []
    rep = build_explorer(None, out, per_cell=1, n_boot=20, progress=lambda d, t: calls.append((d, t)))
    return out, rep, calls


def test_sample_explorer_files_are_self_contained(sample_explorer):
    out, rep, calls = sample_explorer
    assert rep.index == out / "index.html" and rep.index.is_file()
    html = rep.index.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "the page must fetch nothing"
    for name in ("plotly.min.js", "explorer.js", "data.js"):
        assert (out / name).is_file() and f'src="{name}"' in html
    assert "cdn" not in (out / "explorer.js").read_text().lower()
    assert rep.size_bytes == sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "no temporary folder left behind"
    assert calls and calls[-1] == (rep.n_traced, rep.n_traced)  # the progress reached the end


def test_sample_explorer_data(sample_explorer):
    out, rep, _ = sample_explorer
    data = read_script(out / "data.js", "zooDataLoaded")
    meta = load_zoo().metadata
    nets = data["networks"]
    assert data["n_networks"] == len(meta) == len(nets["net_id"]) == rep.n_networks
    assert rep.n_cells == meta.groupby(["lr", "delay_ms"]).ngroups == 10
    # the codes decode to the metadata
    row = meta.set_index("net_id").loc[nets["net_id"][5]]
    assert nets["lrs"][nets["lr"][5]] == pytest.approx(row["lr"])
    assert nets["x"][5] == row["delay_ms"] and nets["outcomes"][nets["outcome"][5]] == row["outcome"]
    # every method of the analysis has both boundaries, as the analysis computes them
    (panel,) = data["panels"]
    assert set(panel["fits"]) == set(analysis.METHODS)
    for method in analysis.METHODS:
        fit = analysis.scaling_exponent(meta, "nopost", kind="critical_delay", method=method, n_boot=20)
        got = panel["fits"][method]["critical_delay"]
        assert got["ok"] == fit.ok and got["summary"] == fit.summary()
        if fit.ok:
            assert got["beta"] == pytest.approx(fit.beta, rel=1e-3)
    # one network per cell has panels, each cell's file holds it
    traced = [i for i, f in enumerate(nets["panel_file"]) if f >= 0]
    assert len(traced) == rep.n_traced == 10
    i = traced[0]
    panels = read_script(out / "nets" / f"{nets['panel_file'][i]}.js", "zooNetsLoaded")[nets["net_id"][i]]
    sim, curves = panels["sim"], panels["curves"]
    assert len(sim["outputs"]) == 2 and len(sim["outputs"][0]) == 2 and len(sim["pc"][1][1]) == len(sim["outputs"][0][0])
    assert len(sim["outputs"][0][0]) <= 150 and sim["delay_ms"][1] - sim["delay_ms"][0] == nets["x"][i]
    fle = nets["first_learned_epoch"][i]
    assert curves["first_learned_epoch"] == (fle if fle is not None and fle >= 0 else None)
    if curves["first_learned_epoch"] is not None:
        assert curves["first_learned_epoch"] in curves["epoch"]


def test_panels_match_the_simulator_and_the_labels():
    """The trajectory shown is the one the label's psd_ratio comes from: the outputs are the network's own
    simulation (noise from its stream), and the PCA plane is the labels'."""
    from zoo.explore.traces import network_panels
    from zoo.figures import simulate_example

    zoo = load_zoo()
    row = zoo.metadata[zoo.metadata["outcome"] == "limit_cycle"].iloc[:1]
    (net_id, p), = list(network_panels(zoo, row, max_points=10_000))
    ref = simulate_example(zoo[net_id])  # trial types 0 and 1, 9x trial, the network's seed
    got = np.array(p["sim"]["outputs"][0][1])
    np.testing.assert_allclose(got, ref["outputs"][:, 0, 1], atol=6e-3)


def test_pick_networks_prefers_one_of_each_outcome():
    meta = load_zoo().metadata
    picked = pick_networks(meta, 2)
    assert picked.groupby(["lr", "delay_ms"]).size().max() == 2
    for (_lr, _d), cell in meta.groupby(["lr", "delay_ms"]):
        got = picked.loc[picked.index.intersection(cell.index)]
        want = min(2, cell["outcome"].nunique())
        assert got["outcome"].nunique() == want
    assert pick_networks(meta, 2).equals(picked)  # deterministic
    assert len(pick_networks(meta, 0)) == 0


def test_thin_keeps_ends_and_marks():
    idx = thin(30_000, 150, keep=(1234,))
    assert idx[0] == 0 and idx[-1] == 29_999 and 1234 in idx and len(idx) <= 151
    assert list(thin(5, 150)) == [0, 1, 2, 3, 4]


def test_bad_input_gives_clear_errors(tmp_path):
    with pytest.raises(EmptyZooError, match="empty selection"):
        build_explorer(None, tmp_path / "a", delay=(300, None), outcome="slow_point", per_cell=0)
    meta = load_zoo().metadata.drop(columns=["outcome", "mechanism"])
    with pytest.raises(EmptyZooError, match="unlabelled"):
        build_explorer(meta, tmp_path / "b")
    with pytest.raises(InvalidChoiceError, match="valid choices"):
        build_explorer(None, tmp_path / "c", mechanism="ghost")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "mine.txt").write_text("keep me")
    with pytest.raises(Exception, match="not an explorer folder"):
        build_explorer(None, tmp_path / "d", per_cell=0, n_boot=0)
    assert (tmp_path / "d" / "mine.txt").read_text() == "keep me"
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_one_cell_and_metadata_only(tmp_path):
    rep = build_explorer(None, tmp_path / "one", lr=0.1, delay=40, per_cell=1, n_boot=0)
    assert rep.n_cells == 1 and rep.n_traced == 1
    (panel,) = read_script(tmp_path / "one" / "data.js", "zooDataLoaded")["panels"]
    assert all(not f["ok"] and f["summary"] for m in panel["fits"].values() for f in m.values())
    # a metadata table: cells and fits, no per-network panels, and a note that says so
    rep = build_explorer(str(VALIDATION), tmp_path / "val", n_boot=0)
    data = read_script(tmp_path / "val" / "data.js", "zooDataLoaded")
    assert rep.n_traced == 0 and not data["weights"] and "unavailable" in data["notes"][0]
    assert data["source_call"] is None and [p["name"] for p in data["panels"]] == ["nopost", "nopost-narrow", "no-post"]
    # rebuilding replaces the older explorer in place
    rep2 = build_explorer(str(VALIDATION), tmp_path / "val", family="nopost", n_boot=0)
    assert rep2.n_networks == int((pd.read_parquet(VALIDATION)["family"] == "nopost").sum())


def test_cli(tmp_path):
    from typer.testing import CliRunner

    from zoo.cli import app

    res = CliRunner().invoke(app, ["explore", "--out", str(tmp_path / "e"), "--per-cell", "0", "--n-boot", "0",
                                   "--lr", "0.1"])
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and (tmp_path / "e" / "index.html").is_file()
    res = CliRunner().invoke(app, ["explore", "--out", str(tmp_path / "f"), "--outcome", "slow_point",
                                   "--delay-min", "300"])
    assert res.exit_code == 2 and "no network to show" in res.output and not (tmp_path / "f").exists()


def test_pca_axes_are_the_labels_axes():
    from zoo.explore.traces import pca_axes
    from zoo.labels import _pca2

    X = np.random.default_rng(0).normal(size=(300, 20)) * np.linspace(3, 0.1, 20)
    np.testing.assert_allclose(pca_axes(X), _pca2(X), atol=1e-9)


def test_card_links_the_explorer():
    from zoo.card import REPO_PLACEHOLDER, card_for_repo

    # the checkout's template (an editable install elsewhere would read its own)
    template = (VALIDATION.parents[2] / "dataset_cards" / "template.md").read_text()
    text = card_for_repo(template.replace("$repo_hint", REPO_PLACEHOLDER), "my-lab/zoo", "v1")
    assert 'zoo explore "my-lab/zoo@v1"' in text and "(explorer/index.html)" in text


def test_explorer_files_for_push(tmp_path, monkeypatch):
    from zoo.api import bundled_sample_path
    from zoo.explore import page

    files, note = page.explorer_files(bundled_sample_path(), tmp_path, load_as="my-lab/zoo@v1", per_cell=0, n_boot=0)
    assert "explorer included" in note and {"explorer/index.html", "explorer/data.js"} <= set(files)
    assert all(p.is_file() and tmp_path in p.parents for p in files.values())
    assert read_script(files["explorer/data.js"], "zooDataLoaded")["source_call"] == "'my-lab/zoo@v1'"
    monkeypatch.setattr(page, "PUSH_MAX_NETWORKS", 10)
    files, note = page.explorer_files(bundled_sample_path(), tmp_path / "big")
    assert files == {} and "68 networks > 10" in note
    assert page.explorer_files(bundled_sample_path(), tmp_path / "no", include=False)[0] == {}


def test_per_rate_intervals_reach_the_page():
    """A method that gives per-rate intervals (columns d0_lo_ms / d0_hi_ms) has them drawn as error bars."""
    from zoo.explore.tables import _fit_json

    rates = pd.DataFrame({"lr": [0.1, 0.01], "d0_ms": [50.0, 200.0], "d0_lo_ms": [40.0, 150.0],
                          "d0_hi_ms": [61.0, 260.0], "used": [True, True], "reason": ["", ""]})
    fit = analysis.ScalingFit("critical_delay", "nopost", 2.0, 1.0, (1.5, 2.5), "bootstrap", 0.95, 0.1,
                              (1.4, 2.6), 2, rates)
    got = _fit_json(fit)
    assert got["ok"] and got["beta"] == 2.0 and got["ci"] == [1.5, 2.5]
    assert [(r["lo"], r["value"], r["hi"]) for r in got["rates"]] == [(40.0, 50.0, 61.0), (150.0, 200.0, 260.0)]


def test_a_damaged_metadata_table_is_named(tmp_path):
    from zoo.errors import CorruptFileError, SourceNotFoundError

    bad = tmp_path / "networks.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(CorruptFileError, match="networks.parquet"):
        build_explorer(str(bad), tmp_path / "x")
    with pytest.raises(SourceNotFoundError, match="does not exist"):
        build_explorer(str(tmp_path / "missing.parquet"), tmp_path / "x")
    assert not (tmp_path / "x").exists()
