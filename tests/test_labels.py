"""The reference outcome labels: curve rules, the spectral index, and the end-to-end labelling of networks."""

import math

import numpy as np
import pytest
import torch

from zoo.labels import (
    LABEL_VERSION,
    MECHANISMS,
    OUTCOMES,
    Label,
    _pca2,
    classify_psd_ratio,
    disc_power_fraction,
    first_learned_epoch,
    is_learned,
    is_stable,
    label_curves,
    label_networks,
    psd_ratio,
    rms_output_criterion,
    row_correlation,
    tail_length,
)
from zoo.model import PARAM_NAMES, RNN, ModelConfig, init_state_dict
from zoo.simulate import extended_inputs
from zoo.task import TaskSpec

GOOD, BAD = 0.95, 0.3


pytestmark = pytest.mark.usefixtures("one_thread")


def _curve(*segments):
    """Concatenate (value, n_epochs) segments into a 1-D curve."""
    return np.concatenate([np.full(n, v, dtype=np.float64) for v, n in segments])


# ----------------------------------------------------------------------------------------------- curve rules


def test_constants():
    assert LABEL_VERSION == "2"
    assert OUTCOMES == ("no_learning", "unstable", "limit_cycle", "slow_point")
    assert MECHANISMS == ("limit_cycle", "slow_point")


def test_never_learns_is_stable_no_learning():
    acc = np.linspace(0.3, 0.79, 100)
    rel = np.linspace(0.2, 0.7, 100)
    assert first_learned_epoch(acc, rel) == -1
    assert is_stable(acc, rel) and not is_learned(acc, rel)
    lab = label_curves(acc, rel)
    assert (lab.outcome, lab.mechanism, lab.learned, lab.stable) == ("no_learning", None, False, True)
    assert math.isnan(lab.psd_ratio) and lab.first_learned_epoch == -1


def test_first_learned_epoch_needs_both_curves_strictly_above():
    acc = _curve((0.5, 3), (0.9, 1), (0.5, 1), (0.8, 1), (0.9, 4))  # epoch 3: acc only; 5: acc == 0.8
    rel = _curve((0.5, 4), (0.9, 6))
    assert first_learned_epoch(acc, rel) == 6
    assert first_learned_epoch(acc[:6], rel[:6]) == -1


def test_learns_then_collapses_often_is_unstable():
    acc = _curve((BAD, 10), *[(GOOD, 3), (BAD, 1)] * 20, (BAD, 10))
    rel = acc.copy()
    assert first_learned_epoch(acc, rel) == 10
    assert not is_stable(acc, rel) and not is_learned(acc, rel)
    lab = label_curves(acc, rel)
    assert (lab.outcome, lab.learned, lab.stable, lab.mechanism) == ("unstable", False, False, None)


def test_learns_and_stays_is_learned():
    acc = _curve((BAD, 30), (GOOD, 70))  # bad epochs before e0 do not count
    rel = _curve((0.5, 20), (0.85, 80))
    assert first_learned_epoch(acc, rel) == 30
    assert is_stable(acc, rel) and is_learned(acc, rel)
    lab = label_curves(acc, rel)
    assert lab.learned and lab.stable and lab.outcome is None and lab.mechanism is None  # mechanism pending
    assert lab.first_learned_epoch == 30
    lc = label_curves(acc, rel, psd_ratio=0.2)
    assert (lc.outcome, lc.mechanism, lc.psd_ratio) == ("limit_cycle", "limit_cycle", 0.2)
    sp = lab.with_psd_ratio(0.7)
    assert (sp.outcome, sp.mechanism) == ("slow_point", "slow_point")
    assert label_curves(acc, rel, psd_ratio=0.5).mechanism == "slow_point"  # threshold: < 0.5 is limit cycle


def test_learned_at_the_end_but_unstable_is_not_learned():
    acc = _curve((GOOD, 10), *[(GOOD, 2), (BAD, 2)] * 10, (GOOD, 50))
    rel = acc.copy()
    tail = tail_length(len(acc))
    assert acc[-tail:].mean() > 0.8  # the final performance alone would pass
    assert not is_stable(acc, rel) and not is_learned(acc, rel)
    lab = label_curves(acc, rel)
    assert (lab.outcome, lab.learned, lab.stable) == ("unstable", False, False)
    with pytest.raises(ValueError):
        lab.with_psd_ratio(0.1)


def test_stable_but_final_performance_too_low_is_no_learning():
    acc = _curve((GOOD, 50), (0.7, 50))  # never below 0.6, ends at 0.7
    lab = label_curves(acc, acc)
    assert (lab.outcome, lab.stable, lab.learned, lab.first_learned_epoch) == ("no_learning", True, False, 0)


