"""The torch formulas of the kernels: the ``torch`` backend, and the reference every other backend matches.

The bottom of :mod:`zoo.kernels`: it imports no other kernel module (only torch and :mod:`zoo.rng`). Any
device, any dtype. The whole passes (:func:`forward_pass`, :func:`backward_pass`) take the per-step
elementwise functions as arguments, so :mod:`zoo.kernels.dispatch` runs the same loop with the step kernels
of another backend (C, ``torch.compile``).
"""

from __future__ import annotations

import torch

from .. import rng


def check_trial_length(T: int) -> None:
    """A trial of T steps uses noise slots 0 .. T: all must fit the counter."""
    if T + 1 > rng.MAX_SLOT:
        raise ValueError(f"trial of {T} steps is too long for the noise counter (at most {rng.MAX_SLOT - 1})")


def readout(r: torch.Tensor, w_out: torch.Tensor, b_out: torch.Tensor, logits_out: torch.Tensor) -> None:
    """logits_out (K, B, O) = b_out + r @ w_out^T."""
    torch.baddbmm(b_out[:, None, :], r, w_out.transpose(1, 2), out=logits_out)


def noisy_tanh_step(pre: torch.Tensor, r: torch.Tensor, keys: torch.Tensor, epoch: int, slot: int,
                    noise_std: float, alpha: float, z_out: torch.Tensor, r_out: torch.Tensor,
                    counter: torch.Tensor | None = None, *, w_out: torch.Tensor | None = None,
                    b_out: torch.Tensor | None = None, logits_out: torch.Tensor | None = None,
                    stream_z: bool = False, r_next: torch.Tensor | None = None) -> None:
    """z_out = tanh(pre + noise_std * rng.normal(keys, epoch, slot)); r_out = r + alpha * (z_out - r); the
    readout logits of r_out if ``w_out`` is given. ``pre`` is scratch (the noise is added into it).
    ``counter`` and ``stream_z`` are hints for other backends (see :func:`zoo.kernels.noisy_tanh_step`)."""
    if pre[0].numel() % 2:
        raise ValueError(f"noise draws come in pairs: B * N = {pre[0].numel()} must be even")
    if noise_std:
        eps = rng.normal(keys, epoch, slot, tuple(pre.shape[1:])).to(pre.dtype)
        pre.add_(eps, alpha=noise_std)
    torch.tanh(pre, out=z_out)
    torch.add(r, torch.sub(z_out, r), alpha=alpha, out=r_out)
    if r_next is not None:
        r_next.copy_(r_out)
    if w_out is not None:
        readout(r_out, w_out, b_out, logits_out)


def initial_state(keys: torch.Tensor, epoch: int, shape: tuple[int, int], std: float, dtype,
                  out: torch.Tensor | None = None) -> torch.Tensor:
    """(K, B, N) initial states tanh(std * z), z from slot 0 of each network's stream (into ``out`` if given)."""
    if out is None:
        out = torch.empty((keys.shape[0], *shape), dtype=dtype, device=keys.device)
    out.copy_(torch.tanh(std * rng.normal(keys, epoch, 0, shape).to(dtype)))
    return out


def backward_step(g: torch.Tensor, z: torch.Tensor, dlogit: torch.Tensor, w_out: torch.Tensor, alpha: float,
                  h_out: torch.Tensor, bias_acc: torch.Tensor | None = None) -> None:
    """Elementwise part of one backward step (see :func:`zoo.kernels.backward_step`): z <- alpha g (1 - z^2),
    h_out <- (1 - alpha) g + dlogit @ w_out, bias_acc[:, 0] += sum over trials of the new z."""
    z.mul_(z).sub_(1.0).mul_(g).mul_(-alpha)
    torch.baddbmm(g * (1.0 - alpha), dlogit, w_out, out=h_out)
    if bias_acc is not None:
        bias_acc[:, 0] += z.sum(1)


def bias_total(acc: torch.Tensor) -> torch.Tensor:
    """(K, ...) total of (K, P, ...) partial sums, e.g. a bias accumulator (added in order: deterministic)."""
    total = acc[:, 0].clone()
    for p in range(1, acc.shape[1]):
        total += acc[:, p]
    return total


