"""simulate_stacked must reproduce RNN.forward network by network (same equations, same noise streams)."""

import pytest
import torch

from zoo import rng
from zoo.model import PARAM_NAMES, RNN, ModelConfig, init_state_dict
from zoo.simulate import extended_inputs, nominal_steps, simulate_stacked
from zoo.task import TaskSpec

SEEDS = [3, 7, 11]


pytestmark = pytest.mark.usefixtures("one_thread")


def _stacked(seeds, cfg, rec_gain=3.0):
    """Initial weights of ``seeds`` with W_rec scaled up so the dynamics are not trivially contracting."""
    dicts = [init_state_dict(s, cfg) for s in seeds]
    for d in dicts:
        d["W_rec.weight"] *= rec_gain
    return dicts, {n: torch.stack([d[n] for d in dicts]) for n in PARAM_NAMES}


def _single(d, cfg):
    net = RNN(cfg)
    net.load_state_dict(d)
    return net


@pytest.mark.parametrize("readout", ["sigmoid", "linear"])
def test_matches_rnn_forward_with_noise_and_random_init(readout):
    cfg = ModelConfig(readout=readout)
    task = TaskSpec(delay_steps=4)
    inputs = task.inputs()[:, 60:68]  # (T, 8, 2): both trial types
    dicts, state = _stacked(SEEDS, cfg)
    out, rates = simulate_stacked(state, cfg, inputs, seeds=SEEDS)
    T, B = inputs.shape[:2]
    assert out.shape == (3, T, B, 2) and rates.shape == (3, T + 1, B, 100)
    with torch.no_grad():
        for k, seed in enumerate(SEEDS):
            o_ref, r_ref = _single(dicts[k], cfg)(inputs, seed=seed)
            torch.testing.assert_close(out[k], o_ref, atol=1e-6, rtol=1e-6)
            torch.testing.assert_close(rates[k], r_ref, atol=1e-6, rtol=1e-6)
    # the networks really differ (the test would not catch a broadcast bug otherwise)
    assert (rates[0] - rates[1]).abs().max() > 1e-2


def test_matches_rnn_forward_deterministic_and_r0():
    cfg = ModelConfig()
    task = TaskSpec(delay_steps=2)
    inputs = task.inputs()[:, 60:68]
    dicts, state = _stacked(SEEDS, cfg)
    r0 = torch.tanh(0.3 * torch.randn(3, inputs.shape[1], 100, generator=torch.Generator().manual_seed(5)))
    out, rates = simulate_stacked(state, cfg, inputs, noise=False, r0=r0)
    out0, rates0 = simulate_stacked(state, cfg, inputs, noise=False, random_init=False)
    assert torch.equal(rates0[:, 0], torch.zeros_like(rates0[:, 0]))
    with torch.no_grad():
        for k in range(3):
            net = _single(dicts[k], cfg)
            o_ref, r_ref = net(inputs, r0=r0[k], noise=False)
            torch.testing.assert_close(out[k], o_ref, atol=1e-6, rtol=1e-6)
            torch.testing.assert_close(rates[k], r_ref, atol=1e-6, rtol=1e-6)
            o_ref, r_ref = net(inputs, noise=False, random_init=False)
            torch.testing.assert_close(rates0[k], r_ref, atol=1e-6, rtol=1e-6)


def test_explicit_noise_tensor():
    cfg = ModelConfig()
    inputs = TaskSpec(delay_steps=2).inputs()[:, 62:66]
    dicts, state = _stacked(SEEDS, cfg)
    T, B = inputs.shape[:2]
    z = torch.randn(3, T, B, 100, generator=torch.Generator().manual_seed(9))
    r0 = torch.zeros(3, B, 100)
    _, rates = simulate_stacked(state, cfg, inputs, noise=z, r0=r0)
    _, quiet = simulate_stacked(state, cfg, inputs, noise=False, r0=r0)
    assert (rates - quiet).abs().max() > 1e-5
    with torch.no_grad():
        for k in range(3):
            _, r_ref = _single(dicts[k], cfg)(inputs, r0=r0[k], noise=z[k])
            torch.testing.assert_close(rates[k], r_ref, atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError):
        simulate_stacked(state, cfg, inputs, noise=z[:, :-1])


