"""Grids and presets: the paper's families, overrides, errors, shards and summaries."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from zoo import families, grids, preset_files
from zoo.config import NetConfig
from zoo.errors import InvalidChoiceError
from zoo.grids import FAMILIES, FamilyGrid, family_grid, grid_summary, load_preset, make_grid, shards

PAPER_COUNTS = {"nopost": 31_500, "nopost-narrow": 31_500, "post": 6_300, "longtau": 4_200, "nomemory": 8_000}


@pytest.fixture(scope="module")
def paper():
    return make_grid("paper")


@pytest.fixture(scope="module")
def paper_shards(paper):
    return shards(paper, load_preset("paper").shard_size)


def _np_logspace(a, b, n):
    return tuple(float(x) for x in np.logspace(a, b, n))


# ---------------------------------------------------------------- presets and families


def test_presets_discovered():
    assert set(grids.PRESETS) >= set(FAMILIES) | {"paper", "sample", "smoke"}
    assert grids.PRESETS[:len(FAMILIES)] == FAMILIES
    assert grids.list_presets() == list(grids.PRESETS)
    for name in grids.PRESETS:
        p = load_preset(name)
        assert p.name == name and p.description and p.shard_size >= 1 and p.families
        if name in FAMILIES or name in ('paper', 'smoke', 'sample'):
            assert p.shard_size == 512
    assert FAMILIES == ("nopost", "nopost-narrow", "post", "longtau", "nomemory")


def test_paper_counts(paper):
    assert len(paper) == 81_500 == load_preset("paper").n_networks
    s = grid_summary(paper)
    assert s["networks"] == 81_500
    assert s["by_family"] == PAPER_COUNTS
    assert list(s["by_family"]) == list(FAMILIES)  # preset order
    for fam, n in PAPER_COUNTS.items():
        assert load_preset(fam).n_networks == n == family_grid(fam).n_networks


@pytest.mark.slow
def test_paper_expansion_fast_path(monkeypatch):
    """The fast expansion of the 81,500 paper networks equals the plain dataclass one, and is faster than it
    (best of 3 each, measured in this run: a ratio, never an absolute time)."""

    def best_of_3():
        times = []
        for _ in range(3):
            t = time.perf_counter()
            grid = make_grid("paper")
            times.append(time.perf_counter() - t)
        return min(times), grid

    fast_s, fast = best_of_3()
    monkeypatch.setattr(families, "_FAST_CONFIGS", False)
    slow_s, slow = best_of_3()
    assert fast == slow and [c.net_id for c in fast[::997]] == [c.net_id for c in slow[::997]]
    assert fast_s < slow_s, (fast_s, slow_s)


# The paper's learning rates, exactly (repr): they enter every network id, so they must never change
PAPER_LRS = {
    (-1, -3, 15): (0.1, 0.07196856730011521, 0.05179474679231213, 0.0372759372031494, 0.02682695795279726,
                   0.019306977288832506, 0.013894954943731374, 0.01, 0.0071968567300115215, 0.005179474679231213,
                   0.0037275937203149418, 0.002682695795279727, 0.0019306977288832496, 0.001389495494373139, 0.001),
    (-0.5, -2, 20): (0.31622776601683794, 0.26366508987303583, 0.2198392648862289, 0.1832980710832436,
                     0.1528306732658769, 0.12742749857031338, 0.10624678308940415, 0.08858667904100828,
                     0.07386199822079362, 0.06158482110660264, 0.05134832907437552, 0.04281332398719396,
                     0.035696988468260665, 0.029763514416313194, 0.024816289228368264, 0.0206913808111479,
                     0.017252105499420408, 0.01438449888287663, 0.011993539462092343, 0.01),
    (-1, -3, 10): (0.1, 0.05994842503189409, 0.03593813663804628, 0.021544346900318846, 0.01291549665014884,
                   0.007742636826811269, 0.004641588833612782, 0.0027825594022071257, 0.0016681005372000592, 0.001),
    (0, -3, 20): (1.0, 0.6951927961775606, 0.4832930238571753, 0.3359818286283782, 0.23357214690901226,
                  0.16237767391887217, 0.11288378916846892, 0.07847599703514614, 0.0545559478116852,
                  0.0379269019073225, 0.026366508987303583, 0.018329807108324367, 0.012742749857031341,
                  0.008858667904100831, 0.006158482110660267, 0.004281332398719396, 0.002976351441631319,
                  0.00206913808111479, 0.0014384498882876629, 0.001),
}


@pytest.mark.parametrize("rule", list(PAPER_LRS))
def test_logspace_is_numpys_up_to_pow_rounding(rule):
    """Same exponents as numpy.linspace; values within 1 ulp of numpy.logspace (whose pow is not correctly
    rounded and differs between numpy builds), and exactly the pinned values on every platform."""
    ours = grids.logspace(*rule)
    assert ours == PAPER_LRS[rule]
    exps = np.linspace(*rule)
    assert [math.log10(x) for x in ours] == pytest.approx(list(exps), rel=0, abs=1e-15)
    for x, y in zip(ours, np.logspace(*rule), strict=True):
        assert abs(x - float(y)) <= math.ulp(x), (x, float(y))


def test_learning_rates_match_reference_scripts():
    assert family_grid("nopost").lrs == PAPER_LRS[(-1, -3, 15)]
    assert family_grid("post").lrs == PAPER_LRS[(-1, -3, 15)]
    assert family_grid("longtau").lrs == PAPER_LRS[(-1, -3, 10)]
    assert family_grid("nomemory").lrs == PAPER_LRS[(0, -3, 20)]
    narrow = family_grid("nopost-narrow").lrs
    assert narrow == PAPER_LRS[(-0.5, -2, 20)][:15]
    assert len(narrow) == 15
    assert narrow[0] == pytest.approx(0.316, abs=1e-3) and narrow[-1] == pytest.approx(0.025, abs=5e-4)
    assert all(a > b for a, b in zip(narrow[:-1], narrow[1:], strict=True))
    assert family_grid("nopost").lrs[0] == 0.1 and family_grid("nopost").lrs[-1] == 0.001


def test_epoch_rule():
    nopost = family_grid("nopost")
    assert [nopost.epochs_for(lr) for lr in nopost.lrs] == [
        1000, 1000, 1000, 1000, 1118, 1553, 2159, 3000, 4168, 5792, 8048, 11182, 15538, 21590, 30000]
    post = family_grid("post")
    assert post.epochs_for(0.1) == 1000 and post.epochs_for(0.01) == 10_000 and post.epochs_for(0.001) == 100_000
    # int() truncation of the float64 quotient: 30 / 0.03 = 1000.0000000000001, 30 / 0.007 = 4285.71...
    assert nopost.epochs_for(0.03) == 1000 and nopost.epochs_for(0.007) == 4285 and nopost.epochs_for(1.0) == 1000
    # exactly the reference scripts' expression, for every paper network
    for fam, scale in (("nopost", 3e4 * 1e-3), ("nopost-narrow", 3e4 * 1e-3), ("longtau", 3e4 * 1e-3),
                       ("post", 1e5 * 1e-4 * 10)):
        g = family_grid(fam)
        for lr in g.lrs:
            assert g.epochs_for(lr) == int(np.maximum(1e3, scale / np.float64(lr))) == max(1000, int(scale / lr))
    assert family_grid("nomemory").epochs_for(0.5) == 3000


def test_family_fixed_fields():
    longtau = family_grid("longtau")
    assert longtau.delays_ms == tuple(range(0, 801, 40)) and longtau.tau_ms == 20.0
    for fam in ("nopost", "nopost-narrow", "post"):
        g = family_grid(fam)
        assert g.delays_ms == tuple(range(0, 401, 20)) and g.tau_ms == 10.0 and g.response_ms == (50,)
    assert family_grid("post").post_ms == 30 and family_grid("post").seeds == tuple(range(20))
    assert family_grid("nopost").post_ms == 0 and family_grid("nopost").seeds == tuple(range(100))
    nomem = family_grid("nomemory")
    assert nomem.nomemory and nomem.delays_ms == (0,) and nomem.response_ms == tuple(range(20, 401, 20))
    assert nomem.epochs == 3000 and nomem.diverge_loss == 100.0 and nomem.sweep == "response_ms"


def test_paper_configs_fields(paper):
    by_fam: dict[str, list[NetConfig]] = {}
    for c in paper:
        by_fam.setdefault(c.family, []).append(c)
    nm = by_fam["nomemory"]
    assert {c.epochs for c in nm} == {3000} and {c.diverge_loss for c in nm} == {100.0}
    assert {c.delay_ms for c in nm} == {0} and {c.response_ms for c in nm} == set(range(20, 401, 20))
    assert all(c.nomemory for c in nm)
    assert {c.delay_ms for c in by_fam["longtau"]} == set(range(0, 801, 40))
    assert {c.tau_ms for c in by_fam["longtau"]} == {20.0}
    assert {c.post_ms for c in by_fam["post"]} == {30}
    assert all(c.diverge_loss is None and not c.nomemory and c.response_ms == 50
               for fam in ("nopost", "nopost-narrow", "post", "longtau") for c in by_fam[fam])
    # types are canonical (the net_id digest hashes their repr)
    c = paper[0]
    assert type(c.lr) is float and type(c.delay_ms) is int and type(c.epochs) is int and type(c.tau_ms) is float


def test_fast_construction_equals_dataclass_init(paper):
    for c in paper[::4999] + paper[-3:]:
        d = NetConfig(**c.to_dict())
        assert d == c and hash(d) == hash(c) and d.net_id == c.net_id and type(c) is NetConfig


def test_grid_order(paper):
    nopost = paper[:31_500]
    g = family_grid("nopost")
    expected = [(d, lr, s) for d in g.delays_ms for lr in g.lrs for s in g.seeds]
    assert [(c.delay_ms, c.lr, c.seed) for c in nopost] == expected
    fams = [c.family for c in paper]
    assert fams == [f for f in FAMILIES for _ in range(PAPER_COUNTS[f])]


@pytest.mark.slow
def test_net_ids_unique(paper):
    ids = [c.net_id for c in paper]
    assert len(set(ids)) == len(ids) == 81_500


def test_smoke_and_sample():
    smoke = make_grid("smoke")
    assert len(smoke) == 8
    assert {(c.lr, c.delay_ms, c.seed, c.epochs) for c in smoke} == {
        (lr, d, s, 30) for lr in (0.1, 0.03) for d in (0, 40) for s in (0, 1)}
    assert all(c.family == "nopost" and c.post_ms == 0 and c.tau_ms == 10.0 for c in smoke)
    sample = make_grid("sample")
    assert len(sample) == 4 * 8 + 3 * 2 * 6 and {c.epochs for c in sample} == {1000}
    assert {c.delay_ms for c in sample} == {40, 100, 200}
    assert {c.lr for c in sample} == {0.3, 0.2, 0.1, 0.05, 0.03}
    assert make_grid() == sample  # the default preset


# ---------------------------------------------------------------- overrides


def test_cli_overrides():
    # zoo build --family nopost --lr 0.1 --lr 0.01 --delay 40 --delay 200 --seeds 8 --epochs 200
    cfgs = make_grid("paper", family="nopost", lrs=[0.1, 0.01], delays=[40, 200], seeds=8, epochs=200)
    assert len(cfgs) == 2 * 2 * 8
    assert [(c.delay_ms, c.lr, c.seed) for c in cfgs] == [
        (d, lr, s) for d in (40, 200) for lr in (0.1, 0.01) for s in range(8)]
    assert all(c.family == "nopost" and c.epochs == 200 and c.post_ms == 0 and c.tau_ms == 10.0
               and c.response_ms == 50 and not c.nomemory and c.diverge_loss is None for c in cfgs)
    # the same from the sample preset (which contains nopost) and from the nopost preset
    assert make_grid("sample", family="nopost", lrs=[0.1, 0.01], delays=[40, 200], seeds=8, epochs=200) == cfgs
    assert make_grid("nopost", lrs=[0.1, 0.01], delays=[40, 200], seeds=8, epochs=200) == cfgs
    # a paper network keeps its id when reached through overrides (0.1 is exactly logspace(-1, -3, 15)[0])
    paper_ids = {c.net_id for c in make_grid("nopost", delays=[40], seeds=2)}
    assert {c.net_id for c in make_grid("nopost", lrs=[0.1], delays=[40], seeds=2)} <= paper_ids


def test_override_family_not_in_preset_uses_paper_definition():
    cfgs = make_grid("smoke", family="post", lrs=[0.01], delays=[0, 20], seeds=1)
    assert [(c.family, c.post_ms, c.delay_ms, c.epochs) for c in cfgs] == [("post", 30, 0, 10_000), ("post", 30, 20, 10_000)]
    assert len(make_grid("smoke", family="longtau")) == 4_200


def test_override_epochs_rule_kept_without_epochs():
    cfgs = make_grid("paper", family="nopost", lrs=[0.1, 0.001], delays=[0], seeds=1)
    assert [c.epochs for c in cfgs] == [1000, 30000]


def test_nomemory_delays_replace_response_lengths():
    cfgs = make_grid("paper", family="nomemory", lrs=[0.1], delays=[40, 100], seeds=2)
    assert [(c.delay_ms, c.response_ms, c.seed) for c in cfgs] == [(0, 40, 0), (0, 40, 1), (0, 100, 0), (0, 100, 1)]
    assert all(c.nomemory and c.epochs == 3000 and c.diverge_loss == 100.0 for c in cfgs)
    with pytest.raises(InvalidChoiceError, match="response_ms"):
        make_grid("paper", family="nomemory", delays=[0])  # a response length must be > 0


def test_off_family_grid_delay_allowed_as_override():
    cfgs = make_grid("paper", family="nopost", delays=[45, 410], lrs=[0.1], seeds=1)
    assert [c.delay_ms for c in cfgs] == [45, 410]
    assert cfgs[0].task().delay_steps == 9


# ---------------------------------------------------------------- errors


def test_unknown_preset():
    with pytest.raises(InvalidChoiceError, match="paper") as e:
        make_grid("nope")
    assert "nope" in str(e.value) and "smoke" in str(e.value)
    with pytest.raises(ValueError):  # InvalidChoiceError is a ValueError
        load_preset("nope")


def test_unknown_family():
    with pytest.raises(InvalidChoiceError, match="nopost-narrow") as e:
        make_grid("paper", family="nopost-wide")
    assert "nopost-wide" in str(e.value)
    with pytest.raises(InvalidChoiceError):
        family_grid("post2")


@pytest.mark.parametrize("delay", [42, -20, 2.5, 40.5, float("nan"), "40", True])
def test_off_grid_delay(delay):
    with pytest.raises(InvalidChoiceError, match="multiple of dt = 5 ms") as e:
        make_grid("paper", family="nopost", delays=[delay])
    assert repr(delay) in str(e.value)


def test_off_grid_delay_message_names_rule():
    with pytest.raises(InvalidChoiceError) as e:
        make_grid("paper", family="longtau", delays=[0, 42])
    msg = str(e.value)
    assert "42" in msg and "delay_ms" in msg and "5 ms" in msg and "40 ms step" in msg


@pytest.mark.parametrize("lr", [0, -0.1, float("nan"), float("inf"), "0.1", None, True])
def test_bad_lr(lr):
    with pytest.raises(InvalidChoiceError, match="learning rate"):
        make_grid("smoke", lrs=[lr])


def test_bad_seeds_epochs_and_duplicates():
    for bad in (0, -1, 2.5, True):
        with pytest.raises(InvalidChoiceError, match="seeds"):
            make_grid("smoke", seeds=bad)
        with pytest.raises(InvalidChoiceError, match="epochs"):
            make_grid("smoke", epochs=bad)
    with pytest.raises(InvalidChoiceError, match="twice"):
        make_grid("smoke", lrs=[0.1, 0.1])
    with pytest.raises(InvalidChoiceError, match="twice"):
        make_grid("smoke", delays=[40, 40])
    with pytest.raises(InvalidChoiceError, match="at least one"):
        make_grid("smoke", lrs=[])


def test_family_grid_validation():
    with pytest.raises(InvalidChoiceError, match="epoch"):
        FamilyGrid("nopost", lrs=(0.1,), delays_ms=(0,), seeds=(0,))
    with pytest.raises(InvalidChoiceError, match="no delay"):
        FamilyGrid("nomemory", lrs=(0.1,), delays_ms=(20,), seeds=(0,), epochs=10, nomemory=True)
    with pytest.raises(InvalidChoiceError, match="seed"):
        FamilyGrid("nopost", lrs=(0.1,), delays_ms=(0,), seeds=(-1,), epochs=10)
    g = FamilyGrid("nopost", lrs=[1], delays_ms=[20.0], seeds=range(2), epochs=5, tau_ms=10)
    assert g.lrs == (1.0,) and type(g.lrs[0]) is float and g.delays_ms == (20,) and type(g.delays_ms[0]) is int
    assert g.tau_ms == 10.0 and type(g.tau_ms) is float and g.seeds == (0, 1)


# ---------------------------------------------------------------- preset files (injected)


@pytest.fixture
def extra_presets(monkeypatch):
    """Make extra (parsed-TOML) presets visible to load_preset/make_grid for one test."""
    raw = dict(preset_files._raw_presets())

    def add(name, doc):
        raw[name] = doc
        monkeypatch.setattr(preset_files, "_raw_presets", lambda: raw)  # PRESETS follows: read on use
        preset_files._load_preset.cache_clear()

    yield add
    preset_files._load_preset.cache_clear()


def _doc(*blocks, **top):
    return {"description": "test", "shard_size": 4, **top, "family": list(blocks)}


def test_preset_blocks_inherit_and_override(extra_presets):
    extra_presets("mix", _doc({"family": "nopost", "lrs": {"logspace": [-1, -2, 3], "take": 2},
                               "delays_ms": {"first": 0, "last": 40, "step": 20}, "seeds": [3, 5]},
                              {"family": "nomemory", "response_ms": [20], "seeds": 1, "epochs": 7},
                              {"family": "post", "epochs": {"min": 10, "scale": 1}, "seeds": 1, "delays_ms": 60,
                               "lrs": [0.05]}))
    p = load_preset("mix")
    assert p.shard_size == 4 and [g.family for g in p.families] == ["nopost", "nomemory", "post"]
    nopost, nomem, post = p.families
    assert nopost.lrs == grids.logspace(-1, -2, 3)[:2] == pytest.approx(_np_logspace(-1, -2, 3)[:2], rel=1e-15) and nopost.delays_ms == (0, 20, 40) and nopost.seeds == (3, 5)
    assert nopost.epoch_rule == family_grid("nopost").epoch_rule and nopost.epochs is None
    assert nomem.response_ms == (20,) and nomem.lrs == family_grid("nomemory").lrs and nomem.epochs == 7
    assert post.post_ms == 30 and post.epochs_for(0.05) == 20 and post.delays_ms == (60,)
    cfgs = make_grid("mix")
    assert len(cfgs) == 2 * 3 * 2 + 20 + 1
    assert make_grid("mix", family="post")[0].epochs == 20


@pytest.mark.parametrize("block, match", [
    ({"family": "nopost", "post_ms": 30}, "post_ms"),                   # fixed field: not overridable
    ({"family": "nopost", "lr": [0.1]}, "lr"),                          # typo of lrs
    ({"family": "nopost", "response_ms": [20]}, "response"),            # only nomemory sweeps responses
    ({"family": "nomemory", "delays_ms": [20]}, "no delay"),
    ({"family": "nopost", "delays_ms": [42]}, "multiple of dt"),
    ({"family": "nopost", "delays_ms": {"first": 0, "last": 40}}, "first, last, step"),
    ({"family": "nopost", "lrs": {"linspace": [0, 1, 3]}}, "linspace"),
    ({"family": "nopost", "lrs": {"logspace": [-1, -3, 15], "take": 16}}, "take"),
    ({"family": "nopost", "epochs": {"min": 10}}, "min, scale"),
    ({"family": "nopost-wide"}, "nopost-wide"),
])
def test_bad_preset_blocks(extra_presets, block, match):
    extra_presets("bad", _doc(block))
    with pytest.raises(InvalidChoiceError, match=match):
        load_preset("bad")


def test_bad_preset_top_level(extra_presets):
    extra_presets("bad", {"description": "x", "shard_size": 0, "family": [{"family": "nopost"}]})
    with pytest.raises(InvalidChoiceError, match="shard_size"):
        load_preset("bad")
    extra_presets("bad2", {"shard_size": 4, "family": [{"family": "nopost"}]})
    with pytest.raises(InvalidChoiceError, match="description"):
        load_preset("bad2")
    extra_presets("bad3", _doc({"family": "nopost"}, extra=1))
    with pytest.raises(InvalidChoiceError, match="extra"):
        load_preset("bad3")


def test_overlapping_blocks_rejected(extra_presets):
    extra_presets("dup", _doc({"family": "nopost", "lrs": [0.1], "delays_ms": [0], "seeds": 2, "epochs": 5},
                              {"family": "nopost", "lrs": [0.1], "delays_ms": [0, 20], "seeds": 1, "epochs": 5}))
    with pytest.raises(InvalidChoiceError, match="twice"):
        make_grid("dup")


# ---------------------------------------------------------------- shards


def test_shards_partition_paper(paper, paper_shards):
    ss = paper_shards
    ids = [s.shard_id for s in ss]
    assert len(ids) == len(set(ids)) == 3 * 21 + 3 * 21 + 21 + 21 + 20
    assert sum(len(s) for s in ss) == len(paper)
    flat = [c for s in ss for c in s.configs]
    assert len(set(flat)) == len(flat) and set(flat) == set(paper)
    assert all(1 <= len(s) <= 512 for s in ss)
    assert ids[:4] == ["nopost-d000-000", "nopost-d000-001", "nopost-d000-002", "nopost-d020-000"]
    assert "nomemory-r040-000" in ids and "longtau-d800-000" in ids and ids[-1] == "nomemory-r400-000"
    assert [len(s) for s in ss[:3]] == [512, 512, 476]
    pos = {c: i for i, c in enumerate(paper)}
    fields = ("family", "delay_ms", "post_ms", "tau_ms", "response_ms", "nomemory", "n_units", "noise_std")
    for s in ss:
        assert len({tuple(getattr(c, f) for f in fields) for c in s.configs}) == 1
        assert s.configs[0].batch_key() == s.configs[-1].batch_key() == s.batch_key()
        assert s.family == s.configs[0].family and s.shard_id.startswith(s.family + "-")
        idx = [pos[c] for c in s.configs]
        assert idx == sorted(idx)  # grid order kept inside a shard


def test_shards_deterministic(paper, paper_shards):
    again = shards(make_grid("paper"), 512)
    assert [(s.shard_id, s.configs) for s in again] == [(s.shard_id, s.configs) for s in paper_shards]
    # a family's shards do not depend on what else is in the build
    alone = shards(make_grid("paper", family="post"), 512)
    assert [(s.shard_id, s.configs) for s in alone] == [(s.shard_id, s.configs) for s in paper_shards
                                                         if s.family == "post"]
    small = shards(make_grid("smoke"), 3)
    assert [(s.shard_id, len(s)) for s in small] == [("nopost-d000-000", 3), ("nopost-d000-001", 1),
                                                     ("nopost-d040-000", 3), ("nopost-d040-001", 1)]
    assert small[0].net_ids == [c.net_id for c in small[0].configs]


def test_shards_errors():
    cfgs = make_grid("smoke")
    with pytest.raises(InvalidChoiceError, match="shard_size"):
        shards(cfgs, 0)
    with pytest.raises(InvalidChoiceError, match="twice"):
        shards(cfgs + cfgs[:1], 4)
    assert shards([], 4) == []


# ---------------------------------------------------------------- summary


def test_grid_summary_smoke():
    s = grid_summary(make_grid("smoke"))
    # T = 6 cue + 10 reaction (+ 8 delay steps at 40 ms); 2 lrs x 2 seeds per delay, 30 epochs each
    assert s == {"networks": 8, "by_family": {"nopost": 8}, "network_epochs": 240,
                 "network_epoch_steps": 30 * (4 * 16 + 4 * 24)}


def test_grid_summary_paper(paper):
    s = grid_summary(paper)
    assert s["network_epochs"] == sum(c.epochs for c in paper)
    assert s["network_epoch_steps"] > s["network_epochs"] > 0
    nm = grid_summary(make_grid("paper", family="nomemory"))
    assert nm["network_epochs"] == 8000 * 3000
    assert nm["network_epoch_steps"] == 3000 * 20 * 20 * sum(6 + r // 5 for r in range(20, 401, 20))
    assert math.isclose(s["network_epochs"] / s["networks"], 5689, rel_tol=1e-3)


def test_family_config_takes_every_field_from_the_paper_definition():
    from zoo.grids import family_config

    post = family_config("post", seed=3, lr=0.002, delay_ms=40)
    assert (post.post_ms, post.epochs, post.tau_ms, post.nomemory) == (30, 50_000, 10.0, False)
    assert family_config("longtau", seed=0, lr=0.1, delay_ms=80).tau_ms == 20.0
    nm = family_config("nomemory", seed=0, lr=0.5, response_ms=100, epochs=7)
    assert (nm.nomemory, nm.diverge_loss, nm.response_ms, nm.delay_ms, nm.epochs) == (True, 100.0, 100, 0, 7)
    # the same network as the family's grid holds
    assert family_config("nopost", seed=4, lr=0.1, delay_ms=200) in make_grid("nopost", delays=[200], seeds=5)


def test_overrides_are_one_checked_value():
    o = grids.Overrides(family="nomemory", lrs=[0.1], delays=[40, 100], seeds=2)
    assert o.lrs == (0.1,) and o.delays == (40, 100) and o.changes_grid
    assert grids.Overrides.from_dict(o.to_dict()) == o
    assert o.to_dict() == {"family": "nomemory", "lrs": [0.1], "delays": [40, 100], "seeds": 2}
    assert not grids.Overrides(family="post").changes_grid
    # --delay is the response length of the nomemory family
    assert {c.response_ms for c in grids.grid_of("paper", o)} == {40, 100}
    for bad in (dict(family="nopost-wide"), dict(seeds=0), dict(epochs=-1)):
        with pytest.raises(InvalidChoiceError):
            grids.Overrides(**bad)
