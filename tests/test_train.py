"""Fidelity of the batched trainer against a plain autograd implementation written from the spec."""

import math

import numpy as np
import pytest
import torch

from zoo import rng
from zoo.config import NetConfig
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


def spec_train(seed, lr, delay_steps, epochs, *, noise, random_init, post=0, nomemory=False, tau=10.0):
    """One network, autograd + torch.optim.SGD, straight from the paper-method page."""
    params = [p.double().requires_grad_() for p in spec_init(seed)]
    W_in, b_in, W_rec, b_rec, W_out, b_out = params
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-7)
    resp = 10
    T = 6 + delay_steps + resp + post
    B = 128
    types = torch.arange(B) // 64
    u = torch.zeros(T, B, 2, dtype=torch.float64)
    y = torch.zeros(T, B, 2, dtype=torch.float64)
    for b in range(B):
        onehot = torch.tensor([0.0, 1.0]) if types[b] == 0 else torch.tensor([1.0, 0.0])
        u[:6, b] = onehot
        y[6 + delay_steps:6 + delay_steps + resp, b] = onehot
    R = resp + post
    w = torch.full((T,), R / T, dtype=torch.float64)
    w[T - R:] = 1 - R / T
    a = 5.0 / tau
    key = rng.keys_tensor([seed])
    losses = []
    for e in range(epochs):
        r = torch.zeros(B, 100, dtype=torch.float64)
        if random_init:
            r = torch.tanh(0.1 * rng.normal(key, e, 0, (B, 100))[0].double())
        outs = []
        for t in range(T):
            outs.append(torch.sigmoid(r @ W_out.T + b_out))
            pre = r @ W_rec.T + b_rec + u[t] @ W_in.T + b_in
            if noise:
                pre = pre + 1e-3 * rng.normal(key, e, t + 1, (B, 100))[0].double()
            r = (1 - a) * r + a * torch.tanh(pre)
        o = torch.stack(outs)
        loss = (w[:, None, None] * (o - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    names = ["W_in.weight", "W_in.bias", "W_rec.weight", "W_rec.bias", "W_out.weight", "W_out.bias"]
    return np.array(losses), {n: p.detach() for n, p in zip(names, params, strict=True)}


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.float64, 1e-10)])
def test_matches_spec_without_noise(dtype, tol):
    cfg = NetConfig("nopost", seed=3, lr=0.1, delay_ms=40, epochs=4, noise_std=0.0, init_state_std=0.0)
    ref_loss, ref_w = spec_train(3, 0.1, 8, 4, noise=False, random_init=False)
    res = train_networks([cfg], dtype=dtype)
    # curves are stored as float32 whatever the training dtype
    np.testing.assert_allclose(res.curves["loss"][0], ref_loss, rtol=1e-6, atol=1e-6)
    for n, w in ref_w.items():
        np.testing.assert_allclose(res.weights[n][0].double().numpy(), w.numpy(), rtol=0, atol=tol)


def test_matches_spec_with_noise_and_post():
    cfg = NetConfig("post", seed=5, lr=0.05, delay_ms=20, epochs=3, post_ms=30)
    ref_loss, ref_w = spec_train(5, 0.05, 4, 3, noise=True, random_init=True, post=6)
    res = train_networks([cfg], dtype=torch.float64)
    np.testing.assert_allclose(res.curves["loss"][0], ref_loss, rtol=1e-6)
    for n, w in ref_w.items():
        np.testing.assert_allclose(res.weights[n][0].numpy(), w.float().numpy(), atol=1e-6)


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
