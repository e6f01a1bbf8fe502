"""Where the shipped files live: the presets in build/presets/ and the card's files in dataset_cards/ (the
repository's layout), found in a checkout and, from a wheel, as zoo.presets / zoo.dataset_cards."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from zoo.errors import InvalidChoiceError
from zoo.package_data import data_folder

ROOT = Path(__file__).resolve().parents[1]


def test_a_checkout_reads_its_own_presets_and_cards():
    assert Path(str(data_folder("presets"))) == ROOT / "build" / "presets"
    assert Path(str(data_folder("dataset_cards"))) == ROOT / "dataset_cards"
    with pytest.raises(InvalidChoiceError, match="'dataset_cards', 'presets'"):
        data_folder("cards")


@pytest.mark.slow  # builds a wheel (~5 s)
def test_a_wheel_carries_the_presets_and_cards_and_leaves_build_alone(tmp_path):
    """setuptools' build folder is not build/ (which holds the presets and the cluster recipes)."""
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(f"setuptools {setuptools.__version__} < 77 (pyproject.toml's build requirement)")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("zoo", "build", "dataset_cards"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    before = sorted(p.relative_to(src) for p in (src / "build").rglob("*"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "-w", str(tmp_path / "wheel"), "--no-deps",
                          "--no-build-isolation", "-q"], cwd=src, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert sorted(p.relative_to(src) for p in (src / "build").rglob("*")) == before
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    presets = {p.name for p in (ROOT / "build" / "presets").glob("*.toml")}
    assert presets and {f"zoo/presets/{n}" for n in presets} <= names
    assert {"zoo/dataset_cards/template.md", "zoo/dataset_cards/license.md", "zoo/package_data.py"} <= names
