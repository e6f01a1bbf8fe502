"""Every script of examples/ runs on a real release (the smoke zoo) and writes its output files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each example runs as a script in a subprocess: about a minute (not in the fast loop)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CASES = {
    "quickstart.py": ([], ["quickstart_network.png"]),
    "phase_diagram.py": (["--n-boot", "5"], ["phase_diagram_nopost.png"]),
    "fixed_points.py": ([], ["fixed_points.png"]),
    "finetune.py": (["--epochs", "3"], ["finetune.png"]),
    "trajectory.py": (["--every", "10"], ["trajectory.png"]),
    "weightspace_classifier.py": (["--steps", "20"], ["weightspace_classifier.json"]),
}


@pytest.mark.parametrize("script", sorted(CASES))
def test_example_runs(script, smoke_zoo, tmp_path):
    args, outputs = CASES[script]
    res = subprocess.run([sys.executable, str(EXAMPLES / script), str(smoke_zoo), "--out", str(tmp_path), *args],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "MPLBACKEND": "Agg"})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for name in outputs:
        assert (tmp_path / name).stat().st_size > (1000 if name.endswith(".png") else 10), res.stdout


def test_every_example_is_tested():
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(CASES)
