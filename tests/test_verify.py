"""`zoo verify`: retrain sampled networks from their recorded config and compare weights, curves and labels."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from zoo import layout, store
from zoo.cli import app
from zoo.errors import InvalidChoiceError
from zoo.manifest import verify_folder, write_manifest
from zoo.verify import compare_releases, verify_zoo

runner = CliRunner()


@pytest.mark.bitwise("c")
def test_a_sound_zoo_verifies(smoke_zoo):
    rep = verify_zoo(smoke_zoo, sample=2, seed=1)
    print("\n" + rep.table().to_string())
    assert rep.ok, rep.summary()
    assert len(rep.checks) == 2 and rep.n_networks == 8
    assert all(c.weights_bitwise and c.weights_max_abs_diff == 0.0 for c in rep.checks)
    assert all(v == 0.0 for c in rep.checks for v in c.curves_max_abs_diff.values())
    assert all(c.labels_checked and not c.label_diffs for c in rep.checks)
    assert "all match" in rep.summary()
    with pytest.raises(InvalidChoiceError):
        verify_zoo(smoke_zoo, net_ids=["no-such-network"])


@pytest.mark.bitwise("c")
def test_cli_verify_passes(smoke_zoo):
    r = runner.invoke(app, ["verify", str(smoke_zoo), "--sample", "1", "--seed", "3"])
    assert r.exit_code == 0, r.output
    assert "OK" in r.output and "all match" in r.output


def test_tampered_weight_with_fixed_manifest_is_caught(smoke_zoo, tmp_path):
    """One weight changed in a shard, manifest rewritten so every checksum passes: retraining catches it."""
    z = tmp_path / "zoo"
    shutil.copytree(smoke_zoo, z)
    meta = store.read_table(z / layout.METADATA_PATH)
    row = meta.iloc[5]
    wf = z / row["weights_file"]
    ids = store.read_weight_ids(wf)
    w = store.read_weights(wf)
    w["W_rec.weight"][int(row["weights_index"]), 3, 7] += 1e-3
    store.write_weights(wf, w, ids)
    # and a label of another network changed (e.g. a hand-edited metadata table)
    other = meta.iloc[0]["net_id"]
    meta.loc[0, "first_learned_epoch"] = 3
    store.write_table(z / layout.METADATA_PATH, meta)
    write_manifest(z)
    verify_folder(z)  # the checksums cannot tell

    rep = verify_zoo(z, net_ids=[row["net_id"], other])
    assert not rep.ok
    bad = {c.net_id: c for c in rep.mismatches}
    assert set(bad) == {row["net_id"], other}
    assert not bad[row["net_id"]].weights_bitwise
    assert bad[row["net_id"]].weights_max_abs_diff == pytest.approx(1e-3, rel=1e-3)
    assert "weights differ" in bad[row["net_id"]].problems[0]
    assert bad[other].weights_bitwise and "first_learned_epoch" in bad[other].label_diffs
    assert "MISMATCH" in rep.summary()

    r = runner.invoke(app, ["verify", str(z), "--net-id", row["net_id"]])
    assert r.exit_code == 1
    assert "MISMATCH" in r.output and "weights differ" in r.output and row["net_id"] in r.output
    # a tolerance larger than the change accepts it (reported max |diff| stays visible)
    loose = verify_zoo(z, net_ids=[row["net_id"]], atol=1.0)
    assert loose.checks[0].weights_max_abs_diff == pytest.approx(1e-3, rel=1e-3)


def test_compare_releases(smoke_zoo, tmp_path):
    z = tmp_path / "zoo"
    shutil.copytree(smoke_zoo, z)
    assert compare_releases(z, smoke_zoo) == []
    meta = store.read_table(z / layout.METADATA_PATH)
    wf = z / meta.iloc[0]["weights_file"]
    w = store.read_weights(wf)
    w["W_out.bias"][0, 0] = torch.nextafter(w["W_out.bias"][0, 0], torch.tensor(1.0))  # one ulp
    store.write_weights(wf, w, store.read_weight_ids(wf))
    assert compare_releases(z, smoke_zoo) == [f"{meta.iloc[0]['weights_file']}: weights differ"]
    json.loads((z / layout.INFO_PATH).read_text())  # zoo.json untouched and not compared


@pytest.mark.slow
@pytest.mark.bitwise("c")
def test_bundled_sample_retrains_bitwise():
    """The bundled sample zoo was built with the C kernels (GCC 12) and their own matrix products, whose sums
    have one fixed order: on any x86-64 CPU with AVX2 + FMA a network of it retrains to the same bits, labels
    included (a 40 ms limit-cycle network and a 40 ms slow-point one, 1000 epochs each). Another compiler may
    fuse multiply-adds elsewhere (other bits), so this runs only with GCC-built kernels."""
    from zoo import kernels

    info = kernels.c_backend_info()
    if kernels.backend_for(torch.empty(1)) != "c" or kernels.c_gemm() != "own":
        pytest.skip(f"needs the C kernels with their own matrix products (here: {info})")
    if "clang" in (info["compiler"] or "clang").lower():
        pytest.skip(f"the C kernels were not built by GCC: {info['compiler']}")
    rep = verify_zoo(None, net_ids=["nopost-d040-01656889-s001", "nopost-d040-04327897-s003"])
    assert rep.ok, rep.summary()
    assert all(c.weights_bitwise and c.labels_checked for c in rep.checks)


@pytest.mark.slow
@pytest.mark.bitwise("c")
def test_validation_networks_retrain_to_their_recorded_values():
    """The committed validation zoo (docs/validation/networks.parquet, 1,232 networks; its weights are not in the
    repository) records each network's configuration, final curve values and labels: two of its networks
    trained with our own products retrain from the recorded configuration to the same final loss, accuracy,
    reliability and epoch count, bit for bit, and to the same labels (psd_ratio within zoo verify's 1e-9), each
    scored as the table records (``scoring_of``)."""
    from pathlib import Path

    import pandas as pd

    from zoo.config import NetConfig
    from zoo.metadata import label_frame
    from zoo.provenance import scoring_of
    from zoo.train import train_networks

    recorded = pd.read_parquet(Path(__file__).parents[1] / "docs" / "validation" / "networks.parquet")
    rows = recorded.set_index("net_id").loc[["nopost-d000-fc407fe6-s005", "nopost-d000-e452d9a5-s002"]]
    assert (rows["c_gemm"] == "own").all()  # trained with our own products: the same bits on every CPU
    configs = [NetConfig.from_dict(json.loads(c)) for c in rows["config"]]
    assert [c.net_id for c in configs] == rows.index.tolist()
    res = train_networks(configs, scoring=scoring_of(rows))
    assert res.epochs_run.tolist() == rows["epochs_run"].tolist()
    for name in ("loss", "accuracy", "reliability"):
        assert [float(c[-1]) for c in res.curves[name]] == rows[f"final_{name}"].tolist(), name
    labelled = label_frame(rows.reset_index()[["net_id", "config"]], res.weights, res.curves["accuracy"],
                           res.curves["reliability"])
    for col in ("outcome", "mechanism", "learned", "stable", "first_learned_epoch"):
        assert labelled[col].tolist() == rows[col].tolist(), col
    assert (labelled["psd_ratio"] - rows["psd_ratio"].to_numpy()).abs().max() <= 1e-9
