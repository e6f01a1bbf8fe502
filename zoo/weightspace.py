"""Weight-space learning: the zoo's networks as a dataset of weights, with targets from their metadata.

- :func:`split_of_seed` / :func:`split_column` / :func:`with_split`: a deterministic train / validation /
  test split by seed (80 / 10 / 10 by a hash of the seed; seeds 0, 1 and 2 go one to each split, so a zoo of
  seeds 0..n-1 with n >= 3 has all three). A network's initial weights are a function of its seed alone (the
  same for every learning rate and delay), so networks that share initial weights always land in the same
  split. Any other zoo of three or more seeds whose hash leaves a split empty gets it filled (see
  :func:`split_column`). Releases record it in the ``split`` metadata column; for older releases it is
  computed on the fly, from the whole release.
- :class:`WeightDataset`: a ``torch.utils.data.Dataset`` over any zoo selection: flattened parameter vectors
  (:func:`flatten`, 10,602 floats for N = 100) or per-tensor dicts, with targets such as ``mechanism``,
  ``outcome``, ``lr``, ``delay_ms``; optional augmentation by permuting the hidden units
  (:func:`permute_units`), which leaves the network's function unchanged.
- :func:`to_hf_dataset`: the selection as a ``datasets.Dataset`` (metadata columns + weights as arrays).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from . import labels
from .errors import InvalidChoiceError
from .model import PARAM_NAMES, ModelConfig, param_shapes
from .rng import GOLDEN, splitmix64_int

SPLITS = ("train", "validation", "test")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
#: salt of the split hash (the bytes of "split"): u = splitmix64(seed * GOLDEN + salt) / 2^64
SPLIT_SALT = int.from_bytes(b"split", "big")
FORMATS = ("flat", "dict")
#: fixed class orders for the label columns (so class indices do not depend on the selection)
_VOCAB = {"mechanism": labels.MECHANISMS, "outcome": labels.OUTCOMES, "split": SPLITS}


#: the first seeds, one to each split: every zoo of seeds 0..n-1 (n >= 3) has train, validation and test
FIRST_SEEDS = dict(enumerate(SPLITS))


# ---------------------------------------------------------------- splits
def _hash_u(seed: int) -> float:
    return (splitmix64_int(int(seed) * GOLDEN + SPLIT_SALT) >> 11) / float(1 << 53)  # uniform in [0, 1)


def split_of_seed(seed: int) -> str:
    """``train``, ``validation`` or ``test``: the split of every network with this seed (80 / 10 / 10 by a hash
    of the seed; seeds 0, 1, 2 are train, validation, test)."""
    if int(seed) in FIRST_SEEDS:
        return FIRST_SEEDS[int(seed)]
    edges = np.cumsum(SPLIT_FRACTIONS)
    return SPLITS[int(np.searchsorted(edges, _hash_u(seed), side="right"))]


def splits_of_seeds(seeds) -> dict[int, str]:
    """The split of each of a zoo's seeds: :func:`split_of_seed`, except that with three or more seeds no split
    stays empty (an empty split takes, from the split with the most seeds, the seed of highest hash)."""
    of = {int(x): split_of_seed(int(x)) for x in pd.unique(np.asarray(seeds, dtype=np.int64))}
    if len(of) >= len(SPLITS):
        for empty in (s for s in SPLITS if s not in of.values()):
            largest = max(SPLITS, key=lambda s: sum(v == s for v in of.values()))
            of[max((x for x, v in of.items() if v == largest), key=_hash_u)] = empty
    return of


def split_column(metadata: pd.DataFrame) -> pd.Series:
    """The ``split`` of each row: the recorded column if the release has it, else computed from the seeds
    (:func:`splits_of_seeds`; pass the whole release, not a selection)."""
    if "split" in metadata.columns:
        return metadata["split"]
    seeds = metadata["seed"].astype("int64")
    of = splits_of_seeds(seeds)
    return pd.Series([of[int(x)] for x in seeds], index=metadata.index, name="split", dtype=object)


def with_split(metadata: pd.DataFrame) -> pd.DataFrame:
    """``metadata`` with its ``split`` column: as recorded, else computed (:func:`split_column`)."""
    if "split" in metadata.columns or "seed" not in metadata.columns:
        return metadata
    return metadata.assign(split=split_column(metadata).to_numpy())


# ---------------------------------------------------------------- weights as vectors
def flatten(state: dict[str, torch.Tensor]) -> torch.Tensor:
    """Parameters (single ``{name: (...)}`` or stacked ``{name: (K, ...)}``) -> (D,) or (K, D), in the order
    of ``PARAM_NAMES``, each tensor row-major (D = 10,602 for N = 100)."""
    stacked = state["W_rec.weight"].dim() == 3
    return torch.cat([state[n].reshape(state[n].shape[0], -1) if stacked else state[n].reshape(-1)
                      for n in PARAM_NAMES], dim=-1)


def unflatten(vec: torch.Tensor, n_units: int = ModelConfig.n_units) -> dict[str, torch.Tensor]:
    """Inverse of :func:`flatten` for (D,) or (K, D)."""
    shapes = param_shapes(ModelConfig(n_units=n_units))
    lead, out, i = vec.shape[:-1], {}, 0
    for n in PARAM_NAMES:
        size = int(np.prod(shapes[n]))
        out[n] = vec[..., i:i + size].reshape(*lead, *shapes[n])
        i += size
    if i != vec.shape[-1]:
        raise InvalidChoiceError("vector length", vec.shape[-1], [i], hint=f"for {n_units} units")
    return out


def permute_units(state: dict[str, torch.Tensor], perm: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same network with its hidden units reordered by ``perm`` (N,): unit i of the result is unit
    ``perm[i]`` of ``state``. Works on single or stacked (K, ...) parameters. The function is unchanged
    (the noise-free outputs are equal; with noise, each unit's draws follow its position, not the unit)."""
    stacked = state["W_rec.weight"].dim() == 3
    ax = 1 if stacked else 0
    p = perm.to(state["W_rec.weight"].device)
    return {
        "W_in.weight": state["W_in.weight"].index_select(ax, p),  # (N, 2): rows are units
        "W_in.bias": state["W_in.bias"].index_select(ax, p),
        "W_rec.weight": state["W_rec.weight"].index_select(ax, p).index_select(ax + 1, p),
        "W_rec.bias": state["W_rec.bias"].index_select(ax, p),
        "W_out.weight": state["W_out.weight"].index_select(ax + 1, p),  # (2, N): columns are units
        "W_out.bias": state["W_out.bias"].clone(),
    }


