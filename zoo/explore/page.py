"""Writing the explorer folder: ``index.html`` (the page, from ``explorer.html``), ``explorer.js`` (its code),
``plotly.min.js`` (plotly's own bundle, beside the page: nothing is fetched at view time), ``data.js`` (the
networks, panels and fits) and ``nets/<cell>.js`` (the precomputed per-network panels, loaded on a click).

Data files are scripts that hand their data to the page (``zooDataLoaded({...})``, ``zooNetsLoaded({...})``), not JSON files:
a page opened from the file system may not ``fetch`` files beside it, but it may load scripts.
The folder is written under a temporary name and renamed into place, so a reader never sees half of it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pandas as pd

from .. import store
from ..errors import EmptyZooError, SourceNotFoundError, ZooError
from ..manifest import current_umask
from ..version import __version__
from . import tables
from .traces import DEFAULT_MAX_POINTS, network_panels

#: the files of the page itself (in this package); the data files are written beside them
PAGE_FILES = ("index.html", "explorer.js")
DATA_FILE = "data.js"
NETS_DIR = "nets"
PLOTLY_FILE = "plotly.min.js"


@dataclass
class ExplorerReport:
    """What :func:`build_explorer` wrote."""

    out: Path
    n_networks: int
    n_cells: int
    n_traced: int
    size_bytes: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def index(self) -> Path:
        return self.out / "index.html"

    def summary(self) -> str:
        return (f"wrote {self.index} ({self.n_networks} networks, {self.n_cells} cells, per-network panels for "
                f"{self.n_traced}; {self.size_bytes / 1e6:.1f} MB in {self.seconds:.1f} s)")


def _open(source):
    """``(zoo or None, metadata, source label, load_zoo argument)`` of a Zoo, a metadata table (DataFrame or
    ``.parquet`` file: metadata only, no per-network panels), a release folder, a Hub id or None (the sample)."""
    from ..api import Zoo, load_zoo

    if isinstance(source, Zoo):
        return source, source.metadata, source.source.description, tables.source_call(source.source.label)
    if isinstance(source, pd.DataFrame):
        return None, source, "a metadata table", None
    if source is not None and str(source).endswith(".parquet"):
        path = Path(source).expanduser()
        if not path.is_file():
            raise SourceNotFoundError(f"metadata table {str(source)!r} does not exist")
        return None, store.read_table(path), f"the metadata table {path}", None
    zoo = load_zoo(source, fetch=False)
    return zoo, zoo.metadata, zoo.source.description, tables.source_call(source)


def _select(meta: pd.DataFrame, family, delay, lr, mechanism, outcome) -> pd.DataFrame:
    from ..analysis import PANELS
    from ..api import select

    fams = None
    if family is not None:
        fams = [m for f in ([family] if isinstance(family, str) else family) for m in PANELS.get(f, (f,))]
        present = set(meta["family"])
        fams = [f for f in fams if f in present] or fams  # a panel keeps the members it has
    return select(meta, family=fams, delay=delay, lr=lr, mechanism=mechanism, outcome=outcome)


def _script(path: Path, call: str, payload) -> int:
    text = f"{call}({json.dumps(payload, separators=(',', ':'), allow_nan=False)});\n"
    path.write_text(text, encoding="utf-8")
    return len(text.encode())


def _plotly_js() -> str:
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise ZooError("zoo explore needs plotly (its JavaScript bundle goes beside the page): "
                       "pip install 'rnn-stm-zoo[explore]'") from None
    return get_plotlyjs()


def _replace_folder(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` to ``out``; an older explorer there is replaced, anything else refused."""
    if out.exists():
        if not (out / DATA_FILE).is_file() or not (out / "index.html").is_file():
            if out.is_dir() and not any(out.iterdir()):
                out.rmdir()
            else:
                raise ZooError(f"{out} exists and is not an explorer folder: choose an empty or new --out folder")
        else:
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
            return
    tmp.rename(out)


