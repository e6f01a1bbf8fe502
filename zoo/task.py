"""The delayed cue-discrimination task (DCDT): trials, targets, loss weights and metrics.

A trial is ``cue (6 steps) + delay (D) + reaction (10 steps) + post (P)`` steps of dt = 5 ms. During the cue
the input is ``[0, 1]`` (type 0) or ``[1, 0]`` (type 1); the target is the same one-hot vector during the
reaction steps and 0 elsewhere. A batch holds the 2 types x 64 copies (types ``[0]*64 + [1]*64``).
No I/O here; every function is a pure function of a :class:`TaskSpec`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from .errors import InvalidChoiceError

DT_MS = 5.0
CUE_STEPS = 6
REACTION_STEPS = 10
N_COPIES = 64
#: the per-epoch training curves of every network, in their stored order
CURVES = ("loss", "accuracy", "reliability", "grad_norm")
#: how accuracy and reliability score the metric window. ``"reference"`` (default): as the authors' scripts,
#: against ``argmax`` of the target at each step, so channel 0 where the target is still 0 (the window's first
#: step), and, for ``nomemory``, on the steps the scripts' slice leaves (the last one); ``"label"``: against the
#: trial's label at every step of the window, nomemory on ``[cue - 1, cue - 1 + response)`` (this package
#: before 0.2)
SCORINGS = ("reference", "label")


def ms_to_steps(ms, name: str = "duration", dt_ms: float = DT_MS):
    """Convert a duration in ms (a number or an array) to whole time steps; refuse values that are not a
    non-negative multiple of dt."""
    if np.ndim(ms):
        return np.array([ms_to_steps(m, name, dt_ms) for m in np.ravel(ms)], dtype=np.int64).reshape(np.shape(ms))
    steps = round(float(ms) / dt_ms)
    if abs(steps * dt_ms - float(ms)) > 1e-9 or steps < 0:
        raise InvalidChoiceError(name, ms, hint=f"must be a non-negative multiple of dt = {dt_ms:g} ms")
    return steps


def steps_to_ms(steps, dt_ms: float = DT_MS):
    """Time steps (a number or an array) -> ms, as floats."""
    return np.asarray(steps, dtype=float) * dt_ms if np.ndim(steps) else float(steps) * dt_ms


@dataclass(frozen=True)
class TaskSpec:
    """One task variant, all durations in time steps.

    ``nomemory`` is the control family: no delay, the target is the trial's label at every step, all loss
    weights are 1, and ``reaction_steps`` is the response length.
    """

    delay_steps: int = 0
    post_steps: int = 0
    cue_steps: int = CUE_STEPS
    reaction_steps: int = REACTION_STEPS
    n_copies: int = N_COPIES
    nomemory: bool = False
    dt_ms: float = DT_MS
    scoring: str = SCORINGS[0]  # one of SCORINGS

    def __post_init__(self):
        if self.scoring not in SCORINGS:
            raise InvalidChoiceError("scoring", self.scoring, SCORINGS)

    @classmethod
    def from_ms(cls, delay_ms: float = 0, post_ms: float = 0, response_ms: float = 50, nomemory: bool = False,
                n_copies: int = N_COPIES) -> TaskSpec:
        return cls(delay_steps=ms_to_steps(delay_ms, "delay_ms"), post_steps=ms_to_steps(post_ms, "post_ms"),
                   reaction_steps=ms_to_steps(response_ms, "response_ms"), nomemory=nomemory,
                   n_copies=n_copies)

    @property
    def n_steps(self) -> int:
        """T, the number of steps of one trial."""
        return self.cue_steps + self.delay_steps + self.reaction_steps + self.post_steps

    @property
    def batch_size(self) -> int:
        return 2 * self.n_copies

    @property
    def reaction_start(self) -> int:
        return self.cue_steps + self.delay_steps

    @property
    def metric_window(self) -> tuple[int, int]:
        """Steps ``[start, stop)`` scored by accuracy and reliability: the reaction window one step early,
        because the readout at step t sees the state before the update of step t (integer arithmetic).
        ``nomemory`` with the reference scoring: the scripts compute the window with the response length in the
        delay's place, ``[cue + response - 1, cue + 2 response - 1)``, which the trial cuts to its last step."""
        start = self.reaction_start - 1
        if self.nomemory and self.scoring == "reference":
            start += self.reaction_steps
        return start, min(start + self.reaction_steps, self.n_steps)

    def metric_channels(self, device=None) -> torch.Tensor:
        """(W, B) the channel scored as correct at each step of the metric window (``scoring``): ``argmax`` of
        the target (channel 0 where the target is 0, as ``torch.argmax`` gives it) or the trial's label.
        Made once per (task, device): the trainer scores every epoch with it (read only)."""
        return _metric_channels(self, None if device is None else torch.device(device))

    @property
    def weighted_steps(self) -> int:
        """R, the number of final steps that carry the large loss weight."""
        return self.reaction_steps + self.post_steps

    def trial_types(self, device=None) -> torch.Tensor:
        """(B,) trial type of every trial of the batch: 64 of type 0, then 64 of type 1."""
        return torch.arange(self.batch_size, device=device) // self.n_copies

    def correct_channel(self, device=None) -> torch.Tensor:
        """(B,) the output channel that is correct on each trial (type 0 -> channel 1)."""
        return 1 - self.trial_types(device)

    def inputs(self, device=None, dtype=torch.float32, n_steps: int | None = None) -> torch.Tensor:
        """(T, B, 2) inputs; ``n_steps`` extends the trial with zero input (for long simulations)."""
        T = self.n_steps if n_steps is None else n_steps
        u = torch.zeros(T, self.batch_size, 2, device=device, dtype=dtype)
        ch = self.correct_channel(device)
        u[: self.cue_steps, torch.arange(self.batch_size, device=device), ch] = 1.0
        return u

    def targets(self, device=None, dtype=torch.float32) -> torch.Tensor:
        """(T, B, 2) targets: one-hot in the reaction window (every step for ``nomemory``), 0 elsewhere."""
        y = torch.zeros(self.n_steps, self.batch_size, 2, device=device, dtype=dtype)
        ch = self.correct_channel(device)
        lo, hi = (0, self.n_steps) if self.nomemory else (self.reaction_start, self.reaction_start + self.reaction_steps)
        y[lo:hi, torch.arange(self.batch_size, device=device), ch] = 1.0
        return y

    def loss_weights(self, device=None, dtype=torch.float32) -> torch.Tensor:
        """(T,) per-step loss weights: the last R steps weigh 1 - R/T, the others R/T (all 1 for nomemory)."""
        T = self.n_steps
        if self.nomemory:
            return torch.ones(T, device=device, dtype=dtype)
        R = self.weighted_steps
        w = torch.full((T,), R / T, device=device, dtype=dtype)
        w[T - R:] = 1.0 - R / T
        return w