def test_stability_ratio_boundary():
    # after e0: 10 good epochs, 1 epoch with acc and rel < 0.6 -> (1 + 1) / (10 + 10) == 0.1 exactly -> unstable
    pre = (BAD, 5)  # before e0: never counted
    acc = _curve(pre, (GOOD, 5), (BAD, 1), (GOOD, 5))
    assert first_learned_epoch(acc, acc) == 5
    assert not is_stable(acc, acc)
    # one more good epoch: 2 / 22 < 0.1 -> stable
    assert is_stable(_curve(pre, (GOOD, 6), (BAD, 1), (GOOD, 5)), _curve(pre, (GOOD, 6), (BAD, 1), (GOOD, 5)))
    # values equal to 0.6 count in neither sum; 0.61 counts as above
    at = _curve(pre, (GOOD, 5), (BAD, 1), (GOOD, 5), (0.6, 5))
    assert not is_stable(at, at)
    above = _curve(pre, (GOOD, 5), (BAD, 1), (GOOD, 5), (0.61, 5))
    assert is_stable(above, above)
    # only one curve collapsing counts once: (1) / (10 + 11) < 0.1
    rel = _curve(pre, (GOOD, 11))
    assert is_stable(acc, rel)


def test_tail_length_is_ceil_and_matches_reference_slice():
    assert [tail_length(n) for n in range(0, 23)] == [math.ceil(n / 10) for n in range(0, 23)]
    for n in range(0, 100_001):
        assert tail_length(n) == n - int(n * 0.9)  # the reference: acc[int(acc.shape[0] * 0.9):]


def test_short_curves():
    assert label_curves([0.9], [0.9]).outcome is None and is_learned([0.9], [0.9])
    assert label_curves([0.5], [0.9]).outcome == "no_learning"
    assert label_curves(np.array([]), np.array([])).outcome == "no_learning"
    # n = 5: the tail is the last epoch only
    rel = np.full(5, GOOD)
    assert is_learned(np.array([0.7, 0.7, 0.7, 0.7, GOOD]), rel)
    assert not is_learned(np.array([GOOD, GOOD, GOOD, GOOD, 0.7]), rel)
    # n = 11: the tail is the last 2 epochs (ceil), not 1 (floor): mean(0.5, 0.95) < 0.8
    acc = _curve((GOOD, 9), (0.5, 1), (GOOD, 1))
    rel = np.full(11, GOOD)
    assert is_stable(acc, rel) and not is_learned(acc, rel)
    assert label_curves(acc, rel).outcome == "no_learning"


def test_curve_validation_and_nan():
    with pytest.raises(ValueError):
        label_curves(np.ones(5), np.ones(4))
    with pytest.raises(ValueError):
        label_curves(np.ones((2, 5)), np.ones((2, 5)))
    acc = _curve((GOOD, 20))
    acc[-1] = np.nan  # a diverged last epoch: the final mean is NaN -> not learned
    assert not is_learned(acc, np.full(20, GOOD))


def test_nomemory_is_labelled_by_final_performance_alone():
    """The control family's sort script has no stability clause and two classes: a network that learns,
    collapses and recovers is learned there (unstable, so not learned, for the memory families), and one that
    never learns is no_learning even if its curves are unstable."""
    collapse = _curve((GOOD, 100), (0.1, 300), (GOOD, 600))
    mem = label_curves(collapse, collapse)
    assert not mem.stable and not mem.learned and mem.outcome == "unstable"
    nm = label_curves(collapse, collapse, nomemory=True)
    assert not nm.stable and nm.learned and nm.outcome is None
    assert label_curves(collapse, collapse, psd_ratio=0.2, nomemory=True).outcome == "limit_cycle"
    flicker = _curve((GOOD, 100), (0.1, 300), (GOOD, 500), (0.1, 100))
    assert label_curves(flicker, flicker).outcome == "unstable"
    assert label_curves(flicker, flicker, nomemory=True).outcome == "no_learning"


def test_label_to_dict():
    d = label_curves(_curve((GOOD, 10)), _curve((GOOD, 10)), psd_ratio=0.25).to_dict()
    assert d == {"outcome": "limit_cycle", "mechanism": "limit_cycle", "learned": True, "stable": True,
                 "psd_ratio": 0.25, "first_learned_epoch": 0, "label_version": "2"}
    assert isinstance(label_curves([0.1], [0.1]), Label)


# ------------------------------------------------------------------------------------------- spectral index

L_TRAJ, N_UNITS = 9 * 24, 100


def _basis(seed=0, n=N_UNITS):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, 2)))
    return q  # (N, 2) orthonormal


def _rotation(cycles=4, noise=1e-3, seed=0):
    t = np.arange(L_TRAJ)
    w = 2 * np.pi * cycles / L_TRAJ
    X = np.stack([np.cos(w * t), np.sin(w * t)], axis=1) @ _basis(seed).T  # (L, N)
    return X + noise * np.random.default_rng(seed + 1).standard_normal(X.shape)


