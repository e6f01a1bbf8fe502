"""Issue 13: build provenance in zoo.json and per network; `zoo info` shows it; `zoo verify` states what to
expect; the import report prints full folder paths at 80 columns."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

import zoo.cli as cli
from zoo import load_zoo, provenance
from zoo.cli import app
from zoo.store import read_info

runner = CliRunner()
ENV_KEYS = {"package", "version", "python", "torch", "numpy", "platform", "device", "device_name", "kernels",
            "c_gemm", "c_compiler", "openmp", "triton", "tf32", "date", "command"}


def test_zoo_json_records_the_build(smoke_zoo):
    prov = read_info(smoke_zoo)["provenance"]
    assert ENV_KEYS <= set(prov), ENV_KEYS - set(prov)
    assert prov["torch"] == torch.__version__ and prov["device"] == "cpu" and prov["device_name"]
    assert "git_commit" in prov  # built from this checkout
    (train,) = prov["training"]  # one machine trained both shards
    assert train["shards"] == 2 and ENV_KEYS <= set(train)
    meta = load_zoo(smoke_zoo).metadata
    assert set(provenance.NETWORK_COLUMNS) <= set(meta.columns)
    assert set(meta["train_device"]) == {"cpu"} and meta["train_backend"].nunique() == 1
    assert prov["networks"] == {f"cpu / {meta['train_backend'].iloc[0]} / {meta['c_gemm'].iloc[0]}": 8}


def test_info_shows_the_provenance(smoke_zoo, monkeypatch):
    monkeypatch.setattr(cli.report, "console", Console(width=100, force_terminal=False, color_system=None))
    res = runner.invoke(app, ["info", str(smoke_zoo)])
    assert res.exit_code == 0, res.output
    assert "packaged with: rnn-stm-zoo" in res.output and "trained: 2 shard(s) on cpu" in res.output
    assert "networks: 8 trained on cpu" in res.output


def test_verify_expectation_from_provenance(smoke_zoo):
    meta = load_zoo(smoke_zoo).metadata
    info = read_info(smoke_zoo)
    here_ok, _ = __import__("zoo.provenance", fromlist=["x"]).local_bitwise_capable(torch.device("cpu"))
    kind, why = provenance.expectation(meta, info, "cpu")
    assert kind == ("bitwise" if here_ok else "close"), why
    gpu = meta.assign(train_device="cuda", train_backend="triton")
    kind, why = provenance.expectation(gpu, info, "cpu")
    assert kind == "close" and ("cuda" in why or "CPU" in why)
    mixed = pd.concat([meta.iloc[:4], gpu.iloc[4:]])
    if here_ok:
        assert provenance.expectation(mixed, info, "cpu")[0] == "mixed"


@pytest.mark.slow
def test_verify_states_the_expectation_first(smoke_zoo, monkeypatch):
    monkeypatch.setattr(cli.report, "console", Console(width=120, force_terminal=False, color_system=None))
    res = runner.invoke(app, ["verify", str(smoke_zoo), "--sample", "1"])
    assert res.output.startswith("expected here: "), res.output


def test_import_report_prints_full_paths_at_80_columns(tmp_path, monkeypatch):
    """The failing folder's whole relative path is printed (wrapped by the terminal, never cut)."""
    import test_reference as tr

    root = tmp_path / "results"
    lr = repr(0.07196856730011521)
    tr._write_net(root, repr(tr.LR0), repr(0.02), 0, state=tr._state(0, 1), curves=tr._curves("learned", 1000, 0),
                  cls=2, psd=0.7)
    for seed in (1, 2, 3):  # siblings that differ only at the end of a long name
        tr._write_net(root, lr, repr(0.02), seed, curves=tr._curves("none", 1000, seed), cls=0)  # no weights
    monkeypatch.setattr(cli.report, "console", Console(width=80, force_terminal=False, color_system=None))
    res = runner.invoke(app, ["import-reference", str(root), "--family", "nopost", "--out", str(tmp_path / "z"),
                              "--no-label"])
    assert res.exit_code == 0, res.output
    for seed in (1, 2, 3):
        assert f"lr{lr}_delay_{0.02!r}/process_{seed}" in res.output
    assert "…" not in res.output
    info = json.loads((tmp_path / "z" / "zoo.json").read_text())
    assert len(info["import_problems"]) == 3


def test_summary_of_a_build_with_shards_that_recorded_no_provenance():
    """Shards trained before provenance was recorded (or by an older version) have no per-network columns:
    packaging counts them as unrecorded instead of failing (seen on a resumed build)."""
    import numpy as np
    import pandas as pd

    from zoo.provenance import summarize

    meta = pd.DataFrame({"train_device": ["cpu", None, np.nan], "train_backend": ["c", None, np.nan],
                         "c_gemm": ["own", None, np.nan]})
    out = summarize({"device": "cpu"}, [None, {"device": "cpu", "date": "2026-12-02"}], meta)
    assert out["networks"] == {"cpu / c / own": 1, "unrecorded / unrecorded / unrecorded": 2}
    assert out["training_unrecorded_shards"] == 1
