"""Counter-based random streams: every network owns its noise, independent of how it is batched.

A draw is a pure function of ``(seed, epoch, slot, index)``: no generator state is carried, so a network
trained alone, inside a batch of 64, or resumed on another worker sees exactly the same numbers.

- ``key = splitmix64(seed)``: the network's stream key.
- ``counter = epoch << 40 | slot << 24 | pair`` with ``pair = index // 2``; slot 0 is the initial state of
  the epoch's forward pass, slot t + 1 the process noise of step t.
- ``x = splitmix64(key + counter * GOLDEN)`` (64 bits): u1 = (bits 40..63 + 0.5) / 2^24,
  u2 = bits 16..39 / 2^24; Box-Muller gives ``sqrt(-2 ln u1) * cos(2 pi u2)`` for even indices and
  ``... * sin(...)`` for odd ones. The normals are computed in float32; their tails are cut at 5.9 sigma
  (the smallest u1 is 2^-25).

This torch implementation (:func:`normal`, :func:`normal_from_counter`) runs on any device; `zoo.kernels` has
fused versions of the same formula (C, Triton) and compiles this one (``torch.compile``).
"""

from __future__ import annotations

import math

import torch

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
EPOCH_SHIFT, SLOT_SHIFT = 40, 24
MAX_SLOT = (1 << (EPOCH_SHIFT - SLOT_SHIFT)) - 1
MAX_PAIRS = 1 << SLOT_SHIFT
#: epoch number reserved for analysis simulations (labels, diagnostics), never reached by training
ANALYSIS_EPOCH = (1 << 23) - 1


def _signed(x: int) -> int:
    x &= MASK64
    return x - (1 << 64) if x >= 1 << 63 else x


def splitmix64_int(x: int) -> int:
    """SplitMix64 finaliser on a Python int (mod 2^64)."""
    x &= MASK64
    x = ((x ^ (x >> 30)) * _M1) & MASK64
    x = ((x ^ (x >> 27)) * _M2) & MASK64
    return x ^ (x >> 31)


def stream_key(seed: int) -> int:
    """The signed int64 stream key of a network seed."""
    return _signed(splitmix64_int(int(seed) * GOLDEN + 0x5EED))


def counter(epoch: int, slot: int) -> int:
    if not 0 <= slot <= MAX_SLOT:
        raise ValueError(f"slot {slot} out of range [0, {MAX_SLOT}] (trial too long for the noise counter)")
    return (int(epoch) << EPOCH_SHIFT) | (int(slot) << SLOT_SHIFT)


def _shr(x: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def _mix(z: torch.Tensor) -> torch.Tensor:
    z = (z ^ _shr(z, 30)) * _signed(_M1)
    z = (z ^ _shr(z, 27)) * _signed(_M2)
    return z ^ _shr(z, 31)


def keys_tensor(seeds, device=None) -> torch.Tensor:
    return torch.tensor([stream_key(s) for s in seeds], dtype=torch.int64, device=device)


def normal_from_counter(keys: torch.Tensor, base: int | torch.Tensor, n: int) -> torch.Tensor:
    """(K, n) standard normals (float32, n even) of K stream keys: draws 0 .. n - 1 at counter ``base``
    (:func:`counter` of an epoch and slot), the formula of the module docstring. ``base`` may be a Python int
    or a 0-dim int64 tensor on the keys' device (a ``torch.compile``'d caller then needs no recompilation and
    no host-to-device copy per slot); both give the same bits. No range checks (:func:`normal` has them)."""
    pair = torch.arange(n // 2, dtype=torch.int64, device=keys.device) + base
    x = _mix(keys[:, None] + pair[None, :] * _signed(GOLDEN))  # (K, n/2)
    u1 = (_shr(x, 40).to(torch.float32) + 0.5) * 2.0**-24
    u2 = (_shr(x, 16) & 0xFFFFFF).to(torch.float32) * 2.0**-24
    rad = torch.sqrt(-2.0 * torch.log(u1))
    theta = (2.0 * math.pi) * u2
    z = torch.stack((rad * torch.cos(theta), rad * torch.sin(theta)), dim=-1)  # (K, n/2, 2)
    return z.reshape(keys.shape[0], n)


def normal(keys: torch.Tensor, epoch: int, slot: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Standard normals of shape ``(K, *shape)`` (float32) for K stream keys at (epoch, slot)."""
    n = math.prod(shape)
    if n % 2 or n // 2 > MAX_PAIRS:
        raise ValueError(f"draw size {n} must be even and at most {2 * MAX_PAIRS}")
    return normal_from_counter(keys, counter(epoch, slot), n).reshape(keys.shape[0], *shape)