def build_explorer(source=None, out: str | os.PathLike = "explorer", *, family=None, delay=None, lr=None,
                   mechanism=None, outcome=None, per_cell: int = tables.DEFAULT_PER_CELL,
                   max_points: int = DEFAULT_MAX_POINTS, n_boot: int = 200,
                   progress: Callable[[int, int], None] | None = None, load_as: str | None = None) -> ExplorerReport:
    """Write a self-contained explorer of ``source`` into the folder ``out`` (open ``out/index.html``).

    ``source``: as :func:`zoo.load_zoo` takes it (None: the bundled sample; a release folder; a Hub id), a
    :class:`zoo.api.Zoo`, or a metadata table (a DataFrame or a ``.parquet`` file: cells and fits only).
    Filters as ``load_zoo``'s (``family`` may name a pooled panel such as ``"no-post"``; ``delay`` a value,
    list or ``(low, high)`` range). ``per_cell`` networks of each cell get precomputed per-network panels
    (curves, outputs, principal-component trajectory; 0: none), thinned to ``max_points`` points per series.
    ``progress(done, total)`` follows the simulation. ``load_as`` is the source that the page's ``load_zoo``
    calls name (default: ``source`` itself; ``zoo push`` gives the Hub id). Raises
    :class:`zoo.errors.EmptyZooError` for an empty selection or an unlabelled zoo."""
    t0 = time.perf_counter()
    js = _plotly_js()  # first: a missing plotly fails before any work
    zoo, meta, described, call = _open(source)
    if load_as is not None:
        call = tables.source_call(load_as)
    if per_cell < 0 or max_points < 10:
        raise ZooError(f"per_cell must be >= 0 (got {per_cell}) and max_points >= 10 (got {max_points})")
    if not len(meta):
        raise EmptyZooError(f"{described} holds no network")
    df = _select(meta, family, delay, lr, mechanism, outcome).reset_index(drop=True)
    tables.check_labelled(df, described)
    notes = []
    weights = zoo is not None and "weights_file" in df.columns
    if not weights:
        notes.append("per-network panels unavailable: the source is a metadata table without weights; "
                     "explore the release folder or Hub repo it belongs to for them")
    cols = tables.networks_columns(df)
    picked = tables.pick_networks(df, per_cell) if weights else df.iloc[:0]
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        tmp.chmod(0o777 & ~current_umask())
        (tmp / NETS_DIR).mkdir()
        files = {}  # net_id -> the file of its cell
        cell_of = picked.assign(_cell=tables.cell_index(picked))
        size = 0
        if len(picked):
            done = [0]

            def step(k: int) -> None:
                done[0] += k
                if progress is not None:
                    progress(done[0], len(picked))

            by_cell: dict[int, dict] = {}
            cells = cell_of.set_index("net_id")["_cell"]
            for net_id, panels in network_panels(zoo, picked, max_points=max_points, progress=step):
                by_cell.setdefault(int(cells[net_id]), {})[net_id] = panels
                files[net_id] = int(cells[net_id])
            for c, nets in by_cell.items():
                size += _script(tmp / NETS_DIR / f"{c}.js", "zooNetsLoaded", nets)
        cols["panel_file"] = [files.get(n, -1) for n in cols["net_id"]]
        panel_list = tables.panels(df, n_boot=n_boot)
        n_cells = int(tables.cell_index(df).max()) + 1
        data = {"version": __version__, "source": described, "source_call": call, "n_networks": len(df),
                "filters": {k: v for k, v in {"family": family, "delay": delay, "lr": lr, "mechanism": mechanism,
                                              "outcome": outcome}.items() if v is not None},
                "per_cell": per_cell if weights else 0, "weights": weights, "notes": notes,
                "networks": cols, "panels": panel_list}
        size += _script(tmp / DATA_FILE, "zooDataLoaded", data)
        page = resources.files("zoo.explore")
        for name in PAGE_FILES:
            text = page.joinpath(name).read_text(encoding="utf-8")
            (tmp / name).write_text(text, encoding="utf-8")
            size += len(text.encode())
        (tmp / PLOTLY_FILE).write_text(js, encoding="utf-8")
        size += len(js.encode())
        _replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExplorerReport(out, len(df), n_cells, len(files), size, time.perf_counter() - t0, notes)


#: ``zoo push`` adds the explorer by default only to releases of at most this many networks (larger: ask for it)
PUSH_MAX_NETWORKS = 10_000


def explorer_files(folder: str | os.PathLike, workdir: str | os.PathLike, *, include: bool | None = None,
                   load_as: str | None = None, **options) -> tuple[dict[str, Path], str]:
    """The explorer of the release in ``folder`` as extra files for :func:`zoo.hub.push`
    (``explorer/<file>`` -> its copy under ``workdir``), and a line saying what was done. ``include`` None:
    only for releases of at most :data:`PUSH_MAX_NETWORKS` networks (and labelled ones); True: always (an
    unlabelled release is then an error); False: none. ``options`` go to :func:`build_explorer`."""
    from ..api import load_zoo
    from ..layout import EXPLORER_DIR, MANIFEST_PATH

    if include is False:
        return {}, "explorer not included"
    if not (Path(folder) / MANIFEST_PATH).is_file():
        return {}, ""  # not a release: zoo.hub.push says so
    zoo = load_zoo(folder, fetch=False)
    if include is None and len(zoo) > PUSH_MAX_NETWORKS:
        return {}, (f"explorer not included: {len(zoo):,d} networks > {PUSH_MAX_NETWORKS:,d} (pass --explorer to "
                    "include it)")
    try:
        rep = build_explorer(zoo, Path(workdir) / EXPLORER_DIR.rstrip("/"), load_as=load_as, **options)
    except EmptyZooError as err:
        if include:
            raise
        return {}, f"explorer not included: {err}"
    files = {EXPLORER_DIR + p.relative_to(rep.out).as_posix(): p for p in sorted(rep.out.rglob("*")) if p.is_file()}
    return files, f"explorer included ({len(files)} files, {rep.size_bytes / 1e6:.1f} MB): {EXPLORER_DIR}index.html"
