"""The `zoo` command line on the smoke zoo (typer's CliRunner): output and error handling."""

from __future__ import annotations

import pytest
from rich.console import Console
from typer.testing import CliRunner

import zoo.cli as cli
from zoo import load_zoo
from zoo.grids import list_presets

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """A wide console, so table cells (net ids) are not cut."""
    monkeypatch.setattr(cli.report, "console", Console(width=250, force_terminal=False, color_system=None))


def _invoke(*args):
    return runner.invoke(cli.app, [str(a) for a in args])


def _one_line_error(res, *needles):
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit)  # typer.Exit(2), not a crash
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.output
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_info(smoke_zoo):
    res = _invoke("info", smoke_zoo)
    assert res.exit_code == 0, res.output
    assert "Zoo(8 networks" in res.output and "smoke" in res.output
    for title in ("by family", "by outcome", "by delay_ms"):
        assert title in res.output
    meta = load_zoo(smoke_zoo).metadata
    for outcome, n in meta.outcome.value_counts().items():
        assert any(outcome in ln and ln.rstrip(" │|").endswith(str(n)) for ln in res.output.splitlines())


def test_ls_delay(smoke_zoo):
    res = _invoke("ls", smoke_zoo, "--delay", 40)
    assert res.exit_code == 0, res.output
    assert "4 networks" in res.output
    want = load_zoo(smoke_zoo, delay=40).metadata.net_id
    for nid in want:
        assert nid in res.output
    for nid in load_zoo(smoke_zoo, delay=0).metadata.net_id:
        assert nid not in res.output
    res = _invoke("ls", smoke_zoo, "--delay", 40, "--lr", 0.1, "--seed", 1, "--limit", 0)
    assert res.exit_code == 0 and "1 networks" in res.output


def test_presets():
    res = _invoke("presets")
    assert res.exit_code == 0, res.output
    for name in list_presets():
        assert name in res.output
    assert "81500" in res.output  # the paper preset


def test_errors_are_one_line(smoke_zoo, tmp_path):
    _one_line_error(_invoke("ls", smoke_zoo, "--mechanism", "limitcycle"), "invalid mechanism", "'limit_cycle'",
                    "'slow_point'")
    _one_line_error(_invoke("ls", smoke_zoo, "--delay", 42), "invalid delay: 42", "0, 40")
    _one_line_error(_invoke("info", tmp_path / "nothing"), "neither an existing folder nor a Hub dataset id")
    _one_line_error(_invoke("info", tmp_path), "not a zoo release")
    _one_line_error(_invoke("push", tmp_path, "--repo", "org/x", "--dry-run"), "no manifest.sha256")
    _one_line_error(_invoke("import-reference", tmp_path, "--family", "nopost", "--out", tmp_path / "o"),
                    "holds no network folders")
    _one_line_error(_invoke("import-reference", tmp_path, "--family", "nosuch", "--out", tmp_path / "o"),
                    "invalid family")


def test_push_dry_run(smoke_zoo):
    res = _invoke("push", smoke_zoo, "--repo", "org/smoke", "--dry-run", "--no-explorer")
    assert res.exit_code == 0, res.output
    # 4 shards, metadata, zoo.json, LICENSE, the phase diagram picture, the card, the manifest
    assert "weights/nopost/nopost-d040-000.safetensors" in res.output and "dry run: 10 files" in res.output
    assert "images/phase_diagram.png" in res.output and "LICENSE" in res.output
    assert ".build" not in res.output and ".cache" not in res.output


def test_push_dry_run_adds_the_explorer_of_a_small_release(smoke_zoo):
    pytest.importorskip("plotly")
    res = _invoke("push", smoke_zoo, "--repo", "org/smoke", "--revision", "v1", "--dry-run")
    assert res.exit_code == 0, res.output
    assert "explorer included" in res.output and "explorer/index.html" in res.output
    assert "explorer/plotly.min.js" in res.output and "explorer/data.js" in res.output
    assert not list(smoke_zoo.glob("explorer*")), "the release folder is left as it was"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_device_that_is_not_here_is_a_one_line_error(tmp_path):
    """--device cuda without a GPU (and a malformed device) name the value and what this machine has."""
    res = _invoke("build", "--preset", "smoke", "--device", "cuda", "--out", tmp_path / "z")
    _one_line_error(res, "'cuda'", "'cpu'", "0 CUDA device")
    res = _invoke("build", "--preset", "smoke", "--device", "gpu7", "--out", tmp_path / "z")
    _one_line_error(res, "'gpu7'", "cuda:N")


