"""The loader: ``load_zoo(source, **filters)`` -> :class:`Zoo` of :class:`Network` objects.

A source is a local release folder, a Hub dataset id (``ORG/NAME`` or ``ORG/NAME@REV``), or nothing (the
sample zoo bundled with the package). The metadata table is read first; weights are read lazily, and only
for the selected networks (from the Hub, only the shards that hold them are downloaded). Where the files
come from is a :class:`zoo.sources.Source`: :class:`zoo.sources.LocalSource` or :class:`zoo.hub_source.HubSource`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from functools import cached_property
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import labels, layout, store
from .config import NetConfig
from .errors import CorruptFileError, InvalidChoiceError, SourceNotFoundError
from .layout import snapshots_table_path
from .model import PARAM_NAMES, RNN, ModelConfig, param_shapes
from .sources import LocalSource, Source
from .task import TaskSpec
from .weightspace import WeightDataset, to_hf_dataset, with_split

#: filters with a fixed vocabulary
FILTER_CHOICES = {"mechanism": labels.MECHANISMS, "outcome": labels.OUTCOMES}
#: the filters of :func:`load_zoo`, :func:`select` and ``zoo pull``: keyword -> metadata column (any other
#: metadata column filters by its own name)
FILTERS = {"family": "family", "delay": "delay_ms", "lr": "lr", "seed": "seed", "mechanism": "mechanism",
            "outcome": "outcome", "learned": "learned", "tau": "tau_ms", "post": "post_ms",
            "response": "response_ms", "net_id": "net_id", "split": "split"}


def bundled_sample_path() -> Path:
    """Folder of the sample zoo shipped inside the package."""
    return Path(str(resources.files("zoo").joinpath("sample_zoo")))


def open_source(source: str | os.PathLike | None = None, *, revision: str | None = None,
                local_files_only: bool | None = None, cache_dir: str | None = None, verify: bool = True) -> Source:
    """Resolve ``source`` to a local folder source or a Hub source."""
    if source is None:
        return LocalSource(bundled_sample_path(), verify)
    path = Path(source).expanduser()
    if path.exists():
        return LocalSource(path, verify)
    from .hub_env import looks_like_repo_id, parse_repo_id

    if isinstance(source, str) and looks_like_repo_id(source):
        from .hub_source import HubSource

        repo_id, rev = parse_repo_id(source)
        return HubSource(repo_id, revision or rev, cache_dir=cache_dir, local_files_only=local_files_only)
    raise SourceNotFoundError(f"zoo source {str(source)!r} is neither an existing folder nor a Hub dataset id "
                              "(ORG/NAME or ORG/NAME@REVISION)")


# ---------------------------------------------------------------- filtering
def _is_range(v) -> bool:
    return isinstance(v, tuple) and len(v) == 2


def _values(v) -> list:
    return list(v) if isinstance(v, (list, set, frozenset, np.ndarray, pd.Series)) else [v]


def select(df: pd.DataFrame, **filters) -> pd.DataFrame:
    """Rows of the metadata table matching every filter: a value, a list of values, or a (low, high) range
    (inclusive). Values that the zoo does not contain raise :class:`InvalidChoiceError` with the valid ones."""
    mask = np.ones(len(df), dtype=bool)
    for key, want in filters.items():
        if want is None:
            continue
        col = FILTERS.get(key, key)
        if col not in df.columns:
            raise InvalidChoiceError("filter", key, sorted(set(FILTERS) | set(df.columns)))
        series = df[col]
        numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
        if isinstance(want, (dict, str, bytes)) and (isinstance(want, dict) or numeric):
            _check_scalar(key, want, numeric)
        if _is_range(want):
            lo, hi = want
            for v in (lo, hi):
                if v is not None:
                    _check_scalar(key, v, numeric)
            if lo is not None and hi is not None and lo > hi:
                raise InvalidChoiceError(key, want, hint="a (low, high) range needs low <= high")
            m = np.ones(len(df), dtype=bool)
            if lo is not None:
                m &= (series >= lo).to_numpy()
            if hi is not None:
                m &= (series <= hi).to_numpy()
            mask &= m
            continue
        wanted = _values(want)
        if not wanted:
            raise InvalidChoiceError(key, want, hint="an empty list selects no network; give at least one value "
                                     "(or None for all)")
        for w in wanted:
            _check_scalar(key, w, numeric)
        if key in FILTER_CHOICES:
            for w in wanted:
                if w not in FILTER_CHOICES[key]:
                    raise InvalidChoiceError(key, w, FILTER_CHOICES[key])
        if pd.api.types.is_float_dtype(series) and not pd.api.types.is_bool_dtype(series):
            m = np.zeros(len(df), dtype=bool)
            for w in wanted:
                hit = np.isclose(series.to_numpy(dtype=float), float(w), rtol=1e-6, atol=0)
                if not hit.any():
                    raise InvalidChoiceError(key, w, sorted(float(x) for x in pd.unique(series.dropna())),
                                             hint="not in this zoo")
                m |= hit
        else:
            m = series.isin(wanted).to_numpy()
            if key not in FILTER_CHOICES:
                found = set(pd.unique(series[m]).tolist())  # the matched values only: cheap for long lists
                for w in wanted:
                    if w not in found:
                        present = pd.unique(series.dropna()).tolist()
                        raise InvalidChoiceError(key, w, sorted(present, key=str), hint="not in this zoo")
        mask &= m
    return df[mask]


def _check_scalar(key: str, value, numeric: bool) -> None:
    """A filter value must be one plain value: a number for a numeric column, never a dict or a list in a list."""
    bad = isinstance(value, (dict, list, set, tuple)) or (
        numeric and (isinstance(value, (str, bytes, bool)) or not isinstance(value, (int, float, np.number))))
    if bad:
        raise InvalidChoiceError(key, value, hint=("a number, a list of numbers or a (low, high) range" if numeric
                                                   else "a value, a list of values or a (low, high) range"))


# ---------------------------------------------------------------- networks
class Network:
    """One trained network: its metadata row, weights (loaded on first use), model and simulations."""

    def __init__(self, row: pd.Series, zoo: Zoo):
        self.row = row
        self._zoo = zoo

    def __repr__(self) -> str:
        r = self.row
        label = r.get("outcome", "unlabelled")
        return (f"Network({r['net_id']!r}, family={r['family']!r}, delay_ms={r['delay_ms']}, lr={r['lr']:.4g}, "
                f"seed={r['seed']}, outcome={label!r})")

    def __getattr__(self, name):
        row = self.__dict__.get("row")
        if row is not None and name in row.index:
            return row[name]
        raise AttributeError(name)

    @property
    def metadata(self) -> dict:
        return self.row.to_dict()

    @cached_property
    def config(self) -> NetConfig:
        try:
            return NetConfig.from_dict(json.loads(self.row["config"]))
        except (ValueError, TypeError, KeyError) as err:
            raise CorruptFileError(f"{self._zoo.source.label}/{layout.METADATA_PATH}",
                                   f"config of network {self.row['net_id']!r}", f"not a network configuration ({err})"
                                   ) from None

    @property
    def task(self) -> TaskSpec:
        return self.config.task()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The network's weights under the reference names (float32 CPU tensors)."""
        return self._zoo._state_dict(self.row)

    def model(self, device: str | torch.device = "cpu") -> RNN:
        """A ready ``zoo.model.RNN`` holding the weights."""
        net = RNN(self.config.model_config())
        net.load_state_dict(self.state_dict())
        return net.to(device).eval()

    def curves(self) -> pd.DataFrame:
        """Per-epoch loss, accuracy, reliability and W_rec gradient norm."""
        path = self._zoo.source.local_path(self.row["curves_file"])
        c = store.read_curves(path, [self.row["net_id"]])[self.row["net_id"]]
        return pd.DataFrame(c).rename_axis("epoch")

    def retrain(self, epochs=None, *, curves: bool = True, device: str | torch.device = "cpu",
                progress: bool = False):
        """Train this network again from its configuration; its weights at ``epochs`` (None: 0, 1, 2, 5, 10,
        ..., final; ``"all"``; or a list) as a :class:`zoo.trajectories.Trajectory`, with its curves. Bitwise
        equal to the release where its provenance allows (``.status``, ``.final_max_abs_diff``)."""
        from .trajectories import retrain

        return retrain(self._zoo.filter(net_id=[self.row["net_id"]]), epochs, curves=curves, device=device,
                       progress=progress)[0]

    def snapshots(self):
        """The weights stored along training (releases built with ``zoo build --snapshots log``: epochs 0, 1, 2,
        5, ..., final) as a :class:`zoo.trajectories.Trajectory`; read (or downloaded) on first call only."""
        from .trajectories import read_snapshots

        return read_snapshots(self._zoo, self.row)

    @torch.no_grad()
    def simulate(self, *, extend: int = 1, noise: bool = True, random_init: bool = True,
                 seed: int | None = None, r0: torch.Tensor | None = None, trial_types: Sequence[int] | None = None,
                 device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """Run the network on its task, ``extend`` times the nominal trial length (zero input after the trial).

        Returns ``inputs`` (T, B, 2), ``outputs`` (T, B, 2), ``rates`` (T + 1, B, N), ``targets`` (nominal
        T only) and ``time_ms`` (T,). By default all 128 trials of a training batch; ``trial_types`` picks
        trials (e.g. ``[0, 1]``). With ``seed`` the noise and initial state are reproducible.
        """
        task = self.task
        T = task.n_steps * extend
        u = task.inputs(device, n_steps=T)
        types = task.trial_types(device)
        if trial_types is not None:
            pick = torch.tensor([int(torch.nonzero(types == t)[0]) for t in trial_types], device=device)
            u = u[:, pick]
        net = self.model(device)
        outputs, rates = net(u, r0=r0, noise=noise, random_init=random_init, seed=seed)
        return {"inputs": u, "outputs": outputs, "rates": rates, "targets": task.targets(device),
                "time_ms": torch.arange(T, device=device) * task.dt_ms}


class Zoo:
    """A filtered view of a zoo release: ``.metadata`` (DataFrame), ``len``, iteration, ``zoo[i]``."""

    def __init__(self, source: Source, metadata: pd.DataFrame, info: dict | None = None):
        self.source = source
        self.metadata = metadata.reset_index(drop=True)
        self.info = info or {}
        self._weights_cache: dict[str, dict[str, torch.Tensor]] = {}

    def __repr__(self) -> str:
        return f"Zoo({len(self)} networks from {self.source.description})"

    def __len__(self) -> int:
        return len(self.metadata)

    def __iter__(self) -> Iterator[Network]:
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, key) -> Network:
        if isinstance(key, str):
            hits = np.flatnonzero(self.metadata["net_id"].to_numpy() == key)
            if not len(hits):
                raise KeyError(f"no network {key!r} in this zoo")
            key = int(hits[0])
        if not -len(self) <= key < len(self):
            raise IndexError(f"network index {key} out of range for a zoo of {len(self)}")
        return Network(self.metadata.iloc[key], self)

    def filter(self, **filters) -> Zoo:
        """A sub-zoo; same filters as :func:`load_zoo`."""
        return Zoo(self.source, select(self.metadata, **filters), self.info)

    def counts(self, by: Sequence[str] = ("delay_ms", "lr"), column: str = "outcome") -> pd.DataFrame:
        """Table of label counts per group."""
        return self.metadata.groupby(list(by))[column].value_counts().unstack(fill_value=0)

    def fetch(self, curves: bool = False, snapshots: bool = False) -> list[str]:
        """Make the files of the selected networks local (download from the Hub if needed); their stored
        snapshots (``zoo build --snapshots``) only with ``snapshots``."""
        files = set(self.metadata["weights_file"]) | (set(self.metadata["curves_file"]) if curves else set())
        if snapshots and "snapshots_file" in self.metadata:
            files |= {f for rel in self.metadata["snapshots_file"].dropna().unique()
                      for f in (rel, snapshots_table_path(rel))}
        files = sorted(files)
        self.source.local_paths(files)
        return files

    def curves(self) -> dict[str, dict[str, np.ndarray]]:
        """Every selected network's per-epoch curves, ``{net_id: {curve: (epochs_run,)}}`` (one read per curve
        file; from the Hub, only the curve files holding the selection are downloaded)."""
        out: dict[str, dict[str, np.ndarray]] = {}
        for cf, grp in self.metadata.groupby("curves_file", sort=False):
            out.update(store.read_curves(self.source.local_path(cf), grp["net_id"].tolist()))
        return {nid: out[nid] for nid in self.metadata["net_id"]}

    def weights(self) -> dict[str, torch.Tensor]:
        """Stacked weights of every selected network, in the order of ``.metadata`` (name -> (K, ...))."""
        out = {n: np.empty((len(self), *s), dtype=np.float32) for n, s in _shapes(self).items()}
        codes, files = pd.factorize(self.metadata["weights_file"])
        paths = self.source.local_paths(list(files))  # one batch: fetch (Hub), verify
        index = _weight_rows(self.metadata)
        ids = self.metadata["net_id"].to_numpy()
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(files) + 1))
        for j, wf in enumerate(files):
            pos = order[bounds[j]:bounds[j + 1]]
            w = store.read_weights(paths[wf], index[pos], net_ids=ids[pos].tolist())
            for n in PARAM_NAMES:
                out[n][pos] = w[n].numpy()
        return {n: torch.from_numpy(v) for n, v in out.items()}

    def retrain(self, epochs=None, *, curves: bool = False, device: str | torch.device = "cpu",
                batch_size: int | None = None, progress=True):
        """Train every selected network again, together; their weights at ``epochs`` (see
        :func:`zoo.trajectories.retrain`) as :class:`zoo.trajectories.Trajectories`."""
        from .trajectories import retrain

        return retrain(self, epochs, curves=curves, device=device, batch_size=batch_size, progress=progress)

    def weight_dataset(self, split=None, target="mechanism", **kwargs):
        """A ``torch.utils.data.Dataset`` of the selected networks' weights and targets
        (:class:`zoo.weightspace.WeightDataset`: ``format``, ``augment``, ``seed``, ``dropna``)."""
        return WeightDataset(self, split, target, **kwargs)

    def to_hf_dataset(self, *, format: str = "dict", columns=None):
        """The selection as a ``datasets.Dataset``: metadata columns and the weights as float32 array features
        (:func:`zoo.weightspace.to_hf_dataset`)."""
        return to_hf_dataset(self, format=format, columns=columns)

    def _state_dict(self, row: pd.Series) -> dict[str, torch.Tensor]:
        index = _weight_rows(pd.DataFrame([row]))
        w = store.read_weights(self.source.local_path(row["weights_file"]), index, net_ids=[row["net_id"]])
        return {n: w[n][0].clone() for n in PARAM_NAMES}


