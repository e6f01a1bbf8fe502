"""Stored snapshots (`zoo build --snapshots log`): epochs, shapes, lazy loading, resume, plan size, Hub pull."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import build_release
from typer.testing import CliRunner

from zoo import faults, load_zoo, store
from zoo.build import open_build
from zoo.cli import app
from zoo.errors import InvalidChoiceError, ZooError
from zoo.executors import run_local
from zoo.model import PARAM_NAMES, ModelConfig, init_state_dict
from zoo.plan import plan_build
from zoo.release import package_shards
from zoo.trajectories import log_epochs

EPOCHS = 12  # the smoke preset, shorter: epochs 0, 1, 2, 5, 10, 12 are stored


@pytest.fixture(scope="module")
def snap_zoo(tmp_path_factory) -> Path:
    return build_release(tmp_path_factory.mktemp("snap") / "zoo", "smoke", snapshots="log", epochs=EPOCHS)


def test_plan_counts_the_snapshots():
    plain, snap = plan_build("sample"), plan_build("sample", snapshots="log")
    a, b = plain.estimate_bytes(), snap.estimate_bytes()
    assert "snapshots" not in a and b["total"] == a["total"] + b["snapshots"]
    # 68 networks x 11 epochs (0, 1, 2, 5, ..., 500, 1000) x 42 KB: 11 x the final weights
    assert 10.9 * a["weights"] < b["snapshots"] < 11.1 * a["weights"]
    assert plain.fingerprint() != snap.fingerprint() and "snapshots" not in plain.fingerprint()
    with pytest.raises(InvalidChoiceError, match="'log'"):
        plan_build("sample", snapshots="linear")
    r = CliRunner().invoke(app, ["plan", "--preset", "sample", "--snapshots", "log"])
    assert r.exit_code == 0 and "snapshots" in r.output, r.output


def test_a_snapshot_build_is_reopened_with_its_snapshots(tmp_path):
    """`zoo label` / `zoo package` reopen a build from its plan.json: a --snapshots build keeps its snapshots
    (before, the reopened plan lost them and was refused as another plan); folders started before plan.json
    stored them are read from the fingerprint."""
    plan = plan_build("smoke", lrs=[0.1], delays=[0], seeds=1, epochs=2, snapshots="log")
    open_build(tmp_path / "z", plan)
    assert open_build(tmp_path / "z").plan.fingerprint() == plan.fingerprint()
    plan_file = tmp_path / "z" / ".build" / "plan.json"
    old = json.loads(plan_file.read_text())
    del old["snapshots"]
    plan_file.write_text(json.dumps(old))
    assert open_build(tmp_path / "z").plan.snapshots == "log"


@pytest.mark.bitwise("c")
def test_snapshot_release(snap_zoo, monkeypatch):
    z = load_zoo(snap_zoo)
    assert z.info["snapshots"] == "log" and "snapshots_file" in z.metadata
    files = sorted(p.relative_to(snap_zoo).as_posix() for p in (snap_zoo / "snapshots").rglob("*"))
    assert files == ["snapshots/nopost", "snapshots/nopost/nopost-d000-000.parquet",
                     "snapshots/nopost/nopost-d000-000.safetensors", "snapshots/nopost/nopost-d040-000.parquet",
                     "snapshots/nopost/nopost-d040-000.safetensors"]
    manifest = (snap_zoo / "manifest.sha256").read_text()
    assert "snapshots/nopost/nopost-d040-000.safetensors" in manifest

    calls = []
    real = store.read_weights
    monkeypatch.setattr(store, "read_weights", lambda p, i=None, **kw: calls.append((Path(p).parent.parent.name, i))
                        or real(p, i, **kw))
    net = z.filter(delay=40)[1]
    net.state_dict()
    assert [c[0] for c in calls] == ["weights"]  # loading the zoo and its weights reads no snapshot
    t = net.snapshots()
    assert calls[-1][0] == "snapshots" and len(calls[-1][1]) == len(log_epochs(EPOCHS))  # only this network's rows
    assert t.epochs.tolist() == log_epochs(int(net.epochs_run)) == [0, 1, 2, 5, 10, 12]
    assert t.origin == "snapshots" and t.status == "stored"
    for n in PARAM_NAMES:
        assert t.weights[n].shape == (6, *net.state_dict()[n].shape) and t.weights[n].dtype == torch.float32
        assert torch.equal(t.state_dict(EPOCHS)[n], net.state_dict()[n])
        assert torch.equal(t.state_dict(0)[n], init_state_dict(int(net.seed), ModelConfig())[n])
    # the stored epochs are the retrained ones (and the training was that of a build without snapshots)
    r = net.retrain(epochs=[5, 10, "final"])
    assert all(torch.equal(r.state_dict(e)[n], t.state_dict(e)[n]) for e in (5, 10, 12) for n in PARAM_NAMES)
    with pytest.raises(ZooError, match="no snapshots"):
        load_zoo()[0].snapshots()  # the bundled sample stores none
    assert set(z.fetch(snapshots=True)) >= {"snapshots/nopost/nopost-d040-000.safetensors",
                                            "snapshots/nopost/nopost-d040-000.parquet"}


@pytest.mark.slow
@pytest.mark.bitwise("c")
def test_resumed_build_stores_the_same_snapshots(snap_zoo, tmp_path):
    """Killed (here: an exception) after its first chunk, the build resumes from the chunk's saved snapshots."""
    plan = plan_build("smoke", snapshots="log", epochs=EPOCHS)
    b = open_build(tmp_path / "zoo", plan)

    def boom(point, before_kill=None):
        if point == "chunk-written":
            raise RuntimeError("killed")

    with faults.installed(boom), pytest.raises(RuntimeError, match="killed"):
        run_local(b, plan.shards[:1], batch_size=2)
    work = tmp_path / "zoo" / ".build" / "work" / plan.shards[0].shard_id
    assert (work / "chunk-00000.snapshots").exists()
    assert json.loads((work / "chunk-00000.json").read_text())["snapshots"]["epochs"][0] == log_epochs(EPOCHS)
    run_local(b, plan.shards, batch_size=2)
    package_shards(b)
    for rel in ("snapshots/nopost/nopost-d000-000.safetensors", "snapshots/nopost/nopost-d040-000.safetensors"):
        w1, w2 = store.read_weights(snap_zoo / rel), store.read_weights(tmp_path / "zoo" / rel)
        assert all(torch.equal(w1[n], w2[n]) for n in PARAM_NAMES)
        t1 = store.read_table(snap_zoo / rel.replace(".safetensors", ".parquet"))
        assert t1.equals(store.read_table(tmp_path / "zoo" / rel.replace(".safetensors", ".parquet")))
    # a damaged snapshot shard is found by the done marker
    shutil.copyfile(tmp_path / "zoo" / "snapshots/nopost/nopost-d000-000.parquet",
                    tmp_path / "zoo" / "snapshots/nopost/nopost-d000-000.safetensors")
    assert "checksum" in b.marker_problem(plan.shards[0])


