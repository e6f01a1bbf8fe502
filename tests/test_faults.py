"""Crash safety with real processes: `zoo build` SIGKILLed at named points (ZOO_FAULT_POINT) and at random
times, then resumed; damaged files on disk; two workers on one shard; stale claims."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import zoo.shard_build
from zoo import layout, store
from zoo.build import open_build
from zoo.errors import MissingShardsError
from zoo.executors import run_local
from zoo.faults import BUILD_POINTS as FAULT_POINTS
from zoo.faults import WRITE_POINTS
from zoo.manifest import verify_folder
from zoo.plan import plan_build
from zoo.release import package_shards
from zoo.settings import Settings
from zoo.shard_build import build_shards
from zoo.train import train_networks
from zoo.verify import compare_releases

pytestmark = pytest.mark.slow  # kill -9 and resume of whole builds in subprocesses: minutes (not in the fast loop)

# 4 networks in 2 shards of 2, trained one network per chunk (--batch-size 1), 4 epochs
PLAN = dict(lrs=[0.1], delays=[0, 40], seeds=2, epochs=4, shard_size=2)
ARGS = ["--preset", "smoke", "--lr", "0.1", "--delay", "0", "--delay", "40", "--seeds", "2", "--epochs", "4",
        "--shard-size", "2", "--batch-size", "1"]
# kill points by phase: one of each phase is tried per run of the test (the point and, for epochs, its
# occurrence at random); in this order each is reached by a resumed build, so each of these runs is killed
PHASES = {"training": ["epoch", "chunk-trained", "chunk-weights", "chunk-written"],
          "writing a shard": ["shard-weights", "shard-part", "shard-done"], "packaging": ["package"]}
MAX_COUNT = {"epoch": 4}
SEED = int(os.environ.get("ZOO_FAULT_SEED", random.randrange(10**6)))


def zoo_build(out: Path, fault: str | None = None, kill_after_s: float | None = None) -> dict:
    """Run `python -m zoo.cli build` into ``out``; with ``fault`` it SIGKILLs itself there, with
    ``kill_after_s`` we SIGKILL it that long after it printed its plan line (so inside the build proper)."""
    # two scenarios run side by side on CI's 2 cores: one thread each (no OpenMP oversubscription)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env.pop("ZOO_FAULT_POINT", None)
    if fault:
        env["ZOO_FAULT_POINT"] = fault
    p = subprocess.Popen([sys.executable, "-m", "zoo.cli", "build", *ARGS, "--out", str(out)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    started = threading.Event()

    def read():
        for line in p.stdout:
            lines.append(line)
            if "release size" in line:  # the plan printed: training starts
                started.set()
        started.set()

    t0 = time.perf_counter()
    t = threading.Thread(target=read, daemon=True)
    t.start()
    killed_by_us = False
    started.wait(120)
    t_started = time.perf_counter()
    if kill_after_s is not None:
        time.sleep(kill_after_s)
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            killed_by_us = True
    rc = p.wait(timeout=300)
    t.join(10)
    end = time.perf_counter()
    return {"rc": rc, "killed": rc == -signal.SIGKILL, "killed_by_us": killed_by_us, "output": "".join(lines),
            "seconds": end - t0, "seconds_after_start": end - t_started}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "zoo"
    plan = plan_build("smoke", **PLAN)
    b = open_build(out, plan)
    run_local(b, plan.shards, batch_size=1)
    package_shards(b)
    return out


def check_complete(out: Path, reference: Path) -> tuple[int, int]:
    """(networks lost, duplicates) of a finished release, after checking every checksum."""
    verify_folder(out)
    meta = store.read_table(out / layout.METADATA_PATH)
    planned = {c.net_id for c in plan_build("smoke", **PLAN).configs}
    ids = list(meta["net_id"])
    lost, dups = len(planned - set(ids)), len(ids) - len(set(ids))
    assert set(ids) <= planned
    for wf, rows in meta.groupby("weights_file"):  # each network's weights are where the metadata says
        in_file = store.read_weight_ids(out / wf)
        assert [in_file[j] for j in rows["weights_index"]] == list(rows["net_id"])
    assert compare_releases(out, reference) == []
    assert not store.read_info(out)["partial"]
    return lost, dups


def test_kill_at_fault_points_and_random_times_then_resume(tmp_path, reference):
    print(f"fault seed {SEED} (ZOO_FAULT_SEED to repeat)")
    rng = random.Random(SEED)
    # every named point, in build order (each is reached by the resumed build of the previous kill)
    a_points = [f"{p}:{rng.randint(1, MAX_COUNT.get(p, 1))}" for v in PHASES.values() for p in v]
    # random kill times are fractions of how long an uninterrupted build takes on this machine, now (a fixed
    # number of seconds is never reached on a fast machine); the first one lands while it trains
    calib = zoo_build(tmp_path / "calibration")
    assert calib["rc"] == 0, calib["output"]
    span = calib["seconds_after_start"]
    b_plan = [("time", round(rng.uniform(0.05, 0.6) * span, 2)), ("time", round(rng.uniform(0.0, 1.0) * span, 2)),
              ("point", f"{rng.choice(FAULT_POINTS)}:1")]
    results: dict[str, list] = {"A": [], "B": []}

    def scenario_a():  # one folder: killed once at every named point, in order, then resumed
        for fp in a_points:
            results["A"].append((f"point {fp}", zoo_build(tmp_path / "a", fault=fp)))
        results["A"].append(("resume", zoo_build(tmp_path / "a")))

    def scenario_b():  # another folder: killed at random times, and at a random point
        for kind, v in b_plan:
            r = zoo_build(tmp_path / "b", kill_after_s=v) if kind == "time" else zoo_build(tmp_path / "b", fault=v)
            results["B"].append((f"{kind} {v}", r))
        results["B"].append(("resume", zoo_build(tmp_path / "b")))

    threads = [threading.Thread(target=scenario_a), threading.Thread(target=scenario_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    summary = []
    kills = 0
    for name, runs in results.items():
        for what, r in runs[:-1]:
            kills += r["killed"]
            state = "killed" if r["killed"] else f"finished (rc {r['rc']})"
            summary.append(f"  {name}: {what:<24} -> {state} after {r['seconds']:.1f} s")
        final = runs[-1][1]
        assert final["rc"] == 0, final["output"]
        lost, dups = check_complete(tmp_path / name.lower(), reference)
        summary.append(f"  {name}: final resume ({final['seconds']:.1f} s) -> networks lost {lost}, duplicates {dups}")
        assert (lost, dups) == (0, 0)
        assert not list((tmp_path / name.lower() / ".build" / "claims").glob("*")), "claims left behind"
    print(f"uninterrupted build {span:.1f} s after its plan line; {kills} kill(s):\n" + "\n".join(summary))
    # every named point in scenario A is reached in a fresh or resumed build, so each run there was killed
    assert all(r["killed"] for _, r in results["A"][:-1]), [r["output"][-2000:] for _, r in results["A"]]
    assert kills >= len(a_points) + 1


@pytest.mark.slow
def test_kill_inside_every_write_then_resume(tmp_path, reference):
    """Killed inside each atomic write of a build in turn: with the temp file half written (write-partial)
    and complete but not renamed (write-rename). Run k resumes the folder and dies at its k-th write (a killed
    write is redone first by the next run), so the runs walk through the writes of the build (chunks, shard
    files, metadata parts, done markers, every file of packaging) until one finishes; then the release must
    be complete and equal to an uninterrupted build's."""
    walks: dict[str, list] = {p: [] for p in WRITE_POINTS}

    def walk(point: str) -> None:
        out = tmp_path / point
        for k in range(1, 60):
            r = zoo_build(out, fault=f"{point}:{k}")
            walks[point].append(r)
            if not r["killed"]:
                return

    threads = [threading.Thread(target=walk, args=(p,)) for p in WRITE_POINTS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for point, runs in walks.items():
        kills = sum(r["killed"] for r in runs)
        assert runs[-1]["rc"] == 0, runs[-1]["output"]
        assert kills >= 6, f"{point}: only {kills} writes were interrupted"  # chunks, shards, packaging
        out = tmp_path / point
        assert check_complete(out, reference) == (0, 0)
        temps = [p for p in out.rglob(".tmp-*") if ".build" not in p.parts]
        assert not temps or all(p.parent.exists() for p in temps)  # leftovers are hidden, never released
        print(f"{point}: {kills} runs killed inside a write, then finished")


# ---------------------------------------------------------------- damaged files on disk
def _tiny(tmp_path, name="z", **kw):
    plan = plan_build("smoke", **{**dict(lrs=[0.1], delays=[0], seeds=2, epochs=3), **kw})
    return plan, open_build(tmp_path / name, plan)


@pytest.mark.bitwise("c")
def test_corrupt_or_truncated_done_shard_is_detected_and_retrained(tmp_path):
    plan, b = _tiny(tmp_path)
    (shard,) = plan.shards
    assert build_shards(b, [shard])[shard.shard_id] == "built"
    wf = b.out / layout.weights_path(shard.family, shard.shard_id)
    good = wf.read_bytes()
    good_w = store.read_weights(wf)
    for damage in ("truncate", "part", "marker"):
        if damage == "truncate":
            wf.write_bytes(good[: len(good) // 2])
        elif damage == "part":  # one flipped bit in the metadata part
            part = b.state / "parts" / f"{shard.shard_id}.parquet"
            data = part.read_bytes()
            part.write_bytes(data[:200] + bytes([data[200] ^ 1]) + data[201:])
        else:
            (b.state / "done" / f"{shard.shard_id}.json").write_text("{not json")
        assert b.status() == {shard.shard_id: "corrupt"}, damage
        with pytest.raises(MissingShardsError, match="damaged" if damage != "marker" else "unreadable"):
            package_shards(b)
        assert build_shards(b, [shard])[shard.shard_id] == "built", damage  # retrained, never used
        assert b.status() == {shard.shard_id: "done"}
        w = store.read_weights(wf)
        assert all(bool((w[n] == good_w[n]).all()) for n in w), damage
    package_shards(b)
    verify_folder(b.out)


def _two_chunks_then_crash(tmp_path, monkeypatch):
    """A 3-network shard built one network per chunk, interrupted after two chunks: (plan, build, shard,
    the list that records what trains, the real train_networks)."""
    plan, b = _tiny(tmp_path, seeds=3)
    (shard,) = plan.shards
    trained: list[str] = []
    real = zoo.shard_build.train_networks

    def crash_after_two(configs, **kw):
        if len(trained) >= 2:
            raise KeyboardInterrupt
        trained.extend(c.net_id for c in configs)
        return real(configs, **kw)

    monkeypatch.setattr(zoo.shard_build, "train_networks", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        build_shards(b, [shard], batch_size=1)
    return plan, b, shard, trained, real


def test_chunk_scored_by_an_earlier_version_is_retrained(tmp_path, monkeypatch, capsys):
    """A chunk saved before 0.2 (no ``scoring`` in its json: its curves were scored with the label rule) is not
    mixed into a shard scored the scripts' way: it is discarded and its networks trained again, nothing else."""
    plan, b, shard, trained, real = _two_chunks_then_crash(tmp_path, monkeypatch)
    metas = sorted((b.state / "work" / shard.shard_id).glob("chunk-*.json"))
    assert len(metas) == 2 and all(json.loads(m.read_text())["scoring"] == "reference" for m in metas)
    old, kept = json.loads(metas[0].read_text()), json.loads(metas[1].read_text())["net_ids"]
    old.pop("scoring")
    metas[0].write_text(json.dumps(old))
    trained.clear()
    monkeypatch.setattr(zoo.shard_build, "train_networks", lambda cfgs, **kw: (trained.extend(c.net_id for c in cfgs),
                                                                         real(cfgs, **kw))[1])
    assert build_shards(b, [shard], batch_size=1)[shard.shard_id] == "built"
    err = capsys.readouterr().err
    assert "scored with 'label'" in err and err.count("discarding") == 1
    assert sorted(trained) == sorted(set(shard.net_ids) - set(kept))  # the old chunk's and the untrained ones


@pytest.mark.bitwise("c")
def test_damaged_chunk_is_discarded_and_retrained(tmp_path, monkeypatch, capsys):
    plan, b, shard, trained, real = _two_chunks_then_crash(tmp_path, monkeypatch)
    chunks = sorted((b.state / "work" / shard.shard_id).glob("chunk-*.safetensors"))
    assert len(chunks) == 2
    data = chunks[0].read_bytes()
    chunks[0].write_bytes(data[:-3] + bytes([data[-3] ^ 0xFF]) + data[-2:])  # one flipped byte
    (chunks[1].with_suffix(".parquet")).write_bytes(b"")  # an empty (truncated) curves file

    trained.clear()
    monkeypatch.setattr(zoo.shard_build, "train_networks", lambda cfgs, **kw: (trained.extend(c.net_id for c in cfgs),
                                                                         real(cfgs, **kw))[1])
    assert build_shards(b, [shard], batch_size=1)[shard.shard_id] == "built"
    err = capsys.readouterr().err
    assert err.count("discarding damaged chunk") == 2 and "checksum" in err
    assert sorted(trained) == sorted(shard.net_ids)  # both damaged chunks trained again, nothing else twice
    ref = train_networks(shard.configs)
    w = store.read_weights(b.out / layout.weights_path(shard.family, shard.shard_id))
    assert all(bool((w[n] == ref.weights[n].float()).all()) for n in w)


# ---------------------------------------------------------------- claims
WORKER = """
import sys, time
from pathlib import Path
from zoo.build import open_build
from zoo.plan import plan_build
from zoo.shard_build import build_shards
plan = plan_build("smoke", lrs=[0.1], delays=[0], seeds=2, epochs=5)
b = open_build(sys.argv[1], plan)
Path(sys.argv[2]).touch()                      # ready; start together with the other worker
while not all(Path(p).exists() for p in sys.argv[3:]):
    time.sleep(0.005)
print("STATE", build_shards(b, plan.shards[:1])[plan.shards[0].shard_id], flush=True)
"""


def test_two_workers_on_one_shard(tmp_path):
    out = tmp_path / "z"
    ready = [tmp_path / "ready0", tmp_path / "ready1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(out), str(ready[i]), *map(str, ready)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    states = sorted(o.split("STATE", 1)[1].strip() for o, _ in outs)
    print(f"\ntwo workers on one shard: {states}")
    assert states in (["built", "locked"], ["built", "done"])  # never both trained it
    plan = plan_build("smoke", lrs=[0.1], delays=[0], seeds=2, epochs=5)
    b = open_build(out, plan)
    assert b.status() == {plan.shards[0].shard_id: "done"}
    package_shards(b)
    verify_folder(out)


def test_stale_claims_are_taken_over_live_ones_are_not(tmp_path, monkeypatch):
    plan, b = _tiny(tmp_path, seeds=1, epochs=2)
    (shard,) = plan.shards
    claim = b.state / "claims" / shard.shard_id
    claim.parent.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()

    # a live worker on another host (fresh heartbeat): locked
    claim.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "x"}))
    assert build_shards(b, [shard])[shard.shard_id] == "locked"
    # the same claim with a heartbeat older than the TTL (a worker given a TTL of 5 s): taken over
    old = time.time() - 10
    os.utime(claim, (old, old))
    assert build_shards(b, [shard])[shard.shard_id] == "locked"  # the default TTL is 600 s
    assert build_shards(open_build(b.out, settings=Settings(claim_ttl_s=5.0)), [shard])[shard.shard_id] == "built"
    assert not claim.exists()
    # a dead process on this host: taken over at once
    plan2, b2 = _tiny(tmp_path, name="z2", seeds=1, epochs=2)
    claim2 = b2.state / "claims" / shard.shard_id
    claim2.parent.mkdir(parents=True)
    claim2.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "token": "y"}))
    assert build_shards(b2, [shard])[shard.shard_id] == "built"
    # a live process on this host (ourselves): locked
    claim2.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": "z"}))
    (b2.state / "done" / f"{shard.shard_id}.json").unlink()
    assert build_shards(b2, [shard])[shard.shard_id] == "locked"


def test_orphan_claim_temp_files_are_removed(tmp_path):
    """A worker killed between writing a claim's temp file and linking it leaves the temp file: the next claim
    in that folder (or packaging) removes it when its process is dead; a live process's is left alone."""
    plan, b = _tiny(tmp_path)
    claims = b.state / "claims"
    claims.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = claims / f".tmp-{dead.stdout.strip()}@{socket.gethostname()}@{plan.shards[0].shard_id}.abc123"
    alive = claims / f".tmp-{os.getpid()}@{socket.gethostname()}@{plan.shards[0].shard_id}.def456"
    orphan.write_text("{}")
    alive.write_text("{}")
    assert build_shards(b, [plan.shards[0]])[plan.shards[0].shard_id] == "built"
    assert not orphan.exists() and alive.exists()
    alive.unlink()
    orphan.write_text("{}")
    run_local(b, plan.shards)
    package_shards(b)
    assert not orphan.exists() and not list(claims.iterdir())
