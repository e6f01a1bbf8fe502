"""zoo.weightspace: seed-grouped splits, the weights Dataset, unit-permutation augmentation, to_hf_dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from zoo import layout, load_zoo, store
from zoo.errors import InvalidChoiceError
from zoo.labels import MECHANISMS
from zoo.model import PARAM_NAMES
from zoo.weightspace import (
    SPLITS,
    WeightDataset,
    flatten,
    permute_units,
    split_column,
    split_of_seed,
    splits_of_seeds,
    to_hf_dataset,
    unflatten,
    with_split,
)


# -- splits --------------------------------------------------------------------------------------------------
def test_split_is_a_function_of_the_seed():
    seeds = np.arange(20_000)
    a = [split_of_seed(s) for s in seeds]
    assert a == [split_of_seed(int(s)) for s in seeds]  # deterministic
    frac = pd.Series(a).value_counts(normalize=True)
    assert set(frac.index) == set(SPLITS)
    assert abs(frac["train"] - 0.8) < 0.01 and abs(frac["validation"] - 0.1) < 0.01 and abs(frac["test"] - 0.1) < 0.01
    # grouped by seed: every network of a seed (any lr, delay, family) is in the same split
    meta = pd.DataFrame({"seed": np.repeat(np.arange(50), 6), "lr": np.tile([0.1, 0.2, 0.3], 100)})
    col = split_column(meta)
    assert (meta.assign(split=col).groupby("seed")["split"].nunique() == 1).all()
    assert col.tolist() == [split_of_seed(s) for s in meta["seed"]]


def test_split_recorded_in_new_releases_and_computed_for_old(smoke_zoo):
    recorded = store.read_table(smoke_zoo / layout.METADATA_PATH)
    assert "split" in recorded.columns  # packaging records it
    assert recorded["split"].tolist() == [split_of_seed(s) for s in recorded["seed"]]
    raw = store.read_table(load_zoo().source.folder / layout.METADATA_PATH)  # the bundled sample records it too
    old = raw.drop(columns="split")  # a release from before the column: computed from its seeds, the same
    assert with_split(old)["split"].tolist() == raw["split"].tolist()
    sample = load_zoo()
    assert sample.metadata["split"].tolist() == [split_of_seed(s) for s in sample.metadata["seed"]]
    val = load_zoo(split="validation")
    assert len(val) and set(val.metadata["seed"]) == {s for s in range(8) if split_of_seed(s) == "validation"}
    parts = [set(load_zoo(smoke_zoo, split=s).metadata["net_id"]) if s in set(recorded["split"]) else set()
             for s in SPLITS]
    assert set().union(*parts) == set(recorded["net_id"]) and sum(map(len, parts)) == len(recorded)  # disjoint


# -- permutations --------------------------------------------------------------------------------------------
def test_unit_permutation_leaves_the_function_unchanged():
    net = load_zoo(mechanism="limit_cycle", delay=40)[0]
    sd = net.state_dict()
    perm = torch.randperm(100, generator=torch.Generator().manual_seed(0))
    psd = permute_units(sd, perm)
    assert not torch.equal(psd["W_rec.weight"], sd["W_rec.weight"])
    # float64, so that the other summation order of the permuted products stays far below the tolerance
    model, pmodel = net.model().double(), net.model()
    pmodel.load_state_dict(psd)
    pmodel.double()
    u = net.task.inputs(n_steps=3 * net.task.n_steps).double()  # 3x the trial: the memory and what follows
    r0 = torch.tanh(0.1 * torch.randn(u.shape[1], 100, generator=torch.Generator().manual_seed(1))).double()
    with torch.no_grad():
        out, rates = model(u, noise=False, random_init=False, r0=r0)
        pout, prates = pmodel(u, noise=False, random_init=False, r0=r0[:, perm])
    torch.testing.assert_close(pout, out, atol=1e-10, rtol=0)
    torch.testing.assert_close(prates, rates[..., perm], atol=1e-10, rtol=0)
    assert float((out[:, 0] - out[:, -1]).abs().max()) > 0.1  # the two trial types are told apart
    # a wrong permutation of W_out alone changes the outputs
    bad = dict(sd, **{"W_out.weight": sd["W_out.weight"][:, perm]})
    pmodel.load_state_dict(bad)
    pmodel.double()
    with torch.no_grad():
        assert float((pmodel(u, noise=False, random_init=False, r0=r0)[0] - out).abs().max()) > 1e-3
    # the inverse permutation restores the weights exactly; stacked weights work the same way
    back = permute_units(psd, torch.argsort(perm))
    assert all(torch.equal(back[n], sd[n]) for n in PARAM_NAMES)
    stacked = permute_units({n: v[None].repeat(2, *([1] * v.dim())) for n, v in sd.items()}, perm)
    assert all(torch.equal(stacked[n][1], psd[n]) for n in PARAM_NAMES)


# -- the Dataset ---------------------------------------------------------------------------------------------
def test_weight_dataset():
    z = load_zoo()
    ds = z.weight_dataset(target="mechanism")
    assert len(ds) == int(z.metadata["learned"].sum())  # networks without a mechanism are left out
    x, y = ds[0]
    assert x.shape == (10_602,) == (ds.dim,) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert ds.classes == {"mechanism": list(MECHANISMS)}
    assert [MECHANISMS[int(ds[i][1])] for i in range(len(ds))] == ds.metadata["mechanism"].tolist()
    nid = ds.metadata["net_id"].iloc[0]
    assert torch.equal(x, flatten(z[nid].state_dict()))
    assert all(torch.equal(a, b) for a, b in zip(unflatten(x).values(), z[nid].state_dict().values(), strict=True))
    assert len(WeightDataset(z, target="mechanism", dropna=False)) == len(z)

    train = WeightDataset(z, split="train", target=["lr", "outcome", "learned"], format="dict")
    assert len(train) == int((z.metadata["split"] == "train").sum())
    x, y = train[1]
    assert set(x) == set(PARAM_NAMES) and x["W_rec.weight"].shape == (100, 100)
    assert y["lr"].dtype == torch.float32 and y["outcome"].dtype == torch.int64 and y["learned"].dtype == torch.int64
    assert float(y["lr"]) == pytest.approx(train.metadata["lr"].iloc[1])

    aug = WeightDataset(z, target="delay_ms", augment=True, seed=3)
    x1, x2 = aug[0][0], aug[0][0]
    assert torch.equal(x1, x2) and not torch.equal(x1, flatten(z[aug.metadata["net_id"].iloc[0]].state_dict()))
    aug.set_epoch(1)
    assert not torch.equal(aug[0][0], x1)  # other permutations in another epoch
    assert torch.allclose(aug[0][0].sort().values, x1.sort().values)  # ... of the same weights
    batch = next(iter(torch.utils.data.DataLoader(aug, batch_size=8)))
    assert batch[0].shape == (8, 10_602) and batch[1].shape == (8,)
    with pytest.raises(InvalidChoiceError):
        WeightDataset(z, split="dev")
    with pytest.raises(InvalidChoiceError):
        WeightDataset(z, target="colour")
    with pytest.raises(InvalidChoiceError):
        WeightDataset(z, format="npz")


def test_to_hf_dataset():
    import datasets

    z = load_zoo(delay=40)
    hf = z.to_hf_dataset()
    assert isinstance(hf, datasets.Dataset) and hf.num_rows == len(z) == 32
    assert hf.features["W_rec.weight"] == datasets.Array2D(shape=(100, 100), dtype="float32")
    assert hf.features["W_out.bias"].feature.dtype == "float32" and hf.features["seed"].dtype == "int64"
    assert set(hf["split"]) <= set(SPLITS) and hf["net_id"] == z.metadata["net_id"].tolist()
    row = hf.with_format("torch")[3]
    sd = z[3].state_dict()
    assert all(torch.equal(row[n], sd[n]) for n in PARAM_NAMES)
    flat = to_hf_dataset(z, format="flat", columns=["net_id", "mechanism"])
    assert flat.column_names == ["net_id", "mechanism", "weights"] and flat.num_rows == 32
    assert flat.features["weights"].length == 10_602
    np.testing.assert_array_equal(np.asarray(flat[3]["weights"], dtype=np.float32), flatten(sd).numpy())
    with pytest.raises(InvalidChoiceError):
        z.to_hf_dataset(columns=["colour"])


def test_every_zoo_of_three_or_more_seeds_has_all_three_splits():
    for seeds in (range(3), range(8), range(20), [10, 11, 12], [5, 17, 40, 41]):
        of = splits_of_seeds(seeds)
        assert set(of.values()) == set(SPLITS), (list(seeds), of)
    assert splits_of_seeds(range(100)) == {s: split_of_seed(s) for s in range(100)}  # the paper zoo: by seed alone
    assert set(splits_of_seeds([0, 1]).values()) == {"train", "validation"}  # two seeds: two splits
    sample = load_zoo()  # the bundled sample: seeds 0..7
    assert len(WeightDataset(sample, split="test")) > 0 and len(WeightDataset(sample, split="validation")) > 0
