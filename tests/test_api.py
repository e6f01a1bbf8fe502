"""zoo.api (load_zoo, Zoo, Network) on the smoke zoo; and the same loader against a Hub release (olah)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import zoo.api as api
import zoo.hub_env as hub_env
import zoo.manifest as manifest
import zoo.store as store
from zoo import load_zoo
from zoo.cache import release_cache_dir
from zoo.errors import ChecksumMismatchError, InvalidChoiceError, NotCachedError, SourceNotFoundError
from zoo.labels import MECHANISMS
from zoo.manifest import manifest_key
from zoo.model import PARAM_NAMES, RNN, ModelConfig, param_shapes

SMOKE_DELAYS = (0, 40)
SMOKE_LRS = (0.1, 0.03)


# -- filters ------------------------------------------------------------------------------------------------
def test_filters(smoke_zoo):
    z = load_zoo(smoke_zoo)
    assert len(z) == 8 and set(z.metadata.delay_ms) == set(SMOKE_DELAYS)
    assert len(load_zoo(smoke_zoo, delay=40)) == 4
    assert len(load_zoo(smoke_zoo, delay=[0, 40])) == 8
    assert len(load_zoo(smoke_zoo, delay=(10, 100))) == 4  # inclusive range
    assert len(load_zoo(smoke_zoo, delay=(None, 0))) == 4
    assert len(load_zoo(smoke_zoo, lr=0.03, seed=1)) == 2
    assert len(load_zoo(smoke_zoo, lr=(0.05, 1.0), delay=0)) == 2
    assert len(load_zoo(smoke_zoo, family="nopost", seed=[0])) == 4
    learned = load_zoo(smoke_zoo, learned=True)
    assert len(learned) == int(z.metadata.learned.sum())
    assert learned.metadata.learned.all()
    for mech in MECHANISMS:  # mechanism splits the learned subset
        sub = load_zoo(smoke_zoo, mechanism=mech)
        assert set(sub.metadata.net_id) <= set(learned.metadata.net_id)
        assert (sub.metadata.mechanism == mech).all()
    n_mech = sum(len(load_zoo(smoke_zoo, mechanism=m)) for m in MECHANISMS)
    assert n_mech == len(learned)
    sub = z.filter(delay=40).filter(seed=0)
    assert len(sub) == 2 and set(sub.metadata.delay_ms) == {40}
    assert len(load_zoo(smoke_zoo, net_id=list(z.metadata.net_id[:3]))) == 3  # any column by name


def test_indexing_and_iteration(smoke_zoo):
    z = load_zoo(smoke_zoo, delay=40)
    nets = list(z)
    assert len(nets) == len(z) == 4
    assert [n.net_id for n in nets] == list(z.metadata.net_id)
    first = z[0]
    assert z[first.net_id].net_id == first.net_id and z[-1].net_id == nets[-1].net_id
    assert first.delay_ms == 40 and first.config.delay_ms == 40 and first.metadata["net_id"] == first.net_id
    assert "Network(" in repr(first) and "Zoo(4 networks" in repr(z)
    with pytest.raises(KeyError):
        z["no-such-net"]
    with pytest.raises(IndexError):
        z[4]


# -- networks ------------------------------------------------------------------------------------------------
def test_state_dict_names_and_shapes(smoke_zoo):
    net = load_zoo(smoke_zoo)[0]
    sd = net.state_dict()
    assert list(sd) == list(PARAM_NAMES)
    shapes = param_shapes(ModelConfig())
    for n in PARAM_NAMES:
        assert tuple(sd[n].shape) == shapes[n] and sd[n].dtype == torch.float32
    assert tuple(sd["W_in.weight"].shape) == (100, 2) and tuple(sd["W_out.weight"].shape) == (2, 100)
    model = RNN()
    model.load_state_dict(sd)  # the reference names load into a plain RNN


@pytest.mark.bitwise("rerun")
def test_model_matches_simulate(smoke_zoo):
    net = load_zoo(smoke_zoo, delay=40)[1]
    model = net.model()
    u = net.task.inputs()
    for kw in ({"noise": False, "random_init": False}, {"seed": 3}):
        sim = net.simulate(**kw)
        with torch.no_grad():
            out, rates = model(u, **kw)
        assert torch.equal(sim["outputs"], out) and torch.equal(sim["rates"], rates)
        assert torch.equal(sim["inputs"], u)
    T = net.task.n_steps
    sim = net.simulate(extend=9, seed=0)
    assert sim["inputs"].shape == (9 * T, 128, 2) and sim["outputs"].shape == (9 * T, 128, 2)
    assert sim["rates"].shape == (9 * T + 1, 128, 100) and sim["targets"].shape == (T, 128, 2)
    assert sim["time_ms"].shape == (9 * T,) and float(sim["time_ms"][1]) == 5.0
    two = net.simulate(trial_types=[0, 1], seed=0)
    assert two["outputs"].shape == (T, 2, 2)
    c = net.curves()
    assert list(c.columns) == ["loss", "accuracy", "reliability", "grad_norm"] and len(c) == net.epochs_run


def test_weights_are_lazy(smoke_zoo, monkeypatch):
    calls = []
    real = store.read_weights

    def counting(path, indices=None, **kw):
        calls.append(Path(path).name)
        return real(path, indices, **kw)

    monkeypatch.setattr(store, "read_weights", counting)
    z = load_zoo(smoke_zoo, delay=40, lr=0.1)
    z = z.filter(seed=0)
    assert len(z) == 1 and calls == []  # filtering read no weight file ...
    assert not any(r.startswith("weights/") for r in z.source._checked)  # ... nor hashed one
    z[0].state_dict()
    assert calls == ["nopost-d040-000.safetensors"]
    assert "weights/nopost/nopost-d040-000.safetensors" in z.source._checked


def test_stacked_weights_match_state_dicts(smoke_zoo):
    z = load_zoo(smoke_zoo, seed=1)  # rows from both shards
    w = z.weights()
    assert set(z.metadata.weights_file) == {f"weights/nopost/nopost-d{d:03d}-000.safetensors" for d in SMOKE_DELAYS}
    for n in PARAM_NAMES:
        assert w[n].shape == (len(z), *param_shapes(ModelConfig())[n])
    for i, net in enumerate(z):
        sd = net.state_dict()
        for n in PARAM_NAMES:
            assert torch.equal(w[n][i], sd[n])
    shuffled = api.Zoo(z.source, z.metadata.iloc[::-1], z.info).weights()
    assert torch.equal(shuffled["W_rec.weight"], w["W_rec.weight"].flip(0))


# -- errors -------------------------------------------------------------------------------------------------
def test_clear_errors(smoke_zoo, tmp_path):
    with pytest.raises(InvalidChoiceError) as e:
        load_zoo(smoke_zoo, mechanism="limitcycle")
    assert "'limit_cycle'" in str(e.value) and "'slow_point'" in str(e.value)
    assert e.value.choices == list(MECHANISMS)
    with pytest.raises(InvalidChoiceError) as e:
        load_zoo(smoke_zoo, delay=42)
    assert e.value.choices == list(SMOKE_DELAYS) and "not in this zoo" in str(e.value)
    with pytest.raises(InvalidChoiceError, match="0.03"):
        load_zoo(smoke_zoo, lr=0.5)
    with pytest.raises(InvalidChoiceError) as e:
        load_zoo(smoke_zoo, colour="red")
    assert "filter" in str(e.value) and "delay" in e.value.choices
    with pytest.raises(SourceNotFoundError):
        load_zoo(tmp_path / "missing")
    with pytest.raises(SourceNotFoundError, match="not a zoo release"):
        load_zoo(tmp_path)
    with pytest.raises(InvalidChoiceError, match="verify"):
        load_zoo(smoke_zoo, verify="sometimes")


# -- the release as files -----------------------------------------------------------------------------------
def test_load_dataset_reads_the_metadata(smoke_zoo, tmp_path):
    import datasets

    ds = datasets.load_dataset(str(smoke_zoo), cache_dir=str(tmp_path / "ds"))
    assert list(ds) == ["train"] and ds["train"].num_rows == 8
    assert {"net_id", "outcome", "weights_file"} <= set(ds["train"].column_names)


def test_manifest_verifies(smoke_zoo):
    checked = manifest.verify_folder(smoke_zoo)
    assert "metadata/networks.parquet" in checked and len(checked) == len(manifest.read_manifest(smoke_zoo))
    assert not any(p.startswith(".") for p in checked)  # build state and verification stamps are not listed


def test_corrupted_weights_detected(smoke_zoo, tmp_path):
    folder = tmp_path / "zoo"
    shutil.copytree(smoke_zoo, folder)
    rel = "weights/nopost/nopost-d040-000.safetensors"
    with open(folder / rel, "r+b") as f:
        f.seek(-7, os.SEEK_END)
        f.write(b"\x00\x01\x02")
    z = load_zoo(folder, delay=40)  # the metadata is fine ...
    with pytest.raises(ChecksumMismatchError) as e:  # ... the first weight read is not
        z[0].state_dict()
    assert rel in str(e.value)
    with pytest.raises(ChecksumMismatchError):
        load_zoo(folder, delay=40).weights()
    assert len(load_zoo(folder, delay=0).weights()["W_rec.weight"]) == 4  # the other shard is fine
    load_zoo(folder, delay=40, verify=False)[0].state_dict()  # explicit opt-out


def test_verification_stamps(smoke_zoo, tmp_path, monkeypatch, zoo_settings):
    """A shard is hashed once, then trusted while unchanged; verify="full" always re-hashes."""
    zoo_settings(cache_dir=tmp_path / "user-cache")
    folder = tmp_path / "zoo"
    shutil.copytree(smoke_zoo, folder)  # new inodes: stamps copied along do not apply
    hashed = []
    real = manifest.sha256_file

    def counting(path):
        hashed.append(Path(path).name)
        return real(path)

    real_bytes = manifest.sha256_bytes

    def counting_bytes(data):  # the metadata table and zoo.json: read once, hashed from those bytes
        hashed.append("networks.parquet" if data[:4] == b"PAR1" else "other")
        return real_bytes(data)

    monkeypatch.setattr(manifest, "sha256_file", counting)
    monkeypatch.setattr(manifest, "sha256_bytes", counting_bytes)
    shard = "nopost-d040-000.safetensors"
    load_zoo(folder, delay=40).weights()
    assert hashed.count(shard) == 1
    load_zoo(folder, delay=40).weights()  # another "process": stamp matches, no hashing
    assert hashed.count(shard) == 1
    load_zoo(folder, delay=40, verify="full").weights()
    assert hashed.count(shard) == 2
    assert hashed.count("networks.parquet") == 3  # the metadata is hashed at every open
    os.utime(folder / "weights" / "nopost" / shard)  # touched: hashed again
    load_zoo(folder, delay=40).weights()
    assert hashed.count(shard) == 3
    cache = release_cache_dir(manifest_key(folder))  # in the user cache, keyed by the manifest
    arrow = list(cache.glob("metadata-*.arrow"))  # the uncompressed copy of the verified table
    assert not (folder / ".cache").exists()
    assert len(arrow) == 1 and manifest.read_manifest(folder)["metadata/networks.parquet"][:16] in arrow[0].name
    n = hashed.count("networks.parquet")
    meta = load_zoo(folder, verify=False).metadata  # unchecked but unchanged: the copy is still used
    assert hashed.count("networks.parquet") == n
    assert meta.equals(store.read_table(folder / "metadata" / "networks.parquet"))


# -- the same loader against a Hub release ------------------------------------------------------------------
def _snapshot_files(cache: Path, repo_id: str) -> set[str]:
    snaps = cache / f"datasets--{repo_id.replace('/', '--')}" / "snapshots"
    return {p.relative_to(snap).as_posix() for snap in snaps.iterdir() for p in snap.rglob("*")
            if p.is_file() or p.is_symlink()}


@pytest.mark.hub
def test_load_zoo_from_hub(smoke_zoo, hub_server, monkeypatch, tmp_path):
    from hub_server import RequestRecorder

    from zoo import hub
    from zoo.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["push", str(smoke_zoo), "--repo", "org/smoke", "--revision", "v1", "--dry-run", "--no-explorer"])  # the release alone
    assert res.exit_code == 0, res.output
    files = hub.push(smoke_zoo, "org/smoke", dry_run=True)
    for f in files:
        assert f in res.output
    total = sum((smoke_zoo / f).stat().st_size for f in files)
    assert f"{len(files)} files" in res.output and f"{total:,d} bytes" in res.output
    assert not any(f.startswith(".") for f in files)
    commit = hub_server.add_dataset("org/smoke", smoke_zoo, files, tag="v1")

    z = load_zoo("org/smoke@v1", delay=40)
    assert len(z) == 4 and z.source.commit == commit
    cache = hub_env.hub_cache_dir()
    core = {"manifest.sha256", "zoo.json", "metadata/networks.parquet"}
    d40 = "weights/nopost/nopost-d040-000.safetensors"
    assert _snapshot_files(cache, "org/smoke") == core | {d40}  # only the delay-40 shard was downloaded
    w = z.weights()
    local = load_zoo(smoke_zoo, delay=40)
    assert list(local.metadata.net_id) == list(z.metadata.net_id)
    for n in PARAM_NAMES:
        assert torch.equal(w[n], local.weights()[n])
    assert torch.equal(z[0].simulate(seed=1)["outputs"], local[0].simulate(seed=1)["outputs"])

    with RequestRecorder() as rec:  # offline: same zoo from the cache, no request at all
        monkeypatch.setenv("HF_ENDPOINT", rec.endpoint)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        off = load_zoo("org/smoke@v1", delay=40)
        assert torch.equal(off.weights()["W_rec.weight"], w["W_rec.weight"])
        with pytest.raises(NotCachedError, match="zoo pull"):
            load_zoo("org/smoke@v1", delay=0)
        assert rec.requests == []
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    monkeypatch.delenv("HF_HUB_OFFLINE")

    out = tmp_path / "partial"
    res = runner.invoke(app, ["pull", "org/smoke@v1", "--delay", "0", "--lr", "0.1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    assert "2 of 8 networks" in flat and "weights/nopost/nopost-d000-000.safetensors" in flat
    # LICENSE, the phase diagram picture and the d000 weights and curves; the rest was cached (the card is
    # fetched too, outside the manifest)
    assert "downloaded now: 4 files" in flat
    assert (out / "README.md").is_file() and "README.md" not in manifest.read_manifest(out)
    assert manifest.verify_folder(out)
    part = load_zoo(out)
    assert part.info["partial"] is True and len(part) == 2 and set(part.metadata.delay_ms) == {0}
    ref = load_zoo(smoke_zoo, delay=0, lr=0.1)
    assert torch.equal(part.weights()["W_rec.weight"], ref.weights()["W_rec.weight"])
    assert np.array_equal(part[0].curves().to_numpy(), ref[0].curves().to_numpy())
    res = runner.invoke(app, ["pull", "org/smoke", "--revision", "v1"])  # everything, into the cache
    flat = " ".join(res.output.split())
    assert res.exit_code == 0, res.output
    assert "8 of 8 networks" in flat and "downloaded now: 1 files" in flat and "cache snapshot" in flat  # d040 curves
    assert _snapshot_files(cache, "org/smoke") == set(files)
    res = runner.invoke(app, ["pull", "org/smoke@v1", "--mechanism", "cycle"])
    assert res.exit_code == 2 and "invalid mechanism" in res.output and "Traceback" not in res.output