def _decay(tau=10.0, seed=0):
    rs = np.random.default_rng(seed)
    x_star, x0 = 0.5 * rs.standard_normal(N_UNITS), 0.5 * rs.standard_normal(N_UNITS)
    t = np.arange(L_TRAJ)[:, None]
    X = x_star + (x0 - x_star) * np.exp(-t / tau)
    return X + 1e-3 * rs.standard_normal(X.shape)


def _offset_cycle(seed=0):
    """An oscillation around an offset point: the index depends on the relative sign of the 2 components."""
    t = np.arange(L_TRAJ)
    w = 2 * np.pi * 6 / L_TRAJ
    Y = np.stack([2 * np.cos(w * t) + 5, np.sin(w * t) - 5], axis=1)
    return Y @ _basis(seed).T


def _literal_ratio(Y):
    """The reference formula written out literally (np.corrcoef, fft2, fftshift, circular mask)."""
    C = np.nan_to_num(np.corrcoef(Y))
    F = np.abs(np.fft.fftshift(np.fft.fft2(C))) ** 2
    L = C.shape[0]
    i, j = np.ogrid[:L, :L]
    mask = np.sqrt((i - L // 2) ** 2 + (j - L // 2) ** 2) <= 3
    return F[mask].sum() / F.sum()


@pytest.mark.parametrize("cycles", [4, 7, 12])
def test_rotation_is_limit_cycle(cycles):
    r = psd_ratio(_rotation(cycles))
    assert r < 0.5 and classify_psd_ratio(r) == "limit_cycle"


@pytest.mark.parametrize("tau", [3.0, 10.0, 30.0])
def test_decay_to_fixed_point_is_slow_point(tau):
    r = psd_ratio(_decay(tau))
    assert r >= 0.5 and classify_psd_ratio(r) == "slow_point"


def test_psd_ratio_matches_literal_formula():
    for X in (_rotation(), _decay(), _offset_cycle()):
        Y = X @ _pca2(X)
        assert psd_ratio(X) == pytest.approx(_literal_ratio(Y), abs=1e-12)


@pytest.mark.parametrize("L", [2, 3, 4, 5, 6, 7, 8, 9, 13, 64, 215, 216])
def test_disc_power_fraction_matches_fftshift_fft2(L):
    rs = np.random.default_rng(L)
    for C in (rs.standard_normal((L, L)), np.outer(*(2 * [np.sign(rs.standard_normal(L))]))):
        F = np.abs(np.fft.fftshift(np.fft.fft2(C))) ** 2
        i, j = np.ogrid[:L, :L]
        want = F[(i - L // 2) ** 2 + (j - L // 2) ** 2 <= 9].sum() / F.sum()
        assert disc_power_fraction(C) == pytest.approx(want, abs=1e-12)
    assert math.isnan(disc_power_fraction(np.zeros((L, L))))


def test_row_correlation():
    Y = np.random.default_rng(0).standard_normal((50, 2))
    np.testing.assert_allclose(row_correlation(Y), np.corrcoef(Y), atol=1e-14)
    Y[7] = [0.3, 0.3]  # zero variance: correlation 0 with everything, itself included
    C = row_correlation(Y)
    assert np.all(C[7] == 0) and np.all(C[:, 7] == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = np.corrcoef(Y)
    keep = np.arange(50) != 7
    np.testing.assert_allclose(C[np.ix_(keep, keep)], ref[np.ix_(keep, keep)], atol=1e-14)


def test_pca_sign_convention():
    for X in (_rotation(), _decay(), _offset_cycle()):
        V = _pca2(X)
        assert V.shape == (N_UNITS, 2)
        for c in range(2):
            assert V[np.argmax(np.abs(V[:, c])), c] > 0
        np.testing.assert_allclose(V.T @ V, np.eye(2), atol=1e-12)


def test_psd_ratio_ignores_svd_sign_choices(monkeypatch):
    X = _offset_cycle()
    # the index does depend on the relative sign of the two components for this trajectory ...
    V = _pca2(X)
    assert abs(_literal_ratio(X @ V) - _literal_ratio(X @ (V * [1, -1]))) > 0.5
    # ... so the arbitrary signs returned by the SVD must not reach it
    ref = psd_ratio(X)
    svd = np.linalg.svd

    for flips in ([0], [1], [0, 1]):
        def partial(a, *args, _flips=flips, **kwargs):
            U, S, Vt = svd(a, *args, **kwargs)
            U, Vt = U.copy(), Vt.copy()
            for c in _flips:
                U[:, c], Vt[c] = -U[:, c], -Vt[c]
            return U, S, Vt

        monkeypatch.setattr(np.linalg, "svd", partial)
        assert psd_ratio(X) == ref


def test_psd_ratio_invariant_to_neuron_order_and_global_sign():
    for X in (_rotation(), _decay(), _offset_cycle()):
        ref = psd_ratio(X)
        perm = np.random.default_rng(3).permutation(N_UNITS)
        assert psd_ratio(X[:, perm]) == pytest.approx(ref, abs=1e-12)
        assert psd_ratio(-X) == pytest.approx(ref, abs=1e-12)


def test_psd_ratio_deterministic_and_guards():
    X = _rotation()
    assert psd_ratio(X) == psd_ratio(X.copy())
    assert psd_ratio(X.astype(np.float32)) == pytest.approx(psd_ratio(X), abs=1e-6)
    X[3, 4] = np.nan
    assert math.isnan(psd_ratio(X))
    assert classify_psd_ratio(float("nan")) == "slow_point"  # as `nan < 0.5` in the reference
    with pytest.raises(ValueError):
        psd_ratio(np.ones(10))


# ----------------------------------------------------------------------------------- networks, end to end

CFG = ModelConfig()
TASK = TaskSpec(delay_steps=8)  # T_nom = 24 -> L = 216
SEEDS = [11, 12, 13]


def _networks():
    """Stacked: 0 = a rotation in a 2-D subspace with gain 2 (unstable focus -> limit cycle), 1 = a strongly
    contracting network (fixed point), 2 = another contracting one (its curves say not learned)."""
    N = CFG.n_units
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(N, 2, generator=g))  # (N, 2)
    rot = torch.tensor([[0.0, -1.0], [1.0, 0.0]])
    osc = init_state_dict(1)
    osc["W_rec.weight"] = 2.0 * Q @ rot @ Q.T
    osc["W_rec.bias"].zero_()
    osc["W_in.bias"].zero_()
    osc["W_out.weight"] = 4.0 * Q.T
    osc["W_out.bias"].zero_()
    con = init_state_dict(2)
    con["W_rec.weight"] = -0.5 * torch.eye(N)
    other = init_state_dict(3)
    other["W_rec.weight"] = -0.5 * torch.eye(N)
    dicts = [osc, con, other]
    return dicts, {n: torch.stack([d[n] for d in dicts]) for n in PARAM_NAMES}


def _curves():
    good = np.full(50, GOOD)
    return [good, good, np.full(50, BAD)], [good, good, np.full(50, BAD)]


def test_label_networks_end_to_end():
    dicts, state = _networks()
    acc, rel = _curves()
    labels = label_networks(state, CFG, TASK, SEEDS, acc, rel)
    assert [lab.outcome for lab in labels] == ["limit_cycle", "slow_point", "no_learning"]
    assert labels[0].psd_ratio < 0.05 and labels[1].psd_ratio > 0.95
    assert math.isnan(labels[2].psd_ratio) and labels[2].mechanism is None
    assert all(lab.label_version == LABEL_VERSION for lab in labels)
    # same index as running each network alone (RNN.forward, full batch, trial 0, states after each update)
    inputs = extended_inputs(TASK)[:, :2]  # trial 0's draws do not depend on the batch size (test_simulate)
    with torch.no_grad():
        for k in range(2):
            net = RNN(CFG)
            net.load_state_dict(dicts[k])
            _, rates = net(inputs, seed=SEEDS[k])
            assert psd_ratio(rates[1:, 0].double().numpy()) == pytest.approx(labels[k].psd_ratio, abs=1e-9)


def _comparable(label):
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in label.to_dict().items()}


def test_label_networks_deterministic_and_chunking():
    _, state = _networks()
    acc, rel = _curves()
    a = label_networks(state, CFG, TASK, SEEDS, acc, rel)
    b = label_networks(state, CFG, TASK, SEEDS, acc, rel, chunk_size=1)
    c = label_networks({n: v.numpy() for n, v in state.items()}, CFG, TASK, SEEDS, acc, rel)
    assert [_comparable(x) for x in a] == [_comparable(x) for x in c]
    for x, y in zip(a, b, strict=True):
        assert x.outcome == y.outcome
        assert x.psd_ratio == pytest.approx(y.psd_ratio, abs=1e-9, nan_ok=True)
    with pytest.raises(ValueError):
        label_networks(state, CFG, TASK, SEEDS[:2], acc, rel)


def test_rms_output_criterion():
    _, state = _networks()
    rms, is_lc = rms_output_criterion(state, CFG, TaskSpec(delay_steps=8, n_copies=2), SEEDS)
    assert rms.shape == (3,) and rms[0] > 0.1 and rms[1] < 0.01
    assert list(is_lc) == [True, False, False]