# ---------------------------------------------------------------- targets
def _target(meta: pd.DataFrame, name: str) -> tuple[torch.Tensor, list | None]:
    """(values, classes): class indices (int64) for a categorical or bool column, float32 values otherwise."""
    if name == "split":
        col = split_column(meta)
    elif name in meta.columns:
        col = meta[name]
    else:
        raise InvalidChoiceError("target", name, sorted(set(meta.columns) | {"split"}))
    if pd.api.types.is_bool_dtype(col):
        return torch.as_tensor(col.to_numpy(dtype=np.int64)), [False, True]
    if pd.api.types.is_numeric_dtype(col):
        return torch.as_tensor(col.to_numpy(dtype=np.float32)), None
    classes = list(_VOCAB.get(name, sorted(pd.unique(col.dropna()).tolist(), key=str)))
    index = {c: i for i, c in enumerate(classes)}
    return torch.as_tensor([index.get(v, -1) for v in col], dtype=torch.int64), classes


class WeightDataset(torch.utils.data.Dataset):
    """The weights of a zoo selection as a ``torch.utils.data.Dataset``.

    ``zoo``: a :class:`zoo.api.Zoo` (any filter); ``split``: None (all), ``train``, ``validation``, ``test``
    or a list; ``target``: a metadata column (``mechanism``, ``outcome``, ``learned``, ``lr``, ``delay_ms``,
    ``psd_ratio``, ..., ``split``) or a list of them (items then hold a dict); categorical targets are class
    indices into ``classes[name]``. Rows whose target is missing (e.g. the mechanism of a network that did
    not learn) are left out unless ``dropna=False`` (index -1 / NaN). ``format``: ``flat`` (D,) float32
    vectors or ``dict`` (``{name: tensor}``). ``augment``: each item's hidden units are permuted at random,
    reproducibly from (``seed``, :meth:`set_epoch`, index). The selection's weights are read once, into memory.
    Items: ``(x, y)``.
    """

    def __init__(self, zoo, split: str | Sequence[str] | None = None, target: str | Sequence[str] = "mechanism",
                 *, format: str = "flat", augment: bool = False, seed: int = 0, dropna: bool = True):
        if format not in FORMATS:
            raise InvalidChoiceError("format", format, FORMATS)
        meta = zoo.metadata.copy()
        meta["split"] = split_column(meta).to_numpy()
        if split is not None:
            want = [split] if isinstance(split, str) else list(split)
            for s in want:
                if s not in SPLITS:
                    raise InvalidChoiceError("split", s, SPLITS)
            meta = meta[meta["split"].isin(want)]
        self.target_names = [target] if isinstance(target, str) else list(target)
        ys = {t: _target(meta, t) for t in self.target_names}
        keep = np.ones(len(meta), dtype=bool)
        if dropna:
            for v, classes in ys.values():
                keep &= (v >= 0).numpy() if classes is not None else ~torch.isnan(v).numpy()
        meta = meta[keep].reset_index(drop=True)
        self.metadata = meta
        self.classes = {t: c for t, (_, c) in ys.items() if c is not None}
        self.targets = {t: v[torch.from_numpy(keep)] for t, (v, _) in ys.items()}
        self.format, self.augment, self.seed, self.epoch = format, bool(augment), int(seed), 0
        self.weights: dict[str, torch.Tensor] = {}  # name -> (K, ...)
        if len(meta):
            sub = zoo.filter(net_id=list(meta["net_id"]))  # keeps the zoo's order, which is meta's
            assert list(sub.metadata["net_id"]) == list(meta["net_id"])
            self.weights = sub.weights()
        self.n_units = int(self.weights["W_rec.weight"].shape[-1]) if len(meta) else ModelConfig.n_units

    def __len__(self) -> int:
        return len(self.metadata)

    def set_epoch(self, epoch: int) -> None:
        """Use the permutations of another epoch (with ``augment``)."""
        self.epoch = int(epoch)

    @property
    def dim(self) -> int:
        """Length of a flat vector."""
        return sum(int(np.prod(s)) for s in param_shapes(ModelConfig(n_units=self.n_units)).values())

    def permutation(self, i: int) -> torch.Tensor:
        """The unit permutation of item ``i`` at the current epoch."""
        key = splitmix64_int(splitmix64_int(self.seed * GOLDEN + self.epoch) + i) & ((1 << 63) - 1)
        return torch.randperm(self.n_units, generator=torch.Generator().manual_seed(key))

    def __getitem__(self, i: int):
        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} out of range for a dataset of {len(self)}")
        i = int(i) % len(self)
        state = {n: w[i] for n, w in self.weights.items()}
        if self.augment:
            state = permute_units(state, self.permutation(i))
        x = flatten(state) if self.format == "flat" else state
        y = {t: v[i] for t, v in self.targets.items()}
        return x, (y[self.target_names[0]] if len(y) == 1 else y)


