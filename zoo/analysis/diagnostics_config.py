"""The settings of the dynamics diagnostics: :class:`DiagnosticsConfig` (the documented procedure's
defaults in :data:`DEFAULT_CONFIG`; :func:`with_config` changes some), and :func:`torch_threads`, the torch
thread count the diagnostics run with."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace

import torch


@dataclass(frozen=True)
class DiagnosticsConfig:
    """Settings of the diagnostics (defaults are the documented procedure)."""

    autonomous_steps: int = 1000  # zero-input steps after the nominal trial (at least 8 T_nom)
    tail_fraction: float = 0.6  # the last fraction of the autonomous run that is analysed
    copies: int = 1  # trajectories per trial type
    n_starts: int = 48  # fixed-point search starts per network
    adam_steps: int = 500
    adam_lr: float = 1e-2
    polish_steps: int = 30
    max_polish: int = 16  # candidates per network polished (lowest speed first)
    polish_tol: float = 1.0  # candidates with a larger speed after Adam are dropped
    candidate_tol: float = 0.05  # Adam results closer than this are polished once
    direct_starts: int = 4  # the first starts are also polished directly (no Adam): in diagnose_*, each
    # trajectory's last state and tail mean (Adam can slide from there into a slow valley instead)
    fixed_tol: float = 1e-10  # q below this: fixed point
    slow_tol: float = 1e-5  # local minimum of q below this (and not fixed): slow point
    dedup_tol: float = 1e-3  # polished points closer than this (Euclidean, rate units) are one point
    conv_speed: float = 1e-5  # final |x[t+1] - x[t]| below this: converged
    cycle_ac: float = 0.9  # autocorrelation needed at the period
    amp_tol: float = 1e-3  # RMS excursion below which the tail counts as static
    decay_ratio: float = 0.9  # late / early excursion (or step size) needed for sustained motion
    threads: int | None = 1  # torch threads while diagnosing (None: leave as is); the batched problems are
    # small, and one thread avoids the synchronisation cost that dominates them on a busy CPU

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_CONFIG = DiagnosticsConfig()


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch threads (restored afterwards); None leaves the setting alone."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def with_config(config: DiagnosticsConfig | None = None, **changes) -> DiagnosticsConfig:
    """A :class:`DiagnosticsConfig` with some settings changed."""
    return replace(config or DEFAULT_CONFIG, **changes)
