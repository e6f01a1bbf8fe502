"""Fidelity of the batched trainer against a plain autograd implementation written from the spec."""

import math

import numpy as np
import pytest
import torch

from zoo import rng
from zoo.config import NetConfig
from zoo.grids import family_config
from zoo.train import train_networks


def spec_init(seed):
    """Initial weights as the spec says, drawn in the documented order from torch.Generator(seed)."""
    g = torch.Generator().manual_seed(seed)

    def xavier(out_f, in_f):
        b = math.sqrt(6 / (in_f + out_f))
        return torch.empty(out_f, in_f).uniform_(-b, b, generator=g)

    def bias(n, fan_in):
        return torch.empty(n).uniform_(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in), generator=g)

    W_in = xavier(100, 2)
    b_in = bias(100, 2)
    W_rec = xavier(100, 100)
    b_rec = bias(100, 100)
    W_out = xavier(2, 100)
    b_out = bias(2, 100)
    W_rec.fill_diagonal_(0)
    return [W_in, b_in, W_rec, b_rec, W_out, b_out]


def spec_train(seed, lr, delay_steps, epochs, *, noise, random_init, post=0, nomemory=False, tau=10.0,
               resp=10, diverge=None):
    """One network, autograd + torch.optim.SGD, straight from the paper-method page.

    Returns the per-epoch loss, accuracy and reliability (computed here as the authors' scripts do: argmax of
    the prediction against argmax of the target over ``[start, end)`` with the scripts' bounds), the final
    weights, and the number of epochs run (a run whose loss exceeds ``diverge`` stops after that update).
    """
    params = [p.double().requires_grad_() for p in spec_init(seed)]
    W_in, b_in, W_rec, b_rec, W_out, b_out = params
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-7)
    T = 6 + delay_steps + resp + post
    B = 128
    types = torch.arange(B) // 64
    label = torch.zeros(B, 2, dtype=torch.float64)  # type 0: cue [0, 1] -> answer channel 1
    label[types == 0, 1] = 1.0
    label[types == 1, 0] = 1.0
    u = torch.zeros(T, B, 2, dtype=torch.float64)
    u[:6] = label
    y = torch.zeros(T, B, 2, dtype=torch.float64)
    if nomemory:  # control: the label at every step, all loss weights 1
        y[:] = label
        w = torch.ones(T, dtype=torch.float64)
    else:
        y[6 + delay_steps:6 + delay_steps + resp] = label
        R = resp + post
        w = torch.full((T,), R / T, dtype=torch.float64)
        w[T - R:] = 1 - R / T
    a = 5.0 / tau
    key = rng.keys_tensor([seed])
    # the scripts' window: int((cue + delay) / dt) - 1 .. int((cue + delay + reaction) / dt) - 1, where the
    # nomemory script passes its response length as the delay (and the slice stops at the trial's end)
    lo = 6 + (resp if nomemory else delay_steps) - 1
    hi = min(lo + resp, T)
    losses, accs, rels = [], [], []
    for e in range(epochs):
        r = torch.zeros(B, 100, dtype=torch.float64)
        if random_init:
            r = torch.tanh(0.1 * rng.normal(key, e, 0, (B, 100))[0].double())
        outs = []
        for t in range(T):
            logit = r @ W_out.T + b_out
            outs.append(logit if nomemory else torch.sigmoid(logit))
            pre = r @ W_rec.T + b_rec + u[t] @ W_in.T + b_in
            if noise:
                pre = pre + 1e-3 * rng.normal(key, e, t + 1, (B, 100))[0].double()
            r = (1 - a) * r + a * torch.tanh(pre)
        o = torch.stack(outs)
        loss = (w[:, None, None] * (o - y) ** 2).mean()
        with torch.no_grad():
            ow = o[lo:hi]
            prob = torch.nan_to_num(ow / ow.sum(-1, keepdim=True), nan=0.0)
            gt = y[lo:hi].argmax(-1)  # channel 0 where the target is still 0 (the window's first step)
            accs.append((prob.argmax(-1) == gt).double().mean().item())
            rels.append(prob.gather(-1, gt[..., None]).mean().item())
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if diverge is not None and loss.item() > diverge:
            break
    names = ["W_in.weight", "W_in.bias", "W_rec.weight", "W_rec.bias", "W_out.weight", "W_out.bias"]
    curves = {"loss": np.array(losses), "accuracy": np.array(accs), "reliability": np.array(rels)}
    return curves, {n: p.detach() for n, p in zip(names, params, strict=True)}, len(losses)


