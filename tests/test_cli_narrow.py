"""The CLI's tables and reports on an 80-column terminal: nothing wider than the terminal, net ids and numbers
never wrapped; a narrow terminal drops columns (saying which) or splits the outcome table instead."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

import zoo.cli as cli
from zoo.cli import report
from zoo.verify import NetCheck, VerifyReport

WIDTH = 80
NET_ID = re.compile(r"[a-z-]+-d\d{3}-[0-9a-f]{8}-s\d{3}")
runner = CliRunner()


@pytest.fixture(autouse=True)
def narrow_console(monkeypatch):
    monkeypatch.setattr(report, "console", Console(width=WIDTH, force_terminal=False, color_system=None))


def _invoke(*args):
    res = runner.invoke(cli.app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    too_wide = [ln for ln in res.output.splitlines() if len(ln.rstrip()) > WIDTH]
    assert not too_wide, too_wide
    return res.output


def _net_ids_whole(output: str, net_ids):
    for nid in net_ids:
        assert nid in output, f"{nid} is not on one line:\n{output}"


def test_ls_keeps_net_ids_whole_and_says_what_it_left_out(smoke_zoo):
    from zoo import load_zoo

    out = _invoke("ls", smoke_zoo)
    _net_ids_whole(out, load_zoo(smoke_zoo).metadata["net_id"])
    res = runner.invoke(cli.app, ["ls", str(smoke_zoo)], terminal_width=50)
    assert res.exit_code == 0


def test_verify_table_at_80_columns(monkeypatch):
    nids = ["nopost-narrow-d040-78509790-s000", "nopost-d100-c1953186-s002"]
    checks = [NetCheck(nids[0], 0.0, True, {"loss": 0.0}),
              NetCheck(nids[1], 3.2e-7, False, {"loss": 1.5e-6}, problems=["weights differ by 3.2e-07 > atol 0 "
                                                                            "in W_rec.weight and W_out.weight"])]
    rep = VerifyReport("a folder", 68, checks, atol=0.0, device="cpu", seconds=1.0)
    monkeypatch.setattr("zoo.verify.verify_zoo", lambda *a, **k: rep)
    monkeypatch.setattr("zoo.verify.expected_result", lambda *a, **k: ("bitwise", "built here with the C kernels"))
    res = runner.invoke(cli.app, ["verify", "--sample", "2"])
    assert res.exit_code == 1  # one mismatch
    assert all(len(ln.rstrip()) <= WIDTH for ln in res.output.splitlines()), res.output
    _net_ids_whole(res.output, nids)
    assert "MISMATCH" in res.output and "3.2e-07" in res.output


def test_plan_prints_numbers_whole():
    out = _invoke("plan", "--preset", "paper")
    for number in ("81,500", "463,654,740", "10.9 GB"):
        assert number in out, out
    assert "network-epochs" in out and "release size" in out


def _outcomes(n_lrs: int) -> pd.DataFrame:
    lrs = np.geomspace(0.316, 0.01, n_lrs)
    rows = [dict(family="nopost", delay_ms=d, lr=lr, outcome=o) for d in (0, 40, 200) for lr in lrs
            for o in ("slow_point", "limit_cycle", "no_learning", "unstable")]
    return pd.DataFrame(rows)


def test_outcome_table_split_over_several_tables_on_a_narrow_terminal():
    con = Console(width=WIDTH, force_terminal=False, color_system=None, record=True)
    df = _outcomes(14)
    report.print_outcomes(df, "outcomes", con)
    text = con.export_text()
    assert all(len(ln.rstrip()) <= WIDTH for ln in text.splitlines()), text
    for lr in sorted(df["lr"].unique()):
        assert f"lr {lr:.3g}" in text  # every learning rate is shown, whole
    assert text.count("1/1/1/1") == 14 * 3  # every cell, uncut
    assert "(1/" in text  # split into numbered parts
    wide = Console(width=400, force_terminal=False, color_system=None, record=True)
    report.print_outcomes(df, "outcomes", wide)
    assert "(1/" not in wide.export_text()  # one table where it fits


def test_fitted_table_drops_by_priority_never_the_kept():
    cols = [report.Column("net_id", keep=True), report.Column("a", priority=1), report.Column("bbbbbbbbbbbbbbb"),
            report.Column("note", text=True, keep=True)]
    rows = [["nopost-d040-01656889-s001", "1.25", "123456789012345", "some words that may wrap"]]
    _, dropped = report.fitted_table("t", cols, rows, Console(width=200))
    assert dropped == []
    _, dropped = report.fitted_table("t", cols, rows, Console(width=55))
    assert dropped == ["bbbbbbbbbbbbbbb"]  # lowest priority first
    table, dropped = report.fitted_table("t", cols, rows, Console(width=30))
    assert dropped == ["a", "bbbbbbbbbbbbbbb"]
    con = Console(width=30, record=True, force_terminal=False, color_system=None)
    con.print(table)
    assert "nopost-d040-01656889-s001" in con.export_text()  # wider than asked, but never cut
