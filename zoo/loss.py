"""The training loss: the paper's weighted mean squared error, and its gradient wrt the readout logits.

    loss = mean over (step t, trial b, channel c) of  w_t (y_hat[t, b, c] - y[t, b, c])^2

with ``w_t`` from :meth:`zoo.task.TaskSpec.loss_weights` (the last R steps weigh 1 - R/T, the others R/T;
every step 1 for the nomemory control) and ``y_hat`` the readout (sigmoid of the logits, or the logits for the
linear readout). The trainer (:mod:`zoo.train`) calls these functions with buffers it reuses every epoch; with
no buffers they allocate and are differentiable (the benchmark's autograd baseline uses them).
"""

from __future__ import annotations

import torch

from .task import TaskSpec


def element_weights(task: TaskSpec, device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-element weights of a flattened trial: ``w`` (T*B, 2) for the loss and ``w_grad`` (T*B, 2) =
    ``2 w / (T B 2)``, the derivative of the mean wrt ``y_hat`` divided by ``(y_hat - y)``.

    Rows are (step, trial) in step-major order. Expanded over the 2 channels and contiguous: the same products
    as broadcasting a (T*B, 1) column, without TensorIterator's slow inner loop of length 2."""
    T, B = task.n_steps, task.batch_size
    w = task.loss_weights(device, dtype).repeat_interleave(B)[:, None]  # (TB, 1)
    return w.expand(T * B, 2).contiguous(), ((2.0 / (T * B * 2)) * w).expand(T * B, 2).contiguous()


def weighted_mse(y_hat: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
                 out: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of K networks: ``y_hat`` (K, T*B, 2) outputs, ``y`` (T*B, 2) targets, ``w`` (T*B, 2) from
    :func:`element_weights` -> ``loss`` (K,) and ``diff = y_hat - y`` (K, T*B, 2).
    ``out`` = two (K, T*B, 2) buffers for ``diff`` and a scratch product (overwritten)."""
    if out is None:
        diff = y_hat - y
        return (diff * w * diff).mean(dim=(1, 2)), diff
    diff = torch.sub(y_hat, y, out=out[0])
    return torch.mul(diff, w, out=out[1]).mul_(diff).mean(dim=(1, 2)), diff


def weighted_mse_grad(diff: torch.Tensor, y_hat: torch.Tensor, w_grad: torch.Tensor, sigmoid: bool,
                      out: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """dloss/dlogits (K, T*B, 2) from :func:`weighted_mse`'s ``diff``: ``w_grad * diff``, times
    ``y_hat (1 - y_hat)`` for the sigmoid readout. ``out`` = the result buffer and a scratch buffer."""
    g = diff * w_grad if out is None else torch.mul(diff, w_grad, out=out[0])
    if sigmoid:  # * y_hat * (1 - y_hat), with 1 - y as -y + 1 (the same float)
        one_minus = 1.0 - y_hat if out is None else out[1].copy_(y_hat).neg_().add_(1.0)
        g.mul_(y_hat).mul_(one_minus)
    return g