def assert_matches_spec(res, ref_curves, ref_w, *, k=0, rtol=1e-6, atol=1e-6):
    for name, ref in ref_curves.items():
        np.testing.assert_allclose(res.curves[name][k], ref, rtol=rtol, atol=atol, err_msg=name)
    for n, w in ref_w.items():
        np.testing.assert_allclose(res.weights[n][k].double().numpy(), w.numpy(), rtol=0, atol=atol, err_msg=n)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.float64, 1e-10)])
def test_matches_spec_without_noise(dtype, tol):
    cfg = NetConfig("nopost", seed=3, lr=0.1, delay_ms=40, epochs=4, noise_std=0.0, init_state_std=0.0)
    ref_curves, ref_w, _ = spec_train(3, 0.1, 8, 4, noise=False, random_init=False)
    res = train_networks([cfg], dtype=dtype)
    # curves are stored as float32 whatever the training dtype
    np.testing.assert_allclose(res.curves["loss"][0], ref_curves["loss"], rtol=1e-6, atol=1e-6)
    for n, w in ref_w.items():
        np.testing.assert_allclose(res.weights[n][0].double().numpy(), w.numpy(), rtol=0, atol=tol)


# Every family's training against the spec, with noise and random initial states: nopost, post (R = 16),
# longtau (a = 0.25: a swap of a and 1 - a would pass at a = 0.5) and nomemory (linear readout, the label at
# every step, unit loss weights); the accuracy and reliability curves, which decide every label, too.
# The configs come from the families' paper definitions (grids.family_config), so these tests also check that
# the definitions hold the paper's post period, tau, readout and divergence rule.
FAMILY_CASES = {
    "nopost": (family_config("nopost", seed=2, lr=0.08, delay_ms=60, epochs=4), {}),
    "post": (family_config("post", seed=5, lr=0.05, delay_ms=20, epochs=3), {"post": 6}),
    "longtau": (family_config("longtau", seed=4, lr=0.1, delay_ms=40, epochs=4), {"tau": 20.0}),
    "nomemory": (family_config("nomemory", seed=6, lr=0.05, response_ms=40, epochs=4),
                 {"nomemory": True, "resp": 8, "diverge": 100.0}),
}


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILY_CASES))
def test_family_matches_spec_with_noise(family):
    cfg, kw = FAMILY_CASES[family]
    ref_curves, ref_w, n = spec_train(cfg.seed, cfg.lr, cfg.delay_ms // 5, cfg.epochs, noise=True,
                                      random_init=True, **kw)
    assert n == cfg.epochs
    res = train_networks([cfg], dtype=torch.float64)
    assert_matches_spec(res, ref_curves, ref_w)
    # the curves are not trivially constant: a wrong window or formula would show
    assert len(set(np.round(ref_curves["reliability"], 6))) > 1


def test_spec_catches_a_swapped_leak():
    """The longtau comparison can fail: the same network with a = 0.75 instead of 0.25 differs."""
    cfg, kw = FAMILY_CASES["longtau"]
    ref_curves, ref_w, _ = spec_train(cfg.seed, cfg.lr, cfg.delay_ms // 5, cfg.epochs, noise=True,
                                      random_init=True, tau=5.0 / 0.75)
    res = train_networks([cfg], dtype=torch.float64)
    with pytest.raises(AssertionError):
        assert_matches_spec(res, ref_curves, ref_w)