def _weight_rows(metadata: pd.DataFrame) -> np.ndarray:
    """The ``weights_index`` column as int64; a non-integer or negative entry names the network."""
    col = metadata["weights_index"]
    values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values) | (values < 0) | (values != np.round(values))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CorruptFileError(layout.METADATA_PATH, f"weights_index of {metadata['net_id'].iloc[i]!r}",
                               f"{col.iloc[i]!r} is not a row number (0, 1, ...)")
    return values.astype(np.int64)


def _shapes(zoo: Zoo) -> dict[str, tuple[int, ...]]:
    n = ModelConfig.n_units
    if len(zoo):
        n = int(json.loads(zoo.metadata["config"].iloc[0]).get("n_units", n))
    return param_shapes(ModelConfig(n_units=n))


def load_zoo(source: str | os.PathLike | None = None, *, revision: str | None = None,
             local_files_only: bool | None = None, cache_dir: str | None = None, verify: bool = True,
             fetch: bool = True, **filters) -> Zoo:
    """Open a zoo and select networks.

    ``source``: a release folder, a Hub dataset id (``ORG/NAME``, ``ORG/NAME@REV``), or None for the bundled
    sample zoo. Filters (:data:`FILTERS`) take a value, a list of values, or a ``(low, high)`` range:
    ``family``, ``delay`` (ms), ``lr``, ``seed``, ``mechanism`` ('limit_cycle', 'slow_point'), ``outcome``
    ('no_learning', 'unstable', 'limit_cycle', 'slow_point'), ``learned``, ``tau`` (ms), ``post`` (ms),
    ``response`` (ms), ``net_id``, ``split``, or any metadata column by name. From the Hub, the weight shards of the selected networks are downloaded (``fetch=False`` defers
    that to first use) and verified; with ``local_files_only`` (or HF_HUB_OFFLINE=1) nothing is requested.
    ``verify`` (local folders): True / ``"auto"``, ``"full"`` or False; see :class:`LocalSource`.
    """
    src = open_source(source, revision=revision, local_files_only=local_files_only, cache_dir=cache_dir,
                      verify=verify)
    meta, info = src.read_tables()  # of one version, even while a writer switches in a new one
    meta = with_split(meta)  # releases before the split column: from the seeds
    selected = select(meta, **filters)
    zoo = Zoo(src, selected, info)
    if fetch and src.kind != "local" and len(zoo):
        zoo.fetch()
    return zoo