def _plan_json(*args) -> dict:
    import json

    res = _invoke("plan", *args, "--json")
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def test_family_without_preset_trains_the_family_paper_networks():
    """`--family F` alone starts from F's paper definition: nopost at lr 0.001 trains max(1000, int(30/lr))
    = 30,000 epochs per network, not the sample preset's fixed 1,000."""
    s = _plan_json("--family", "nopost", "--lr", "0.001", "--delay", "160", "--seeds", "4")
    assert s["n_networks"] == 4 and s["network_epochs"] == 4 * 30_000
    assert s["preset"] == "nopost" and "sample" not in s["built_from"]
    assert s["epoch_rules"] == ["nopost: epochs = max(1000, int(30/lr)) (the paper's rule)"]
    post = _plan_json("--family", "post", "--lr", "0.002", "--delay", "40", "--seeds", "1")
    assert post["network_epochs"] == 50_000  # post: max(1000, int(100/lr))
    nomem = _plan_json("--family", "nomemory", "--lr", "0.5", "--delay", "100", "--seeds", "2")
    assert nomem["network_epochs"] == 2 * 3000


def test_preset_and_family_say_which_epoch_rule_applies():
    s = _plan_json("--preset", "sample", "--family", "nopost", "--lr", "0.001", "--seeds", "1", "--delay", "40")
    assert s["network_epochs"] == 1000
    assert "NOT the paper's rule" in s["epoch_rules"][0] and "max(1000, int(30/lr))" in s["epoch_rules"][0]
    res = _invoke("plan", "--preset", "sample", "--family", "nopost", "--lr", "0.001")
    assert "NOT the paper's rule" in res.output


@pytest.mark.slow
def test_family_build_names_what_was_built(tmp_path):
    import json

    out = tmp_path / "z"
    res = _invoke("build", "--family", "nopost", "--lr", "0.3", "--delay", "0", "--seeds", "1", "--out", out)
    assert res.exit_code == 0, res.output
    first = res.output.splitlines()[0]
    assert first.startswith("family nopost (paper definition), lrs [0.3], delays [0] ms, seeds 0..0"), first
    assert "the paper's rule" in res.output
    info = json.loads((out / "zoo.json").read_text())
    assert info["preset"] == "nopost" and info["built_from"].startswith("family nopost (paper definition)")
    card = (out / "README.md").read_text()
    assert "family nopost (paper definition)" in card and "preset `sample`" not in card
    assert load_zoo(out, verify=False).metadata["epochs"].tolist() == [1000]


def test_python_dash_m_zoo_runs_the_cli():
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "zoo", "--version"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("zoo "), res.stderr


@pytest.mark.slow
@pytest.mark.parametrize("code, status, err, thread", [(None, 0, "", False), (3, 3, "", True),
                                                       ("bad value", 1, "bad value", False)])
def test_exit_now_runs_exit_handlers_and_flushes(code, status, err, thread):
    """The command line's quick exit: the status of sys.exit, atexit handlers run, buffered output kept, and a
    running non-daemon thread still finishes."""
    import subprocess
    import sys

    script = ("import atexit, sys, threading, time\n"
              "import zoo.cli as c\n"
              "atexit.register(lambda: print('atexit ran'))\n"
              + ("threading.Thread(target=lambda: (time.sleep(0.3), print('thread done'))).start()\n" if thread else "")
              + "sys.stdout.write('#' * 200000)\n"
              f"c.exit_now({code!r})\n")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == status, res.stderr
    assert res.stdout.count("#") == 200000 and "atexit ran" in res.stdout
    assert ("thread done" in res.stdout) == thread
    assert res.stderr.strip() == err