@pytest.mark.slow
def test_nomemory_divergence_matches_spec():
    """A run stops (kept, marked diverged) at the first epoch whose loss exceeds 100, after that epoch's update:
    the script steps, then checks the loss list and saves the weights."""
    cfg = NetConfig("nomemory", seed=1, lr=1.0, delay_ms=0, epochs=20, nomemory=True, response_ms=40,
                    diverge_loss=100.0)
    ref_curves, ref_w, n = spec_train(1, 1.0, 0, 20, noise=True, random_init=True, nomemory=True, resp=8,
                                      diverge=100.0)
    assert 1 < n < 20 and ref_curves["loss"][-1] > 100
    res = train_networks([cfg], dtype=torch.float64)
    assert res.diverged[0] and res.epochs_run[0] == n
    assert_matches_spec(res, ref_curves, ref_w, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.bitwise("c")
def test_batch_invariance_bitwise_and_rerun():
    cfgs = [NetConfig("nopost", seed=s, lr=lr, delay_ms=40, epochs=3 + s % 3)
            for s in range(16) for lr in (0.1, 0.01)][:64]
    both = train_networks(cfgs, batch_size=64)
    again = train_networks(cfgs, batch_size=64)
    alone = train_networks([cfgs[7]])
    for n in both.weights:
        assert torch.equal(both.weights[n], again.weights[n])
        assert torch.equal(both.weights[n][7], alone.weights[n][0])
    for c in both.curves:
        np.testing.assert_array_equal(both.curves[c][7], alone.curves[c][0])
    assert list(both.epochs_run[:3]) == [3, 3, 4]


def test_divergence_stops_and_marks():
    cfg = NetConfig("nomemory", seed=0, lr=5.0, delay_ms=0, epochs=50, nomemory=True, response_ms=100,
                    diverge_loss=0.0)
    res = train_networks([cfg])
    assert res.diverged[0] and res.epochs_run[0] == 1


@pytest.mark.bitwise("c")
def test_divergence_leaves_the_rest_of_the_batch_untouched():
    """Networks that diverge at different epochs leave the batch; the others train on bitwise as if alone."""
    kw = dict(family="nomemory", delay_ms=0, epochs=12, nomemory=True, response_ms=40, diverge_loss=100.0)
    cfgs = [NetConfig(seed=1, lr=1.0, **kw), NetConfig(seed=2, lr=0.02, **kw), NetConfig(seed=3, lr=3.0, **kw),
            NetConfig(seed=4, lr=0.05, **kw)]
    mixed = train_networks(cfgs, batch_size=4)
    assert list(mixed.diverged) == [True, False, True, False]
    assert mixed.epochs_run[0] < 12 and mixed.epochs_run[2] < 12 and list(mixed.epochs_run[[1, 3]]) == [12, 12]
    for k in (1, 3):
        alone = train_networks([cfgs[k]])
        for n in alone.weights:
            assert torch.equal(mixed.weights[n][k], alone.weights[n][0]), n
        for c in alone.curves:
            np.testing.assert_array_equal(mixed.curves[c][k], alone.curves[c][0])


def test_scoring_is_the_scripts_argmax_of_the_target():
    """The window's first step comes before the target turns on: argmax([0, 0]) = channel 0 is what the
    scripts score there, so a network that answers its label perfectly scores 0.95 (type-0 trials miss that
    step), 1.0 with ``scoring="label"``; nomemory scores the last step only (the scripts' slice)."""
    from dataclasses import replace

    from zoo.task import TaskSpec, accuracy_reliability

    spec = TaskSpec.from_ms(delay_ms=40)
    T, B = spec.n_steps, spec.batch_size
    perfect = torch.zeros(T, B, 2)
    perfect[torch.arange(T)[:, None], torch.arange(B)[None, :], spec.correct_channel()[None, :]] = 1.0
    acc, rel = accuracy_reliability(perfect, spec)
    assert spec.metric_window == (13, 23) and acc.item() == pytest.approx(0.95) and rel.item() == pytest.approx(0.95)
    acc, rel = accuracy_reliability(perfect, replace(spec, scoring="label"))
    assert acc.item() == 1.0 and rel.item() == 1.0
    ch = spec.metric_channels()
    assert ch.shape == (10, B) and (ch[0] == 0).all() and torch.equal(ch[1], spec.correct_channel())

    nm = TaskSpec.from_ms(response_ms=40, nomemory=True)
    assert nm.n_steps == 14 and nm.metric_window == (13, 14)
    assert replace(nm, scoring="label").metric_window == (5, 13)
    wrong_last = perfect[:14].clone()
    wrong_last[-1] = 1.0 - wrong_last[-1]
    assert accuracy_reliability(wrong_last, nm)[0].item() == 0.0
    assert accuracy_reliability(wrong_last, replace(nm, scoring="label"))[0].item() == 1.0
    with pytest.raises(ValueError, match="scoring.*'reference', 'label'"):
        TaskSpec(scoring="argmax")
    with pytest.raises(ValueError, match="scoring"):
        train_networks([NetConfig("nopost", seed=0, lr=0.1, delay_ms=0, epochs=1)], scoring="labels")