@pytest.mark.bitwise("rerun")
def test_noise_streams_follow_seeds_and_epoch():
    cfg = ModelConfig()
    inputs = TaskSpec().inputs()[:, :4]
    _, state = _stacked(SEEDS, cfg)
    _, a = simulate_stacked(state, cfg, inputs, seeds=SEEDS)
    _, b = simulate_stacked(state, cfg, inputs, seeds=SEEDS)
    assert torch.equal(a, b)
    _, c = simulate_stacked(state, cfg, inputs, seeds=SEEDS, epoch=5)
    assert not torch.allclose(a, c)
    # network k's result does not depend on the other networks of the stack
    sub = {n: v[1:2] for n, v in state.items()}
    _, d = simulate_stacked(sub, cfg, inputs, seeds=SEEDS[1:2])
    torch.testing.assert_close(d[0], a[1], atol=1e-6, rtol=1e-6)
    # initial state is tanh(init_state_std * z0) with z0 from slot 0
    z0 = rng.normal(rng.keys_tensor(SEEDS), rng.ANALYSIS_EPOCH, 0, (4, 100))
    torch.testing.assert_close(a[:, 0], torch.tanh(0.1 * z0))


def test_first_trials_do_not_depend_on_batch_size():
    # float64: float32 rounding differs between batch sizes (BLAS blocking) and these dynamics amplify it
    cfg = ModelConfig()
    inputs = TaskSpec(delay_steps=4).inputs(dtype=torch.float64)  # (T, 128, 2)
    _, state = _stacked(SEEDS, cfg)
    state = {n: v.double() for n, v in state.items()}
    _, full = simulate_stacked(state, cfg, inputs, seeds=SEEDS)
    _, first = simulate_stacked(state, cfg, inputs[:, :2], seeds=SEEDS)
    torch.testing.assert_close(first, full[:, :, :2], atol=1e-10, rtol=1e-10)


def test_record_rates_off_and_float64():
    cfg = ModelConfig()
    inputs = TaskSpec().inputs()[:, :2]
    _, state = _stacked(SEEDS, cfg)
    out, rates = simulate_stacked(state, cfg, inputs, seeds=SEEDS, record_rates=False)
    assert rates is None
    out64, _ = simulate_stacked({n: v.double() for n, v in state.items()}, cfg, inputs, seeds=SEEDS)
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), out, atol=1e-5, rtol=1e-5)


def test_bad_shapes_are_refused():
    cfg = ModelConfig()
    inputs = TaskSpec().inputs()[:, :2]
    _, state = _stacked(SEEDS, cfg)
    with pytest.raises(ValueError):
        simulate_stacked(state, cfg, inputs, seeds=SEEDS[:2])
    with pytest.raises(ValueError):
        simulate_stacked(state, ModelConfig(n_units=50), inputs, seeds=SEEDS)
    with pytest.raises(KeyError):
        simulate_stacked({n: v for n, v in state.items() if n != "W_out.bias"}, cfg, inputs, seeds=SEEDS)
    with pytest.raises(ValueError):
        simulate_stacked(state, cfg, inputs, r0=torch.zeros(3, 1, 100))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    cfg = ModelConfig()
    inputs = TaskSpec(delay_steps=4).inputs()[:, 60:68]
    # deterministic, float64: the same numbers up to rounding
    _, state = _stacked(SEEDS, cfg)
    state64 = {n: v.double() for n, v in state.items()}
    r0 = torch.tanh(0.3 * torch.randn(3, 8, 100, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    out, rates = simulate_stacked(state64, cfg, inputs, noise=False, r0=r0)
    out_c, rates_c = simulate_stacked({n: v.cuda() for n, v in state64.items()}, cfg, inputs, noise=False, r0=r0)
    assert rates_c.is_cuda and out_c.is_cuda
    torch.testing.assert_close(rates_c.cpu(), rates, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(out_c.cpu(), out, atol=1e-9, rtol=1e-9)
    # seeded noise and initial state: the float32 draws may differ by an ulp between devices (transcendentals),
    # so compare non-chaotic networks with a float32 tolerance
    _, state = _stacked(SEEDS, cfg, rec_gain=1.0)
    _, rates = simulate_stacked(state, cfg, inputs, seeds=SEEDS)
    _, rates_c = simulate_stacked({n: v.cuda() for n, v in state.items()}, cfg, inputs, seeds=SEEDS)
    torch.testing.assert_close(rates_c.cpu(), rates, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("post", [0, 6])
def test_extended_inputs(post):
    task = TaskSpec(delay_steps=10, post_steps=post)
    assert nominal_steps(task) == 6 + 10 + 10
    u = extended_inputs(task)
    L = 9 * 26
    assert u.shape == (L, 128, 2)
    nominal = TaskSpec(delay_steps=10).inputs()  # the trial without post
    assert torch.equal(u[:26], nominal)
    assert torch.count_nonzero(u[26:]) == 0
    assert torch.equal(u[:6, 0], torch.tensor([[0.0, 1.0]] * 6))  # trial 0 is type 0
    assert extended_inputs(task, factor=5).shape[0] == 5 * 26
    with pytest.raises(ValueError):
        extended_inputs(task, factor=0)
