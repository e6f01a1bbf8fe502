"""The data files that ship with the code: the sweep presets and the dataset card's template and license.

Their one home is the top of the repository, as its layout says: ``build/presets/*.toml`` (``build/`` holds
the presets and the cluster recipes) and ``dataset_cards/*.md``. A wheel installs them as the packages
``zoo.presets`` and ``zoo.dataset_cards`` (``package-dir`` in ``pyproject.toml``; setuptools' own build folder
is moved out of ``build/`` there). :func:`data_folder` finds them either way: in a source checkout the folder
beside ``zoo/`` (so a checkout on ``PYTHONPATH`` reads its own files), else the installed package.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InvalidChoiceError, ZooError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

#: name -> (folder in a source checkout, a file it always holds)
FOLDERS = {"presets": ("build/presets", "paper.toml"), "dataset_cards": ("dataset_cards", "template.md")}


def data_folder(name: str) -> Traversable:
    """The folder of the shipped files ``name`` (``presets`` or ``dataset_cards``): a source checkout's, else
    the installed package ``zoo.<name>``."""
    if name not in FOLDERS:
        raise InvalidChoiceError("data folder", name, sorted(FOLDERS))
    source, marker = FOLDERS[name]
    checkout = Path(__file__).resolve().parent.parent / source
    if (checkout / marker).is_file():
        return checkout
    try:
        return resources.files(f"zoo.{name}")
    except ModuleNotFoundError as e:
        raise ZooError(f"the package's {name} are missing: neither {checkout} (a source checkout) nor "
                       f"the installed package zoo.{name} exists; reinstall rnn-stm-zoo") from e
