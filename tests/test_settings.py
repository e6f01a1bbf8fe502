"""zoo.settings: every ZOO_* variable read once into one object; zoo.faults: the fault hooks' interface."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from zoo import faults, settings
from zoo.errors import InvalidChoiceError
from zoo.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_and_parsing():
    assert Settings.from_env({}) == Settings()
    s = Settings.from_env({"ZOO_KERNELS": " Torch ", "ZOO_COMPILE": "0", "ZOO_NO_CC": "yes", "ZOO_TRITON_BB": "64",
                           "ZOO_CLAIM_TTL_S": "5", "ZOO_CACHE_DIR": "~/zc", "ZOO_FAULT_POINT": "epoch:2",
                           "ZOO_KERNELS_UNKNOWN": "x", "ZOO_C_GEMM": ""})
    assert (s.kernels, s.compile, s.no_cc, s.triton_bb, s.claim_ttl_s) == ("torch", False, True, 64, 5.0)
    assert s.cache_dir == Path("~/zc").expanduser() and s.fault_point == "epoch:2" and s.c_gemm == "own"
    # env() gives back exactly the non-default variables, and they read back to the same settings
    assert Settings.from_env(s.env()) == s
    assert set(s.env()) == {"ZOO_KERNELS", "ZOO_COMPILE", "ZOO_NO_CC", "ZOO_TRITON_BB", "ZOO_CLAIM_TTL_S",
                            "ZOO_CACHE_DIR", "ZOO_FAULT_POINT"}


@pytest.mark.parametrize("env, var, shown", [
    ({"ZOO_KERNELS": "cuda"}, "ZOO_KERNELS", "'auto', 'torch', 'c', 'compile', 'triton'"),
    ({"ZOO_C_GEMM": "mkl"}, "ZOO_C_GEMM", "'own', 'own8', 'blas'"),
    ({"ZOO_COMPILE": "maybe"}, "ZOO_COMPILE", "'1', '0'"),
    ({"ZOO_TRITON_BB": "24"}, "ZOO_TRITON_BB", "power of two"),
    ({"ZOO_TRITON_BB": "big"}, "ZOO_TRITON_BB", "a number (int)"),
    ({"ZOO_TRITON_MAXNREG": "300"}, "ZOO_TRITON_MAXNREG", "24 to 255"),
    ({"ZOO_CLAIM_TTL_S": "-1"}, "ZOO_CLAIM_TTL_S", "positive"),
])
def test_a_bad_value_names_the_variable_and_the_choices(env, var, shown):
    with pytest.raises(InvalidChoiceError) as err:
        Settings.from_env(env)
    assert var in str(err.value) and shown in str(err.value) and repr(next(iter(env.values())))[1:-1] in str(err.value)


def test_read_once_then_reload_and_override(monkeypatch):
    monkeypatch.setattr(settings, "_current", None)
    monkeypatch.setenv("ZOO_CLAIM_TTL_S", "7")
    assert settings.current().claim_ttl_s == 7.0
    monkeypatch.setenv("ZOO_CLAIM_TTL_S", "9")
    assert settings.current().claim_ttl_s == 7.0  # read once: a later change needs reload()
    assert settings.reload().claim_ttl_s == 9.0
    with settings.override(claim_ttl_s=3.0) as s:
        assert settings.current() is s and s.claim_ttl_s == 3.0
        from zoo import claims

        assert claims.claim_ttl() == 3.0 and claims.claim_ttl(Settings()) == 600.0
    assert settings.current().claim_ttl_s == 9.0
    with pytest.raises(InvalidChoiceError, match="ZOO_KERNELS"):
        with settings.override(kernels="gpu"):
            pass


def test_cache_root_follows_the_settings(tmp_path, zoo_settings):
    from zoo import cache

    zoo_settings(cache_dir=tmp_path / "c")
    assert cache.cache_root() == tmp_path / "c"
    assert cache.cache_root(Settings()) == cache.platform_cache_dir() / cache.APP_NAME


def test_every_zoo_variable_is_a_setting():
    """No module reads a ZOO_* variable itself: each one the package mentions is a field of Settings."""
    known = {f.metadata["env"] for f in dataclasses.fields(Settings)}
    used = set()
    for path in (ROOT / "zoo").rglob("*.py"):
        text = path.read_text()
        used |= set(re.findall(r"\bZOO_[A-Z_]+[A-Z]\b", text))
        if path.name != "settings.py":
            assert not re.search(r"environ(\.get)?[\[(]\s*[\"']ZOO_", text), f"{path} reads a ZOO_ variable itself"
    assert used - known == set()
    rows = settings.describe(Settings(), environ={"ZOO_KERNELS": "c"})
    assert [r["env"] for r in rows] == [f.metadata["env"] for f in dataclasses.fields(Settings)]
    assert {r["env"]: r["source"] for r in rows}["ZOO_KERNELS"] == "env" and all(r["help"] for r in rows)


def test_fault_hooks_are_a_no_op_until_installed():
    seen = []
    faults.fault_point("epoch")  # nothing installed (the test process has no ZOO_FAULT_POINT)
    with faults.installed(lambda point, before_kill=None: seen.append(point)):
        faults.fault_point("epoch")
        faults.fault_point("write-rename")
    faults.fault_point("package")
    assert seen == ["epoch", "write-rename"]
    with pytest.raises(InvalidChoiceError, match="fault point.*'epoch'"):
        faults.KillAt.from_spec("epochs:1")
    k = faults.KillAt.from_spec("shard-done:3", once_file="/nonexistent/x")
    assert (k.point, k.n, k.once_file) == ("shard-done", 3, "/nonexistent/x")
    k("shard-done")
    k("epoch")
    assert k.count == 1  # counts only its own point; the kill itself is tested with real processes (test_faults)


@pytest.mark.slow
def test_zoo_settings_command_prints_them():
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "ZOO_KERNELS": "torch", "ZOO_CLAIM_TTL_S": "42"}
    out = subprocess.run([sys.executable, "-m", "zoo", "settings", "--format", "json"], env=env,
                         capture_output=True, text=True, check=True)
    rows = {r["env"]: r for r in json.loads(out.stdout)}
    assert rows["ZOO_KERNELS"]["value"] == "torch" and rows["ZOO_KERNELS"]["source"] == "env"
    assert rows["ZOO_CLAIM_TTL_S"]["value"] == "42.0" and rows["ZOO_C_GEMM"]["source"] == "default"
    bad = subprocess.run([sys.executable, "-m", "zoo", "settings"], env={**env, "ZOO_KERNELS": "gpu"},
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "ZOO_KERNELS" in bad.stderr and "Traceback" not in bad.stderr