@pytest.mark.slow
def test_exit_now_without_other_threads_skips_the_teardown():
    import subprocess
    import sys

    # an object whose finaliser would print at an ordinary interpreter teardown: the quick exit skips it
    script = ("import zoo.cli as c\n"
              "class Late:\n"
              "    def __del__(self):\n"
              "        print('torn down')\n"
              "keep = Late()\n"
              "print('done')\n"
              "c.exit_now(0)\n")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.split() == ["done"], (res.stdout, res.stderr)


def test_ls_and_info_machine_readable_and_uncut(smoke_zoo):
    import io
    import json

    import pandas as pd

    res = _invoke("ls", smoke_zoo, "--format", "csv", "--limit", "0")
    assert res.exit_code == 0, res.output
    df = pd.read_csv(io.StringIO(res.output))
    assert len(df) == 8 and df["net_id"].str.len().min() > 20 and "weights_index" in df
    res = _invoke("ls", smoke_zoo, "--format", "json")
    assert [r["net_id"] for r in json.loads(res.output)] == list(df["net_id"])
    res = _invoke("ls", smoke_zoo)  # the table wraps a long net_id, never cuts it with an ellipsis
    assert res.exit_code == 0 and "…" not in res.output
    res = _invoke("info", smoke_zoo, "--format", "json")
    d = json.loads(res.output)
    assert d["n_networks"] == 8 and d["counts"]["family"] == {"nopost": 8}
    assert d["info"]["provenance"]["version"]
    res = _invoke("info", smoke_zoo, "--format", "csv")
    assert res.output.splitlines()[0] == "column,value,networks"
    res = _invoke("info", smoke_zoo, "--format", "xml")
    assert res.exit_code == 2 and "format" in res.output


@pytest.mark.slow
def test_kernels_command_builds_and_reports(tmp_path):
    """`zoo kernels` builds the C kernels and names the backend; without a compiler it says so in plain words
    (torch trains instead) and --require-c fails, for build scripts."""
    import json
    import os
    import subprocess
    import sys

    from zoo import kernels

    res = _invoke("kernels", "--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    assert rep["device"] == "cpu" and rep["backend"] in kernels.BACKENDS
    assert rep["c"]["available"] == (rep["backend"] == "c") or rep["requested"] != "auto"
    env = {**os.environ, "ZOO_NO_CC": "1", "ZOO_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "zoo", "kernels", "--require-c"], env=env, capture_output=True,
                         text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    text = " ".join(out.stdout.split())
    assert "training on cpu: torch kernels" in text and "C kernels unavailable" in text
    assert "needs no compiler" in text


def test_commands_make_waiting_threads_sleep_before_torch_loads():
    """The command line sets OMP_WAIT_POLICY=PASSIVE (unless the user set it) before torch, whose OpenMP
    runtime reads it once, is imported."""
    import os
    import subprocess
    import sys

    code = ("import builtins, os\n"
            "seen, orig = [], builtins.__import__\n"
            "def hook(name, *a, **k):\n"
            "    if name == 'torch' and not seen:\n"
            "        seen.append(os.environ.get('OMP_WAIT_POLICY'))\n"
            "    return orig(name, *a, **k)\n"
            "builtins.__import__ = hook\n"
            "from typer.testing import CliRunner\n"
            "import zoo.cli\n"
            "CliRunner().invoke(zoo.cli.app, ['presets'])\n"
            "print(seen[0] if seen else 'torch-never-imported')\n")
    seen = []
    for value in (None, "ACTIVE"):
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        if value:
            env["OMP_WAIT_POLICY"] = value
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        seen.append(out.stdout.split()[-1])
    assert seen == ["PASSIVE", "ACTIVE"]


def test_one_error_handler_with_a_debug_switch(tmp_path):
    missing = str(tmp_path / "nowhere")
    res = runner.invoke(cli.app, ["info", missing])
    assert res.exit_code == 2 and "Traceback" not in res.output
    res = runner.invoke(cli.app, ["--debug", "info", missing])
    assert res.exit_code == 1 and type(res.exception).__name__ == "SourceNotFoundError"