@functools.lru_cache(maxsize=64)
def _metric_channels(spec: TaskSpec, device: torch.device | None) -> torch.Tensor:
    lo, hi = spec.metric_window
    if spec.scoring == "label":
        return spec.correct_channel(device).expand(hi - lo, spec.batch_size)
    y = spec.targets(device)[lo:hi]
    return (y[..., 1] > y[..., 0]).long()


def accuracy_reliability(outputs: torch.Tensor, spec: TaskSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Accuracy and reliability on the metric window. outputs: (..., T, B, 2) -> two tensors of shape (...).

    p = o / sum(o) over channels (NaN -> 0); accuracy = fraction of (trial, step) where argmax p is the
    correct channel; reliability = mean p on the correct channel. The correct channel of each step is
    ``spec.metric_channels()`` (the target's argmax with the default ``scoring="reference"``).
    """
    lo, hi = spec.metric_window
    o = outputs[..., lo:hi, :, :]
    p = torch.nan_to_num(o / o.sum(-1, keepdim=True), nan=0.0)
    ch = spec.metric_channels(outputs.device)  # (W, B)
    if p.shape[-1] == 2:  # argmax of two channels (the first on a tie), without argmax's cost
        correct = ((p[..., 1] > p[..., 0]).long() == ch).to(outputs.dtype)
    else:
        correct = (p.argmax(-1) == ch).to(outputs.dtype)
    p_correct = p.gather(-1, ch.expand(*p.shape[:-1]).unsqueeze(-1)).squeeze(-1)
    return correct.mean(dim=(-2, -1)), p_correct.mean(dim=(-2, -1))