@pytest.mark.hub
def test_hub_fetches_snapshots_only_when_asked(snap_zoo, hub_server, tmp_path):
    from zoo import hub

    files = hub.push(snap_zoo, "zoo-test/snap", dry_run=True)
    assert any(f.startswith("snapshots/") for f in files)
    hub_server.add_dataset("zoo-test/snap", snap_zoo, files, tag="v1.0")
    z = load_zoo("zoo-test/snap@v1.0", delay=40)  # fetches the selected weight shards
    root = z.source.root
    assert (root / z.metadata["weights_file"].iloc[0]).exists()
    assert not (root / "snapshots").exists()
    out = hub.pull("zoo-test/snap@v1.0", out=tmp_path / "plain", net_ids=list(z.metadata["net_id"][:1]))
    assert not (out / "snapshots").exists() and not (root / "snapshots").exists()
    t = z[0].snapshots()  # downloads only that network's snapshot shard and table, on first use
    assert sorted(p.name for p in (root / "snapshots" / "nopost").iterdir()) == [
        "nopost-d040-000.parquet", "nopost-d040-000.safetensors"]
    assert t.epochs.tolist() == log_epochs(EPOCHS)
    out = hub.pull("zoo-test/snap@v1.0", out=tmp_path / "snaps", net_ids=list(z.metadata["net_id"][:1]),
                   snapshots=True)
    t2 = load_zoo(out)[0].snapshots()
    assert all(torch.equal(t.weights[n], t2.weights[n]) for n in PARAM_NAMES)
