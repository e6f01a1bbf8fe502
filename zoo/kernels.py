"""Elementwise hot spots of the trainer, behind one small interface so faster backends can replace them.

``noisy_tanh_step`` computes, for K networks at once,

    z      = tanh(pre + noise_std * normal(keys, epoch, slot))      # (K, B, N)
    r_next = r + alpha * (z - r)

where ``normal`` is the counter-based stream of :mod:`zoo.rng`. Backends must compute the same formula
(bitwise equality between backends is not promised; each backend is deterministic).
"""

from __future__ import annotations

import torch

from . import rng


def noisy_tanh_step(pre: torch.Tensor, r: torch.Tensor, keys: torch.Tensor, epoch: int, slot: int,
                    noise_std: float, alpha: float, z_out: torch.Tensor, r_out: torch.Tensor) -> None:
    """Reference (pure torch) backend. pre, r, z_out, r_out: (K, B, N); keys: (K,) int64."""
    if noise_std:
        eps = rng.normal(keys, epoch, slot, tuple(pre.shape[1:])).to(pre.dtype)
        pre.add_(eps, alpha=noise_std)
    torch.tanh(pre, out=z_out)
    torch.add(r, torch.sub(z_out, r), alpha=alpha, out=r_out)


def initial_state(keys: torch.Tensor, epoch: int, shape: tuple[int, int], std: float, dtype) -> torch.Tensor:
    """(K, B, N) initial states tanh(std * z), z from slot 0 of each network's stream."""
    return torch.tanh(std * rng.normal(keys, epoch, 0, shape).to(dtype))
