"""`zoo train`, `zoo label` and `zoo package` as separate stages give the release `zoo build` gives; `zoo label`
relabels a packaged release in place (issue 13, point 9)."""

from __future__ import annotations

from rich.console import Console
from typer.testing import CliRunner

import zoo.cli as cli
from zoo import layout, store
from zoo.cli import app
from zoo.manifest import verify_folder
from zoo.verify import compare_releases

ARGS = ["--preset", "smoke", "--lr", "0.1", "--delay", "0", "--delay", "40", "--seeds", "2", "--epochs", "4",
        "--shard-size", "2", "--batch-size", "1"]
runner = CliRunner()


def test_train_label_package_equals_build(tmp_path, monkeypatch, one_thread):
    monkeypatch.setattr(cli.report, "console", Console(width=200, force_terminal=False, color_system=None))
    whole, staged = tmp_path / "whole", tmp_path / "staged"
    res = runner.invoke(app, ["build", *ARGS, "--out", str(whole)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["train", *ARGS, "--out", str(staged)])
    assert res.exit_code == 0, res.output
    assert not (staged / layout.METADATA_PATH).exists()
    res = runner.invoke(app, ["package", str(staged)])  # trained but not labelled: a clear refusal
    assert res.exit_code == 2 and "zoo label" in res.output
    res = runner.invoke(app, ["label", str(staged)])
    assert res.exit_code == 0 and "labelled 2 shard(s)" in res.output, res.output
    res = runner.invoke(app, ["package", str(staged)])
    assert res.exit_code == 0, res.output
    assert verify_folder(staged)
    assert compare_releases(staged, whole) == []

    before = store.read_table(whole / layout.METADATA_PATH)
    res = runner.invoke(app, ["label", str(whole)])  # a packaged release: relabelled in place, same labels
    assert res.exit_code == 0 and "relabelled 4 networks" in res.output, res.output
    assert verify_folder(whole)
    after = store.read_table(whole / layout.METADATA_PATH)
    assert after[["net_id", "outcome", "mechanism"]].equals(before[["net_id", "outcome", "mechanism"]])
    res = runner.invoke(app, ["label", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "neither a build folder nor a zoo release" in res.output
