"""The Ray executor on a real local Ray cluster (2 CPUs): same release as the local executor, progress from
the workers, a worker killed mid-shard is retried, timings; Ray stays optional."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from zoo import store
from zoo.build import open_build
from zoo.errors import ZooError
from zoo.executors import import_ray, run_local, run_ray
from zoo.manifest import verify_folder
from zoo.plan import plan_build
from zoo.release import package_shards
from zoo.verify import compare_releases

try:
    import ray
except ImportError:  # pragma: no cover - ray is an optional extra
    ray = None

pytestmark = [pytest.mark.ray, pytest.mark.slow]
needs_ray = pytest.mark.skipif(ray is None, reason="ray is not installed (pip install 'rnn-stm-zoo[ray]')")
# 4 shards of one network (2 learning rates x 2 delays), 4 epochs
PLAN = dict(lrs=[0.1, 0.03], delays=[0, 40], seeds=1, epochs=4, shard_size=1)


def test_importing_zoo_does_not_import_ray():
    code = ("import sys, zoo, zoo.build, zoo.executors, zoo.cli, zoo.api, zoo.verify; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_missing_ray_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(ZooError, match=r"pip install 'rnn-stm-zoo\[ray\]'"):
        import_ray()
    plan = plan_build("smoke", **PLAN)
    with pytest.raises(ZooError, match="needs Ray"):
        run_ray(open_build(tmp_path / "z", plan), plan.shards)


def _build(out: Path, executor, **kw) -> tuple[float, dict, list]:
    plan = plan_build("smoke", **PLAN)
    b = open_build(out, plan)
    epochs, finished = [], []
    t0 = time.perf_counter()
    states = executor(b, plan.shards, progress=epochs.append, on_shard=lambda s, st: finished.append((s.shard_id, st)),
                      **kw)
    seconds = time.perf_counter() - t0
    package_shards(b)
    assert sum(epochs) == plan.network_epochs  # progress from every worker adds up to the whole plan
    assert sorted(finished) == sorted(states.items())
    return seconds, states, epochs


@pytest.fixture(scope="module")
def local_release(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "zoo"
    seconds, states, _ = _build(out, run_local)
    assert set(states.values()) == {"built"}
    return out, seconds


@needs_ray
def test_ray_local_cluster_with_a_killed_worker(tmp_path, monkeypatch, local_release):
    """run_ray without an address starts a local 2-CPU cluster (one task per shard) and shuts it down after.
    One worker is SIGKILLed in its 2nd epoch (once for the whole cluster: ZOO_FAULT_ONCE): Ray retries the
    task, the retry takes over the dead worker's claim and resumes; the release equals the local one."""
    local, t_local = local_release
    once = tmp_path / "killed-once"
    monkeypatch.setenv("ZOO_FAULT_POINT", "epoch:2")  # the workers of the cluster inherit the environment
    monkeypatch.setenv("ZOO_FAULT_ONCE", str(once))
    assert not ray.is_initialized()
    t_ray, states, _ = _build(tmp_path / "z", run_ray, num_cpus=2)
    assert not ray.is_initialized()  # we started it, we stopped it
    assert once.exists(), "no worker was killed"
    assert set(states.values()) == {"built"}
    verify_folder(tmp_path / "z")
    assert compare_releases(tmp_path / "z", local) == []
    print(f"\n4 shards x 1 network x 4 epochs: local executor {t_local:.1f} s; ray executor {t_ray:.1f} s "
          "(starting and stopping a 2-CPU local cluster, one worker killed and its task retried)")


@pytest.fixture(scope="module")
def cluster():
    """A running local Ray cluster (2 CPUs) that run_ray joins (and leaves running)."""
    import shutil
    import tempfile

    tmp = tempfile.mkdtemp(prefix="zoo-ray-t", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=tmp, configure_logging=False)
    yield
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


@needs_ray
def test_cli_build_with_ray_executor(cluster, tmp_path, local_release):
    from typer.testing import CliRunner

    from zoo.cli import app

    local, _ = local_release
    out = tmp_path / "z"
    args = ["build", "--preset", "smoke", "--lr", "0.1", "--lr", "0.03", "--delay", "0", "--delay", "40",
            "--seeds", "1", "--epochs", "4", "--shard-size", "1", "--executor", "ray", "--address", "auto",
            "--out", str(out)]
    t0 = time.perf_counter()
    r = CliRunner().invoke(app, args)
    seconds = time.perf_counter() - t0
    assert r.exit_code == 0, r.output
    assert "release written" in r.output
    assert compare_releases(out, local) == []
    assert store.read_info(out)["partial"] is False
    assert ray.is_initialized()  # a cluster we did not start is left running
    plan = plan_build("smoke", **PLAN)
    assert set(run_ray(open_build(out, plan), plan.shards).values()) == {"done"}  # a re-run trains nothing
    print(f"\n`zoo build --executor ray --address auto` on a running 2-CPU cluster: {seconds:.1f} s "
          f"(local executor {local_release[1]:.1f} s)")


@needs_ray
def test_ray_task_failure_is_reported(cluster, tmp_path):
    """A task that fails for good (here: the folder's plan was replaced under it) is reported, not hidden."""
    import json

    plan = plan_build("smoke", **PLAN)
    b = open_build(tmp_path / "z", plan)
    other = plan_build("smoke", **{**PLAN, "epochs": 5})
    (b.state / "plan.json").write_text(json.dumps({"preset": "smoke", "overrides": other.overrides,
                                                   "shard_size": 1, "fingerprint": other.fingerprint()}))
    with pytest.raises(ZooError, match="1 shard.*failed on the Ray cluster.*different build"):
        run_ray(b, plan.shards[:1], max_retries=0)
