"""zoo.reference: importing the authors' per-network files (lr*_delay_*/process_*/) into a release."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from zoo import grids, labels, load_zoo
from zoo.cli import app
from zoo.errors import ZooError
from zoo.manifest import verify_folder
from zoo.model import PARAM_NAMES, RNN
from zoo.reference import REFERENCE_CLASSES, find_results_folder, import_reference
from zoo.store import read_info

NOPOST = grids.family_grid("nopost")
LR0, LR2 = NOPOST.lrs[0], NOPOST.lrs[2]  # 0.1 and 0.0517947...
FORMAT_COLUMNS = (
    "net_id family seed lr delay_ms post_ms response_ms tau_ms nomemory epochs epochs_run diverged final_loss "
    "final_accuracy final_reliability first_learned_epoch stable learned outcome mechanism psd_ratio "
    "label_version config weights_file weights_index curves_file reference_outcome").split()


class _Evil:
    """Unpickling this would run a shell command: the importer must refuse it (weights_only)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _state(seed: int, salt: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 * seed + salt)
    sd = RNN.from_seed(seed).state_dict()
    return {k: (v + 0.01 * torch.randn(v.shape, generator=g)).contiguous() for k, v in sd.items()}


def _curves(kind: str, n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "learned":
        acc = np.full(n, 0.95)
        rel = 0.9 + 0.05 * rng.random(n)
        acc[: n // 4] = 0.5
    elif kind == "unstable":
        acc = np.where(np.arange(n) % 3 == 0, 0.3, 0.95)
        rel = acc.copy()
    else:
        acc = 0.5 + 0.1 * rng.random(n)
        rel = 0.5 + 0.05 * rng.random(n)
    return {"loss_list": np.linspace(1.0, 0.1, n) + 0.01 * rng.random(n),
            "reaction_accuracy_list": acc, "reaction_reliability_list": rel,
            "W_rec_grad_list": rng.random(n)}


def _write_net(root: Path, lr_text: str, d_text: str, seed: int, *, state=None, curves=None, cls=None,
               psd=None) -> Path:
    d = root / f"lr{lr_text}_delay_{d_text}" / f"process_{seed}"
    d.mkdir(parents=True)
    if state is not None:
        torch.save(state, d / "model_final.pt")
    if curves is not None:
        np.savez(d / "training_details.npz", **curves)
    if cls is not None:
        (d / "class.txt").write_text(f"{cls}\n")
    if psd is not None:
        (d / "psd_ratio.txt").write_text(f"{psd!r}\n")
    return d


def _write_tree(root: Path, marker: Path) -> dict:
    """A nopost results folder with good and broken network folders; returns what was written per folder."""
    good: dict[str, dict] = {}
    rule = NOPOST.epochs_for(LR0)  # 1000 epochs (also for LR2 and the off-grid lr)
    cases = [
        # (lr text, delay text, seed, kind, class, psd, epochs)
        (repr(LR0), repr(0.1 * 3), 0, "learned", 2, 0.8123456789012345, rule),   # 300 ms, slow point
        (repr(LR0), repr(0.1 * 3), 1, "learned", 1, 0.21, rule),                 # limit cycle
        (repr(LR0), repr(0.0), 0, "none", 0, None, rule),                         # no learning
        (repr(LR2 * (1 + 1e-12)), repr(0.02 * 2), 3, "unstable", 3, None, rule),  # lr matched to the grid
        (repr(LR2 * (1 + 1e-12)), repr(0.02 * 2), 4, "learned", 2, 0.9, 50),      # epochs from the curves
        (repr(0.05), repr(0.02 * 2), 5, "none", 0, None, rule),                   # off-grid lr: kept
    ]
    for lr_t, d_t, seed, kind, cls, psd, n in cases:
        st, cv = _state(seed, len(good)), _curves(kind, n, seed)
        folder = _write_net(root, lr_t, d_t, seed, state=st, curves=cv, cls=cls, psd=psd)
        good[f"{folder.parent.name}/{folder.name}"] = {"state": st, "curves": cv, "cls": cls, "psd": psd,
                                                       "lr": float(lr_t), "delay": float(d_t), "seed": seed,
                                                       "epochs": n}
    d40 = repr(0.02 * 2)
    # imported with a gap
    st = _state(7, 7)
    f = _write_net(root, repr(LR0), d40, 7, state=st, curves=_curves("learned", rule, 7), cls="banana")
    good[f"{f.parent.name}/{f.name}"] = {"state": st, "cls": None, "psd": None, "seed": 7}
    st = _state(8, 8)
    f = _write_net(root, repr(LR0), d40, 8, state=st, curves=_curves("none", rule, 8))  # no class.txt
    good[f"{f.parent.name}/{f.name}"] = {"state": st, "cls": None, "psd": None, "seed": 8}
    st = _state(9, 9)
    f = _write_net(root, repr(LR0), d40, 9, state=st, curves=_curves("learned", rule, 9), cls=1)  # no psd file
    good[f"{f.parent.name}/{f.name}"] = {"state": st, "cls": 1, "psd": None, "seed": 9}
    # skipped
    _write_net(root, repr(LR0), d40, 20, curves=_curves("none", rule, 20), cls=0)  # no weights
    bad = _write_net(root, repr(LR0), d40, 21, state=_state(21, 0), cls=0)
    (bad / "training_details.npz").write_bytes(b"PK\x03\x04 this is not a zip")  # corrupt curves
    _write_net(root, repr(LR0), d40, 22, state=_state(22, 0), cls=0)  # no curves at all
    extra = {**_state(23, 0), "W_extra.weight": torch.zeros(3)}
    _write_net(root, repr(LR0), d40, 23, state=extra, curves=_curves("none", rule, 23), cls=0)
    wrong = {**_state(24, 0), "W_rec.weight": torch.zeros(50, 50)}
    _write_net(root, repr(LR0), d40, 24, state=wrong, curves=_curves("none", rule, 24), cls=0)
    evil = {**_state(25, 0), "W_in.bias": _Evil(marker)}
    _write_net(root, repr(LR0), d40, 25, state=evil, curves=_curves("none", rule, 25), cls=0)
    short = _curves("none", rule, 26)
    short["reaction_reliability_list"] = short["reaction_reliability_list"][:10]
    _write_net(root, repr(LR0), d40, 26, state=_state(26, 0), curves=short, cls=0)
    # not network folders
    (root / "plots").mkdir()
    (root / "summary.csv").write_text("x\n")
    (root / f"lr{LR0!r}_delay_{d40}" / "process_x").mkdir()
    return good


SKIPPED = {"process_20": "no model_final.pt", "process_21": "unreadable training_details.npz",
           "process_22": "no training_details.npz", "process_23": "unexpected state_dict keys",
           "process_24": "has shape (50, 50)", "process_25": "refused by torch.load(weights_only=True)",
           "process_26": "differ in length"}


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    base = tmp_path_factory.mktemp("reference")
    marker = base / "PWNED"
    good = _write_tree(base / "results", marker)
    rep = import_reference(base, "nopost", base / "zoo")  # the parent: finds results/ itself
    return base, good, rep, marker


def test_report_lists_broken_folders(imported):
    base, good, rep, marker = imported
    assert not marker.exists()  # the pickled object was never executed
    assert rep.found == len(good) + len(SKIPPED)
    assert rep.imported == len(good)
    assert rep.skipped == len(SKIPPED)
    skipped = {p["folder"].split("/")[-1]: p["problem"] for p in rep.problems if p["action"] == "skipped"}
    assert set(skipped) == set(SKIPPED)
    for name, text in SKIPPED.items():
        assert text in skipped[name], (name, skipped[name])
    gaps = {p["folder"].split("/")[-1]: p["problem"] for p in rep.problems if p["action"] == "imported"}
    assert "class.txt" in gaps["process_7"] and "banana" in gaps["process_7"]
    assert "no class.txt" in gaps["process_8"]
    assert "psd_ratio.txt" in gaps["process_9"]
    ignored = {p["folder"] for p in rep.problems if p["action"] == "ignored"}
    assert ignored == {"plots", f"lr{LR0!r}_delay_{0.02 * 2!r}/process_x"}
    info = read_info(base / "zoo")
    assert info["import_problems"] == rep.problems
    src = info["imported_from"]
    assert src["path"] == str((base / "results").resolve()) and src["family"] == "nopost"
    assert src["networks_imported"] == len(good) and src["networks_skipped"] == len(SKIPPED)
    assert src["epochs_from"] == {"family_rule": len(good) - 1, "curves": 1}
    assert src["lr_off_grid"] == [0.05]


def test_release_verifies_and_loads(imported):
    base, good, rep, _ = imported
    out = base / "zoo"
    assert verify_folder(out)
    z = load_zoo(out)
    assert len(z) == len(good)
    assert [c for c in FORMAT_COLUMNS if c not in z.metadata.columns] == []
    assert "reference_psd_ratio" in z.metadata.columns
    assert sorted(p.relative_to(out).as_posix() for p in (out / "weights").rglob("*.safetensors")) == [
        "weights/nopost/nopost-d000-000.safetensors", "weights/nopost/nopost-d040-000.safetensors",
        "weights/nopost/nopost-d300-000.safetensors"]
    assert set(z.metadata["weights_file"]) == {f"weights/nopost/nopost-d{d:03d}-000.safetensors" for d in (0, 40, 300)}


def _by_folder(z, good):
    """folder -> Network, matched through (delay, seed) (unique in the fixture)."""
    out = {}
    for rel, g in good.items():
        d_ms = round(float(rel.split("_delay_")[1].split("/")[0]) * 1000)
        hit = z.metadata[(z.metadata.delay_ms == d_ms) & (z.metadata.seed == g["seed"])]
        assert len(hit) == 1, rel
        out[rel] = z[hit.net_id.iloc[0]]
    return out


def test_weights_round_trip_bitwise(imported):
    base, good, _, _ = imported
    z = load_zoo(base / "zoo")
    for rel, net in _by_folder(z, good).items():
        sd = net.state_dict()
        assert list(sd) == list(PARAM_NAMES)
        for n in PARAM_NAMES:
            want = good[rel]["state"][n]
            assert sd[n].dtype == torch.float32 and sd[n].shape == want.shape
            assert torch.equal(sd[n].view(torch.int32), want.view(torch.int32)), (rel, n)


def test_labels_and_configs_round_trip(imported):
    base, good, _, _ = imported
    z = load_zoo(base / "zoo")
    for rel, net in _by_folder(z, good).items():
        g = good[rel]
        want = REFERENCE_CLASSES[g["cls"]] if g["cls"] is not None else None
        assert net.row["reference_outcome"] == want or (want is None and pd.isna(net.row["reference_outcome"]))
        if g["psd"] is None:
            assert np.isnan(net.row["reference_psd_ratio"])
        else:
            assert net.row["reference_psd_ratio"] == g["psd"]  # exact
        cfg = net.config
        assert cfg.family == "nopost" and cfg.seed == g["seed"] and cfg.post_ms == 0 and cfg.tau_ms == 10.0
        if "lr" in g:
            assert cfg.delay_ms == round(g["delay"] * 1000)
            assert cfg.lr == (0.05 if g["lr"] == 0.05 else min(NOPOST.lrs, key=lambda x: abs(x - g["lr"])))
            assert cfg.epochs == g["epochs"] == net.row["epochs_run"]
            c = net.curves()
            np.testing.assert_array_equal(c["accuracy"], g["curves"]["reaction_accuracy_list"].astype(np.float32))
            np.testing.assert_array_equal(c["grad_norm"], g["curves"]["W_rec_grad_list"].astype(np.float32))
            assert net.row["final_loss"] == float(np.float32(g["curves"]["loss_list"][-1]))
        assert cfg.net_id == net.row["net_id"]
    # grid lrs are the exact grid values, so net_ids are those of a build of the same networks
    cfg = next(n for r, n in _by_folder(z, good).items() if r.endswith("process_3")).config
    assert cfg.lr == LR2


def test_our_labels_are_recomputed(imported):
    base, good, _, _ = imported
    z = load_zoo(base / "zoo")
    for net in _by_folder(z, good).values():
        c = net.curves()
        lab = labels.label_curves(c["accuracy"], c["reliability"])
        assert net.row["learned"] == lab.learned and net.row["stable"] == lab.stable
        if lab.learned:
            assert net.row["outcome"] in labels.MECHANISMS and np.isfinite(net.row["psd_ratio"])
            assert net.row["mechanism"] == net.row["outcome"]
        else:
            assert net.row["outcome"] == lab.outcome
    counts = z.metadata["outcome"].value_counts()
    assert counts.get("unstable") == 1 and counts.get("no_learning") == 3


def test_without_labels_and_cli(tmp_path):
    root = tmp_path / "results"
    _write_net(root, repr(LR0), repr(0.02), 0, state=_state(0, 1), curves=_curves("learned", 1000, 0), cls=2,
               psd=0.7)
    _write_net(root, repr(LR0), repr(0.02), 1, curves=_curves("none", 1000, 1), cls=0)  # no weights
    rep = import_reference(root, "nopost", tmp_path / "nolabel", label=False)
    assert rep.imported == 1 and rep.skipped == 1
    row = load_zoo(tmp_path / "nolabel").metadata.iloc[0]
    assert bool(row["learned"]) and row["outcome"] is None and np.isnan(row["psd_ratio"])
    assert row["reference_outcome"] == "slow_point" and row["reference_psd_ratio"] == 0.7
    assert read_info(tmp_path / "nolabel")["mechanisms_labelled"] is False

    runner = CliRunner()
    res = runner.invoke(app, ["import-reference", str(root), "--family", "nopost", "--out", str(tmp_path / "cli")])
    assert res.exit_code == 0, res.output
    assert "1 of 2 network folders imported" in res.output and "no model_final.pt" in res.output
    assert verify_folder(tmp_path / "cli")
    res = runner.invoke(app, ["import-reference", str(root), "--family", "nopost", "--out", str(tmp_path / "cli")])
    assert res.exit_code == 2 and "not empty" in res.output and "Traceback" not in res.output


def test_nomemory_axis_and_errors(tmp_path):
    root = tmp_path / "results_fixed"
    nm = grids.family_grid("nomemory")
    lr = nm.lrs[5]
    _write_net(root, repr(lr), repr(0.02 * 3), 2, state=_state(2, 0), curves=_curves("none", 3000, 2), cls=0)
    # a diverged run: stopped early with a loss above diverge_loss
    cv = _curves("none", 120, 3)
    cv["loss_list"][-1] = 1e4
    _write_net(root, repr(lr), repr(0.02 * 3), 3, state=_state(3, 0), curves=cv, cls=0)
    # learned at the end after a collapse: its sort script (final performance alone) wrote 1 = learned
    cv = _curves("unstable", 3000, 4)
    cv["reaction_accuracy_list"][-400:] = cv["reaction_reliability_list"][-400:] = 0.95
    _write_net(root, repr(lr), repr(0.02 * 3), 4, state=_state(4, 0), curves=cv, cls=1)  # no psd_ratio.txt
    rep = import_reference(tmp_path, "nomemory", tmp_path / "zoo", label=False)
    assert rep.imported == 3 and not rep.problems  # nomemory's learned networks have no psd_ratio.txt
    meta = load_zoo(tmp_path / "zoo").metadata.sort_values("seed")
    assert list(meta.delay_ms) == [0, 0, 0] and list(meta.response_ms) == [60, 60, 60]
    assert list(meta.epochs) == [3000, 3000, 3000] and list(meta.epochs_run) == [3000, 120, 3000]
    assert list(meta.diverged) == [False, True, False] and list(meta.nomemory) == [True, True, True]
    assert list(meta.reference_outcome) == ["no_learning", "no_learning", "learned"]
    assert list(meta.learned) == [False, False, True] and not meta.stable.iloc[2]  # the script's rule: learned
    assert list(meta.outcome.iloc[:2]) == ["no_learning", "no_learning"] and pd.isna(meta.outcome.iloc[2])
    assert json.loads(meta.config.iloc[0])["diverge_loss"] == nm.diverge_loss

    with pytest.raises(ZooError, match="no network folders"):
        import_reference(tmp_path / "zoo", "nopost", tmp_path / "other")
    empty = tmp_path / "broken" / "results"
    _write_net(empty, repr(LR0), repr(0.0), 0, cls=0)
    with pytest.raises(ZooError, match="no network could be imported"):
        import_reference(empty, "nopost", tmp_path / "none")


def test_results_folder_is_the_one_the_sort_scripts_labelled(tmp_path):
    """post trained into results_post_longer_epoch and results_post, and its sort script labelled results_post;
    nopost's sort script labelled results_nopost: the folder holding class.txt files is chosen."""
    post = grids.family_grid("post")
    lr = post.lrs[0]
    _write_net(tmp_path / "results_post_longer_epoch", repr(lr), "0.1", 0, state=_state(0, 0),
               curves=_curves("none", 10, 0))
    _write_net(tmp_path / "results_post", repr(lr), "0.1", 0, state=_state(0, 0), curves=_curves("none", 10, 0),
               cls=0)
    assert find_results_folder(tmp_path, "post") == tmp_path / "results_post"
    (tmp_path / "results_post" / f"lr{lr!r}_delay_0.1" / "process_0" / "class.txt").unlink()
    assert find_results_folder(tmp_path, "post") == tmp_path / "results_post_longer_epoch"  # none labelled
    _write_net(tmp_path / "results_nopost", repr(LR0), "0.04", 1, cls=0)
    assert find_results_folder(tmp_path, "nopost") == tmp_path / "results_nopost"


def test_narrow_folder_holding_the_broad_rates_imports_them_as_nopost(tmp_path):
    """results_finetune holds all 30 pooled no-post rates (the narrow scripts read them all from it): a broad
    rate there is a nopost network (its grid value, epoch rule and net_id), not an off-grid nopost-narrow one."""
    root = tmp_path / "results_finetune"
    narrow = grids.family_grid("nopost-narrow")
    _write_net(root, repr(narrow.lrs[0]), "0.04", 0, state=_state(0, 0), curves=_curves("none", 1000, 0), cls=0)
    broad_lr = NOPOST.lrs[-1]  # 0.001: 30,000 epochs by the rule; this run has 1,000
    _write_net(root, repr(broad_lr), "0.04", 1, state=_state(1, 0), curves=_curves("none", 1000, 1), cls=0)
    rep = import_reference(tmp_path, "nopost-narrow", tmp_path / "zoo", label=False)
    assert rep.imported == 2 and rep.lr_off_grid == []
    meta = load_zoo(tmp_path / "zoo").metadata.set_index("seed")
    assert meta.loc[0, "family"] == "nopost-narrow" and meta.loc[1, "family"] == "nopost"
    assert meta.loc[1, "lr"] == broad_lr and meta.loc[1, "net_id"].startswith("nopost-d040-")
    assert read_info(tmp_path / "zoo")["imported_from"]["networks_per_family"] == {"nopost": 1, "nopost-narrow": 1}