# ---------------------------------------------------------------- Hugging Face datasets
def to_hf_dataset(zoo, *, format: str = "dict", columns: Sequence[str] | None = None):
    """The selection as a ``datasets.Dataset``: one row per network, its metadata ``columns`` (default: all,
    plus ``split``) and its weights as float32 array features: ``format="dict"`` one column per tensor
    (``W_rec.weight``: Array2D (N, N), biases: length-N sequences, ...), ``"flat"`` one ``weights`` column
    of length D."""
    import datasets

    if format not in FORMATS:
        raise InvalidChoiceError("format", format, FORMATS)
    meta = zoo.metadata.copy()
    meta["split"] = split_column(meta).to_numpy()
    if columns is not None:
        bad = [c for c in columns if c not in meta.columns]
        if bad:
            raise InvalidChoiceError("column", bad[0], list(meta.columns))
        meta = meta[list(columns)]
    table = datasets.Dataset.from_pandas(meta.reset_index(drop=True), preserve_index=False)
    if not len(zoo):
        return table
    w = zoo.weights()  # name -> (K, ...) float32, in the order of the metadata
    f32 = datasets.Value("float32")
    if format == "flat":
        flat = flatten(w).numpy()
        data, feats = {"weights": flat}, {"weights": datasets.Sequence(f32, length=flat.shape[1])}
    else:
        data = {n: w[n].numpy() for n in PARAM_NAMES}
        feats = {n: (datasets.Array2D(shape=tuple(v.shape[1:]), dtype="float32") if v.ndim == 3
                     else datasets.Sequence(f32, length=v.shape[1])) for n, v in data.items()}
    arrays = datasets.Dataset.from_dict(data, features=datasets.Features(feats))
    return datasets.concatenate_datasets([table, arrays], axis=1)