def forward_pass(W_rec: torch.Tensor, drive_cue: torch.Tensor, bias: torch.Tensor, cue_steps: int,
                 W_out: torch.Tensor, b_out: torch.Tensor, keys: torch.Tensor, epoch: int, noise_std: float,
                 alpha: float, init_std: float, R: torch.Tensor, Z: torch.Tensor, L: torch.Tensor, *,
                 step=noisy_tanh_step, init=initial_state, pingpong: bool = False) -> None:
    """Forward pass of K networks over a whole trial, step by step with batched matmuls (shapes as
    :func:`zoo.kernels.forward_pass`). ``step`` and ``init``: the elementwise kernels (signatures of
    :func:`noisy_tanh_step` and :func:`initial_state`); ``pingpong``: read the state from two buffers that
    do not alias R and pass the noise counters as tensors (what the ``torch.compile``'d step needs)."""
    K, T1, B, N = R.shape
    T = T1 - 1
    check_trial_length(T)
    pre = torch.empty((K, B, N), dtype=R.dtype, device=R.device)
    init(keys, epoch, (B, N), init_std, R.dtype, out=R[:, 0])
    readout(R[:, 0], W_out, b_out, L[:, 0])
    W_rec_T = W_rec.transpose(1, 2)
    bias3 = bias[:, None, :]
    if pingpong:
        r_cur, r_nxt = R[:, 0].clone(), torch.empty_like(pre)
        ctr = torch.tensor([rng.counter(epoch, s) for s in range(T + 1)], device=R.device)
    for t in range(T):
        r_t = r_cur if pingpong else R[:, t]
        torch.baddbmm(drive_cue if t < cue_steps else bias3, r_t, W_rec_T, out=pre)
        nxt = t + 1 < T
        step(pre, r_t, keys, epoch, t + 1, noise_std, alpha, Z[:, t], R[:, t + 1],
             counter=ctr[t + 1] if pingpong else None, w_out=W_out if nxt else None,
             b_out=b_out if nxt else None, logits_out=L[:, t + 1] if nxt else None, stream_z=True,
             r_next=r_nxt if pingpong else None)
        if pingpong:
            r_cur, r_nxt = r_nxt, r_cur


def backward_pass(W_rec: torch.Tensor, W_out: torch.Tensor, u_cue: torch.Tensor, cue_steps: int, alpha: float,
                  R: torch.Tensor, Z: torch.Tensor, DL: torch.Tensor, *, step=backward_step,
                  bias_acc: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Backward pass through time of K networks, step by step (arguments and result as
    :func:`zoo.kernels.backward_pass`). ``step``: the elementwise kernel (signature of :func:`backward_step`);
    ``bias_acc``: its zeroed (K, P, N) bias accumulator (default P = 1)."""
    K, T1, B, N = R.shape
    T = T1 - 1
    g = torch.zeros((K, B, N), dtype=R.dtype, device=R.device)  # dL/dr[t+1]
    h = torch.empty_like(g)
    if bias_acc is None:
        bias_acc = torch.zeros((K, 1, N), dtype=R.dtype, device=R.device)
    for t in range(T - 1, -1, -1):
        # Z[:, t] <- dL/dpre[t] = a g (1 - z^2); h <- (1 - a) g + dlogit[t] @ W_out (readout gradient wrt r[t])
        step(g, Z[:, t], DL[:, t], W_out, alpha, h, bias_acc)
        if t:  # dL/dr[t] = h + dL/dpre[t] @ W_rec (not needed for r[0])
            h.baddbmm_(Z[:, t], W_rec)
            g, h = h, g
    return backward_tail(W_out, u_cue, cue_steps, R, Z, DL, bias_total(bias_acc))


def backward_tail(W_out, u_cue, cue_steps, R, D, DL, g_bias) -> dict[str, torch.Tensor]:
    """The weight gradients as large batched GEMMs, once D (K, T, B, N) holds dL/dpre at every step."""
    K, T, B, N = D.shape
    Rf = R[:, :T].reshape(K, T * B, N)  # (K, TB, N) states read out at steps 0..T-1 (a view)
    Df = D.view(K, T * B, N)  # (K, TB, N) dL/dpre
    dlogit = DL.reshape(K, T * B, W_out.shape[1])
    return {"W_rec": torch.bmm(Df.transpose(1, 2), Rf), "b": g_bias,
            "W_in": torch.matmul(D[:, :cue_steps].sum(1).transpose(1, 2), u_cue.to(D.dtype)),
            "W_out": torch.bmm(dlogit.transpose(1, 2), Rf)}
