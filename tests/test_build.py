"""Sharded, resumable builds: plans, --shard I/N, resume, packaging (complete / partial), size estimate, SLURM scripts."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import zoo.shard_build
from zoo import layout, store
from zoo.build import open_build, run_build
from zoo.cli import app
from zoo.errors import InvalidChoiceError, MissingShardsError, ZooError
from zoo.executors import run_local, shard_batches
from zoo.manifest import verify_folder
from zoo.plan import plan_build
from zoo.release import package_shards
from zoo.shard_build import build_shards
from zoo.train import train_networks
from zoo.verify import compare_releases

REPO = Path(__file__).resolve().parents[1]
# 4 networks (2 delays x 2 seeds, one lr), 3 epochs, one network per shard: 4 shards
TINY = dict(lrs=[0.1], delays=[0, 40], seeds=2, epochs=3, shard_size=1)
TINY_ARGS = ["--preset", "smoke", "--lr", "0.1", "--delay", "0", "--delay", "40", "--seeds", "2", "--epochs", "3",
             "--shard-size", "1"]
runner = CliRunner()


def cli(*args: str) -> tuple[int, str]:
    r = runner.invoke(app, list(args))
    return r.exit_code, r.output


def assert_same_release(a: Path, b: Path) -> None:
    """Same metadata rows, bitwise equal weight tensors (and headers), equal curves; both verify."""
    verify_folder(a)
    verify_folder(b)
    pd.testing.assert_frame_equal(store.read_table(a / layout.METADATA_PATH), store.read_table(b / layout.METADATA_PATH))
    assert compare_releases(a, b) == []


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    """The TINY plan built by one process, in one go (the reference for sharded and resumed builds)."""
    out = tmp_path_factory.mktemp("single") / "zoo"
    run_build(plan_build("smoke", **TINY), out)
    return out


# ---------------------------------------------------------------- plans and shard selection
def test_plan_is_deterministic_and_shard_spec_partitions():
    plan = plan_build("smoke", **TINY)
    assert plan.fingerprint() == plan_build("smoke", **TINY).fingerprint()
    assert [len(s) for s in plan.shards] == [1, 1, 1, 1]
    ids = [s.shard_id for s in plan.shards]
    for n in range(1, 7):  # any number of workers: every shard exactly once, the shards themselves unchanged
        parts = [[s.shard_id for s in plan.select(f"{i}/{n}")] for i in range(n)]
        assert sorted(sum(parts, [])) == sorted(ids)
        assert len(set(sum(parts, []))) == len(ids)
    assert plan.select(None) == list(plan.shards)
    assert plan.select(ids[2]) == [plan.shards[2]]
    for bad in ("4/4", "-1/2", "a/b", "1/0", "no-such-shard"):
        with pytest.raises(InvalidChoiceError):
            plan.select(bad)
    # the shard contents depend on the preset and shard size only
    big = plan_build("smoke", **{**TINY, "shard_size": 512})
    assert [c.net_id for c in big.configs] == [c.net_id for c in plan.configs]


def test_plan_mismatch_in_same_folder_is_a_clear_error(tmp_path):
    open_build(tmp_path / "z", plan_build("smoke", **TINY))
    with pytest.raises(ZooError, match="different build.*epochs"):
        open_build(tmp_path / "z", plan_build("smoke", **{**TINY, "epochs": 4}))
    with pytest.raises(ZooError, match="different build"):
        open_build(tmp_path / "z", plan_build("smoke", **{**TINY, "shard_size": 2}))
    open_build(tmp_path / "z", plan_build("smoke", **TINY))  # the same plan again is fine
    assert open_build(tmp_path / "z").plan.fingerprint() == plan_build("smoke", **TINY).fingerprint()
    code, out = cli("build", *TINY_ARGS[:-2], "--shard-size", "2", "--out", str(tmp_path / "z"))
    assert code == 2 and "different build" in out
    with pytest.raises(ZooError, match="no build plan"):
        open_build(tmp_path / "empty")


def test_zoo_plan_json_matches_library():
    code, out = cli("plan", *TINY_ARGS, "--json")
    assert code == 0, out
    d = json.loads(out)
    plan = plan_build("smoke", **TINY)
    assert d["n_shards"] == len(plan.shards) == 4
    assert d["n_networks"] == 4 and d["network_epochs"] == 12
    assert d["estimate_bytes"] == plan.estimate_bytes()
    assert [s["shard_id"] for s in d["shards"]] == [s.shard_id for s in plan.shards]
    code, out = cli("plan", "--preset", "smoke")
    assert code == 0 and "2 shards" in out and "release size" in out


# ---------------------------------------------------------------- resume
class Crash(Exception):
    pass


@pytest.mark.bitwise("c")
def test_resume_after_partial_chunks_trains_only_the_rest(tmp_path, monkeypatch):
    """A shard of 3 networks in chunks of 1: crash after 2 chunks, resume trains only the 3rd network."""
    plan = plan_build("smoke", lrs=[0.1], delays=[0], seeds=3, epochs=3)
    (shard,) = plan.shards
    trained: list[str] = []

    def counting(configs, crash_after=None, **kw):
        if crash_after is not None and len(trained) >= crash_after:
            raise Crash("killed")
        trained.extend(c.net_id for c in configs)
        return train_networks(configs, **kw)

    b = open_build(tmp_path / "z", plan)
    monkeypatch.setattr(zoo.shard_build, "train_networks", lambda cfgs, **kw: counting(cfgs, crash_after=2, **kw))
    with pytest.raises(Crash):
        build_shards(b, [shard], batch_size=1)
    assert len(trained) == 2 and b.status() == {shard.shard_id: "partial"}
    assert not list((b.state / "claims").iterdir())  # the claim is released on the way out

    monkeypatch.setattr(zoo.shard_build, "train_networks", lambda cfgs, **kw: counting(cfgs, **kw))
    epochs = []
    states = build_shards(open_build(tmp_path / "z"), [shard], batch_size=1, progress=epochs.append)
    assert states[shard.shard_id] == "built"
    assert trained == shard.net_ids  # each network trained exactly once over both runs
    assert sum(epochs) == 9  # saved chunks count as done network-epochs
    assert b.status() == {shard.shard_id: "done"}
    assert build_shards(b, [shard])[shard.shard_id] == "done" and len(trained) == 3  # a third run trains nothing

    ref = train_networks(shard.configs)  # batch invariance: same bits as one uninterrupted batch
    w = store.read_weights(tmp_path / "z" / layout.weights_path("nopost", shard.shard_id))
    for n, t in ref.weights.items():
        assert bool((w[n] == t.float()).all()), n


@pytest.mark.bitwise("c")
def test_package_refuses_missing_then_partial_then_complete(tmp_path, single):
    """CLI: --shard I/N parts, `zoo package` refusing / --partial / complete; identical to a single build."""
    out = tmp_path / "z"
    code, text = cli("build", *TINY_ARGS, "--out", str(out), "--shard", "0/3", "--device", "auto")  # shards 0, 3
    assert code == 0, text
    b = open_build(out)
    st = b.status()
    assert sorted(st.values()) == ["done", "done", "todo", "todo"]
    missing = sorted(k for k, v in st.items() if v != "done")

    with pytest.raises(MissingShardsError) as err:
        package_shards(b)
    assert sorted(err.value.missing) == missing
    code, text = cli("package", str(out))
    assert code == 2 and all(m in text for m in missing) and "--partial" in text

    code, text = cli("package", str(out), "--partial")
    assert code == 0, text
    info = store.read_info(out)
    assert info["partial"] is True and sorted(info["missing_shards"]) == missing and info["n_networks"] == 2
    assert "partial: some shards" in (out / layout.CARD_PATH).read_text()
    verify_folder(out)
    meta = store.read_table(out / layout.METADATA_PATH)
    assert len(meta) == 2 and not any(m in set(meta["weights_file"].str.split("/").str[-1]) for m in missing)
    assert not any(m in p.name for p in (out / "weights").rglob("*") for m in missing)

    for i in (1, 2):
        code, text = cli("build", *TINY_ARGS, "--out", str(out), "--shard", f"{i}/3")
        assert code == 0, text
    code, text = cli("package", str(out))
    assert code == 0, text
    info = store.read_info(out)
    assert info["partial"] is False and info["missing_shards"] == [] and info["n_networks"] == 4
    assert "partial: some shards" not in (out / layout.CARD_PATH).read_text()
    assert_same_release(out, single)


# ---------------------------------------------------------------- shards trained together (GPU builds)
def _ids(groups):
    return [[s.shard_id for s in g] for g in groups]


def test_shard_batches_group_consecutive_shards_of_one_shape(tmp_path):
    plan = plan_build("smoke", **TINY)  # 4 shards of 1 network: 2 at delay 0, 2 at delay 40
    assert _ids(shard_batches(plan.shards)) == [[s.shard_id] for s in plan.shards]  # CPU: one by one
    both = _ids(shard_batches(plan.shards, combine=True))
    assert both == [[s.shard_id for s in plan.shards[:2]], [s.shard_id for s in plan.shards[2:]]]
    for g in shard_batches(plan.shards, combine=True):
        assert len({s.configs[0].batch_key() for s in g}) == 1  # one trial shape per batch
    assert _ids(shard_batches(plan.shards, batch_size=1, combine=True)) == [[s.shard_id] for s in plan.shards]
    with pytest.raises(ValueError, match="trial shape"):
        build_shards(open_build(tmp_path / "z", plan), plan.shards)  # delays 0 and 40 cannot share a batch


@pytest.mark.bitwise("c")
def test_combined_shards_resume_locks_and_same_release(tmp_path, single, monkeypatch):
    """Shards trained together: a done one is skipped, a locked one left alone, the others trained in one
    batch; the release is bitwise the one built shard by shard."""
    plan = plan_build("smoke", **TINY)
    s0, s1, s2, s3 = plan.shards
    b = open_build(tmp_path / "z", plan)
    assert build_shards(b, [s0])[s0.shard_id] == "built"
    batches: list[list[str]] = []

    def counting(configs, **kw):
        batches.append([c.net_id for c in configs])
        return train_networks(configs, **kw)

    monkeypatch.setattr(zoo.shard_build, "train_networks", counting)
    held = b.claim(s3.shard_id)  # another worker holds s3
    try:
        states = run_local(b, plan.shards, combine=True)
    finally:
        held.release()
    assert states == {s0.shard_id: "done", s1.shard_id: "built", s2.shard_id: "built", s3.shard_id: "locked"}
    assert batches == [s1.net_ids, s2.net_ids]  # s2 trained without its locked partner
    assert run_local(b, plan.shards, combine=True)[s3.shard_id] == "built"
    assert batches[-1] == s3.net_ids
    package_shards(b)
    assert_same_release(b.out, single)


COMBINED_WORKER = """
import sys
from zoo.build import open_build
from zoo.plan import plan_build
from zoo.executors import run_local
plan = plan_build("smoke", lrs=[0.1], delays=[0], seeds=3, epochs=3, shard_size=1)
run_local(open_build(sys.argv[1], plan), plan.shards, combine=True)
"""


@pytest.mark.slow
@pytest.mark.bitwise("c")
def test_combined_batch_killed_between_shards_loses_nothing(tmp_path, monkeypatch):
    """SIGKILL after the first shard's part of a combined batch was saved: the resume keeps that shard's
    networks, trains only the other two, and the result is bitwise that of an uninterrupted build."""
    out = tmp_path / "z"
    env = {**os.environ, "ZOO_FAULT_POINT": "chunk-written:1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", COMBINED_WORKER, str(out)], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == -9, r.stderr
    plan = plan_build("smoke", lrs=[0.1], delays=[0], seeds=3, epochs=3, shard_size=1)
    b = open_build(out, plan)
    assert sorted(b.status().values()) == ["partial", "todo", "todo"]
    trained: list[str] = []

    def counting(configs, **kw):
        trained.extend(c.net_id for c in configs)
        return train_networks(configs, **kw)

    monkeypatch.setattr(zoo.shard_build, "train_networks", counting)
    assert set(run_local(b, plan.shards, combine=True).values()) == {"built"}
    assert trained == [c.net_id for s in plan.shards[1:] for c in s.configs]
    ref = train_networks([s.configs[0] for s in plan.shards])
    for i, s in enumerate(plan.shards):
        w = store.read_weights(out / layout.weights_path(s.family, s.shard_id))
        assert all(torch.equal(w[n][0], ref.weights[n][i].float()) for n in w), s.shard_id


# ---------------------------------------------------------------- size estimate
def test_estimate_bytes_matches_the_smoke_release(smoke_zoo):
    actual = sum(p.stat().st_size for p in smoke_zoo.rglob("*")
                 if p.is_file() and not p.relative_to(smoke_zoo).parts[0].startswith("."))
    est = plan_build("smoke").estimate_bytes()
    print(f"\nsmoke release: estimated {est['total']} bytes, actual {actual} bytes")
    assert 0.5 <= est["total"] / actual <= 2.0
    assert est["total"] >= est["weights"] + est["curves"] + est["metadata"]
    weights = sum(p.stat().st_size for p in (smoke_zoo / "weights").rglob("*.safetensors"))
    assert 0.9 <= est["weights"] / weights <= 1.1
    # the CLI says it before building
    code, text = cli("plan", "--preset", "smoke", "--json")
    assert json.loads(text)["estimate_bytes"]["total"] == est["total"]


# ---------------------------------------------------------------- SLURM scripts (no SLURM: fake sbatch / env)
FAKE_SBATCH = """#!/usr/bin/env bash
# records its arguments; prints a job id like `sbatch --parsable`
echo "$*" >> "{log}"
n=$(wc -l < "{log}")
echo "$((1000 + n))"
"""


@pytest.mark.slow
@pytest.mark.bitwise("c")
def test_slurm_scripts_build_a_complete_release(tmp_path, single):
    env = {**os.environ, "ZOO": f"{sys.executable} -m zoo.cli"}
    bindir = tmp_path / "bin"
    bindir.mkdir()

    def script(name: str, text: str) -> Path:
        p = bindir / name
        p.write_text(text)
        p.chmod(p.stat().st_mode | stat.S_IEXEC)
        return p

    # submit.sh: the array size comes from `zoo plan --json`, packaging depends on the array (afterok)
    log = tmp_path / "sbatch.log"
    fake_sbatch = script("sbatch", FAKE_SBATCH.format(log=log))
    out = tmp_path / "z"
    r = subprocess.run(["bash", str(REPO / "build/slurm/submit.sh"), "--out", str(out), *TINY_ARGS],
                       env={**env, "SBATCH": str(fake_sbatch)}, cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    code, text = cli("plan", *TINY_ARGS, "--json")
    n_shards = json.loads(text)["n_shards"]
    array, package = log.read_text().splitlines()
    assert f"--array=0-{n_shards - 1} " in array and "zoo-array.sbatch" in array and f"--out {out}" in array
    assert "--dependency=afterok:1001" in package and package.endswith(f"zoo-package.sbatch {out}")
    # fewer tasks than shards, GPU variant (a stand-in `zoo plan` that reports 7 shards)
    fake_zoo = script("fakezoo", '#!/usr/bin/env bash\necho \'{"n_shards": 7}\'\n')
    r = subprocess.run(["bash", str(REPO / "build/slurm/submit.sh"), "--out", str(out), "--tasks", "3", "--gpu",
                        "--dry-run", "--preset", "paper"], env={**env, "ZOO": str(fake_zoo)},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "--array=0-2 --gres=gpu:1" in r.stdout and "--device cuda" in r.stdout and "7 shards" in r.stdout

    # run the array script as SLURM would (2 array tasks for 4 shards: each takes every 2nd shard), then package
    args = array.split("zoo-array.sbatch", 1)[1].split()
    for i in range(2):
        r = subprocess.run(["bash", str(REPO / "build/slurm/zoo-array.sbatch"), *args],
                           env={**env, "SLURM_ARRAY_TASK_ID": str(i), "SLURM_ARRAY_TASK_COUNT": "2",
                                "SLURM_ARRAY_TASK_MIN": "0"}, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"--shard {i}/2" in r.stdout
    r = subprocess.run(["bash", str(REPO / "build/slurm/zoo-package.sbatch"), str(out)],
                       env={**env, "VERIFY_SAMPLE": "0"}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert store.read_info(out)["partial"] is False
    assert_same_release(out, single)
