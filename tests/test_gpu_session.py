"""benchmarks/gpu_session.sh in its CPU dry run (SMOKE=1): every step runs, at most 8 files land in $OUT, the
JSON files are whole, and a session cut short by SIGTERM still leaves its log, checks and archive."""

import json
import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_session.sh"
EXPECTED = {"session.log", "check.json", "gpu_results.json", "results.tar.gz"}

pytestmark = pytest.mark.slow


def _env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "ZOO_TRITON", "ZOO_KERNELS")
           and not k.startswith("ZOO_TRITON_")}
    env.update(SMOKE="1", OUT=str(tmp_path / "out"), WORK=str(tmp_path / "work"), **extra)
    return env


def _out_files(out: Path) -> set[str]:
    files = {p.name for p in out.iterdir()}
    assert len(files) <= 8, files
    assert not [f for f in files if f.endswith(".tmp")], files
    return files


def test_smoke_session_runs_every_step(tmp_path):
    t = time.perf_counter()
    p = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True,
                       timeout=1200)
    log = p.stdout + p.stderr
    assert p.returncode == 0, log[-4000:]
    out = tmp_path / "out"
    assert _out_files(out) == EXPECTED
    for step in ("== 0.", "== 1.", "== 1b.", "== 2.", "== 3.", "== done", "exit (0): packing"):
        assert step in log, step
    assert "IMPORT FAILED" not in log
    check = json.loads((out / "check.json").read_text())
    assert check["checks"] and all(c["check"] == "ok" for c in check["checks"]), check
    assert {c["tf32"] for c in check["checks"]} == {False, True} and not check["crashed"]
    res = json.loads((out / "gpu_results.json").read_text())
    assert res["correctness"]["triton_check"] == "ok" and "error" not in res, res.get("traceback")
    assert res["triton_sweep"] and res["throughput"] and res["projection"]
    assert res["compile"]["skipped"].startswith("not asked for")
    with tarfile.open(out / "results.tar.gz") as tf:
        names = tf.getnames()
    for want in ("check-default.json", "val/metadata", "val/zoo.json", "validation.txt", "figures", "val-0.log"):
        assert any(n == want or n.startswith(want + "/") for n in names), (want, names)
    print(f"SMOKE session: {time.perf_counter() - t:.0f} s")


def test_smoke_session_cut_short_keeps_results(tmp_path):
    """SIGTERM during the first check: the trap packs what exists and exits; nothing is left running."""
    p = subprocess.Popen(["bash", str(SCRIPT)], cwd=ROOT, env=_env(tmp_path), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    work, out = tmp_path / "work", tmp_path / "out"
    deadline = time.monotonic() + 300
    while not (work / "check-default.json").exists() and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.5)
    assert p.poll() is None, p.stdout.read()[-3000:]
    p.send_signal(signal.SIGTERM)
    log, _ = p.communicate(timeout=120)
    assert p.returncode == 143, log[-3000:]
    assert "exit (143): packing" in log
    files = _out_files(out)
    assert {"session.log", "results.tar.gz"} <= files
    with tarfile.open(out / "results.tar.gz") as tf:
        names = tf.getnames()
        assert "check-default.json" in names
        json.loads(tf.extractfile("check-default.json").read())  # written atomically: never half a file
    time.sleep(2)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(work / "check-default.json") not in ps  # the check process was ended with the session
