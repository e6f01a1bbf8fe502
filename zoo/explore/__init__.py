"""``zoo explore``: a self-contained explorer of a zoo in the browser (no server, nothing fetched).

- :mod:`zoo.explore.tables`: what the page shows, as plain data (networks, panels, boundary fits, the
  networks picked per cell, the ``load_zoo`` call of a cell); metadata only.
- :mod:`zoo.explore.traces`: the per-network panels (curves, extended-trial outputs, principal-component
  trajectory), simulated in batches.
- :mod:`zoo.explore.page`: writing the folder (``index.html``, ``explorer.js``, ``plotly.min.js``, data files).
"""

from .page import PUSH_MAX_NETWORKS, ExplorerReport, build_explorer, explorer_files
from .tables import DEFAULT_PER_CELL, pick_networks
from .traces import DEFAULT_MAX_POINTS

__all__ = ["DEFAULT_MAX_POINTS", "DEFAULT_PER_CELL", "PUSH_MAX_NETWORKS", "ExplorerReport", "build_explorer",
           "explorer_files", "pick_networks"]
