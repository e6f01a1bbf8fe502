"""zoo.loss: the training loss and its gradient, against the paper's formula and autograd."""

import pytest
import torch

from zoo.loss import element_weights, weighted_mse, weighted_mse_grad
from zoo.task import TaskSpec


@pytest.mark.parametrize("spec,sigmoid", [(TaskSpec(delay_steps=8), True), (TaskSpec(delay_steps=4, post_steps=6), True),
                                          (TaskSpec(reaction_steps=8, nomemory=True), False)])
def test_weighted_mse_is_the_paper_formula_and_its_gradient(spec, sigmoid):
    T, B = spec.n_steps, spec.batch_size
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, T, B, 2, generator=g, dtype=torch.float64, requires_grad=True)
    y = spec.targets(dtype=torch.float64)  # (T, B, 2)
    # the formula written out: mean over (t, b, c) of w_t (y_hat - y)^2, w_t from the paper's R/T rule
    R = spec.reaction_steps + spec.post_steps
    w_t = torch.ones(T, dtype=torch.float64) if spec.nomemory else torch.tensor(
        [R / T if t < T - R else 1 - R / T for t in range(T)], dtype=torch.float64)
    y_hat = torch.sigmoid(logits) if sigmoid else logits
    ref = (w_t[:, None, None] * (y_hat - y) ** 2).mean(dim=(1, 2, 3))
    ref.sum().backward()
    w, w_grad = element_weights(spec, dtype=torch.float64)
    flat = y_hat.detach().reshape(3, T * B, 2)
    for out in (None, (torch.empty_like(flat), torch.empty_like(flat))):
        value, diff = weighted_mse(flat, y.reshape(T * B, 2), w, out=out)
        torch.testing.assert_close(value, ref.detach(), rtol=1e-12, atol=0)
        bufs = None if out is None else (torch.empty_like(flat), torch.empty_like(flat))
        grad = weighted_mse_grad(diff, flat, w_grad, sigmoid, out=bufs)
        torch.testing.assert_close(grad.view(3, T, B, 2), logits.grad, rtol=1e-10, atol=1e-15)


def test_trainer_reports_this_loss():
    """The loss curve of a training run is weighted_mse of the network's outputs (epoch 0, no noise)."""
    from zoo.config import NetConfig
    from zoo.model import RNN
    from zoo.train import train_networks

    cfg = NetConfig("nopost", seed=1, lr=0.1, delay_ms=20, epochs=1, noise_std=0.0, init_state_std=0.0)
    res = train_networks([cfg], dtype=torch.float64)
    net = RNN.from_seed(1, cfg.model_config()).double()
    spec = cfg.task()
    with torch.no_grad():
        out, _ = net(spec.inputs(dtype=torch.float64), noise=False, random_init=False)
    w, _ = element_weights(spec, dtype=torch.float64)
    value, _ = weighted_mse(out.reshape(1, -1, 2), spec.targets(dtype=torch.float64).reshape(-1, 2), w)
    assert res.curves["loss"][0][0] == pytest.approx(float(value[0]), rel=1e-6)
