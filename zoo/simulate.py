"""Batched, gradient-free simulation of K stacked networks (for labels and diagnostics).

``simulate_stacked`` runs K networks at once with ``torch.bmm`` / ``torch.baddbmm``; it uses the same equations
and noise streams as :meth:`zoo.model.RNN.forward`, so network k gives the same result as
``RNN.forward(inputs, seed=seeds[k], ...)`` run alone:

    o[t]   = readout(W_out r[t] + b_out)                  (before the update of step t)
    r[t+1] = (1 - a) r[t] + a tanh(W_rec r[t] + b_rec + W_in u[t] + b_in + noise_std * z[t])

with r[0] = tanh(init_state_std * z0), z0 = ``rng.normal(keys, epoch, 0, (B, N))`` and
z[t] = ``rng.normal(keys, epoch, t + 1, (B, N))``. Trial b's draws do not depend on the batch size B (they
are the b-th block of N numbers of each slot), so simulating only the first trials of a batch is exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import rng
from .model import PARAM_NAMES, ModelConfig, param_shapes
from .task import TaskSpec


def _check_state(state: dict[str, torch.Tensor], cfg: ModelConfig) -> int:
    missing = [n for n in PARAM_NAMES if n not in state]
    if missing:
        raise KeyError(f"stacked state is missing {missing}")
    K = state["W_rec.weight"].shape[0]
    for name, shape in ((n, (K, *s)) for n, s in param_shapes(cfg).items()):
        if tuple(state[name].shape) != shape:
            raise ValueError(f"{name} has shape {tuple(state[name].shape)}, expected {shape} (K = {K})")
    return K


@torch.no_grad()
def simulate_stacked(state: dict[str, torch.Tensor], cfg: ModelConfig, inputs: torch.Tensor, *,
                     seeds: Sequence[int] | None = None, noise: bool | torch.Tensor = True, random_init: bool = True,
                     r0: torch.Tensor | None = None, epoch: int = rng.ANALYSIS_EPOCH,
                     record_rates: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run K stacked networks on the same ``inputs`` (T, B, n_in), without gradients.

    ``state`` maps the reference parameter names to tensors stacked on a leading K axis (``W_rec.weight``
    (K, N, N), ...); the simulation runs on their device and dtype. ``seeds`` (K) select each network's
    counter-based noise stream (as ``RNN.forward(seed=...)``); without seeds, the draws come from torch's
    global generator (not reproducible across batchings). ``r0`` (K, B, N) overrides the initial state;
    ``random_init=False`` starts from zeros; ``noise=False`` is deterministic, and a (K, T, B, N) tensor gives
    explicit standard-normal draws (scaled by ``noise_std``).

    Returns ``outputs`` (K, T, B, n_out), o[t] read before the update of step t, and ``rates``
    (K, T + 1, B, N), the states r[0..T] (``None`` if ``record_rates=False``, to save memory).
    """
    K = _check_state(state, cfg)
    W_rec = state["W_rec.weight"]
    device, dtype = W_rec.device, W_rec.dtype
    T, B, n_in = inputs.shape
    if n_in != cfg.n_in:
        raise ValueError(f"inputs have {n_in} channels, the model expects {cfg.n_in}")
    N, a = cfg.n_units, cfg.alpha
    if seeds is not None:
        seeds = [int(s) for s in seeds]
        if len(seeds) != K:
            raise ValueError(f"got {len(seeds)} seeds for {K} networks")
    keys = rng.keys_tensor(seeds, device) if seeds is not None else None

    def draw(slot: int) -> torch.Tensor:  # (K, B, N) standard normals
        if keys is not None:
            return rng.normal(keys, epoch, slot, (B, N)).to(dtype)
        return torch.randn(K, B, N, device=device, dtype=dtype)

    W_recT = W_rec.transpose(1, 2)  # (K, N, N)
    W_inT = state["W_in.weight"].to(device, dtype).transpose(1, 2)  # (K, n_in, N)
    W_outT = state["W_out.weight"].to(device, dtype).transpose(1, 2)  # (K, N, n_out)
    b_in = state["W_in.bias"].to(device, dtype)[:, None, :]  # (K, 1, N)
    b_rec = state["W_rec.bias"].to(device, dtype)[:, None, :]  # (K, 1, N)
    b_out = state["W_out.bias"].to(device, dtype)[:, None, :]  # (K, 1, n_out)
    u = inputs.to(device, dtype)  # (T, B, n_in)

    if isinstance(noise, torch.Tensor) and tuple(noise.shape) != (K, T, B, N):
        raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {(K, T, B, N)}")

    if r0 is not None:
        if tuple(r0.shape) != (K, B, N):
            raise ValueError(f"r0 has shape {tuple(r0.shape)}, expected {(K, B, N)}")
        r = r0.to(device, dtype)
    elif random_init:
        r = torch.tanh(cfg.init_state_std * draw(0))  # (K, B, N)
    else:
        r = torch.zeros(K, B, N, device=device, dtype=dtype)

    outputs = torch.empty(K, T, B, cfg.n_out, device=device, dtype=dtype)  # (K, T, B, n_out)
    rates = torch.empty(K, T + 1, B, N, device=device, dtype=dtype) if record_rates else None  # (K, T+1, B, N)
    if rates is not None:
        rates[:, 0] = r
    for t in range(T):
        o = torch.baddbmm(b_out, r, W_outT)  # (K, B, n_out)
        outputs[:, t] = torch.sigmoid(o) if cfg.readout == "sigmoid" else o
        drive = torch.baddbmm(b_in, u[t].expand(K, B, n_in), W_inT)  # (K, B, N)
        pre = torch.baddbmm(b_rec, r, W_recT) + drive  # (K, B, N)
        if isinstance(noise, torch.Tensor):
            pre = pre + cfg.noise_std * noise[:, t].to(device, dtype)
        elif noise:
            pre = pre + cfg.noise_std * draw(t + 1)
        r = (1 - a) * r + a * torch.tanh(pre)
        if rates is not None:
            rates[:, t + 1] = r
    return outputs, rates


def nominal_steps(task: TaskSpec) -> int:
    """T_nom = cue + delay + reaction: the nominal trial without the post-reaction period."""
    return task.cue_steps + task.delay_steps + task.reaction_steps


def extended_inputs(task: TaskSpec, factor: int = 9, device=None, dtype=torch.float32) -> torch.Tensor:
    """(factor * T_nom, B, 2) inputs: the nominal trial's inputs (cue, delay, reaction; no post) first, then
    zeros, with T_nom = :func:`nominal_steps`. The reference labels use ``factor = 9``."""
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    return task.inputs(device=device, dtype=dtype, n_steps=factor * nominal_steps(task))
