"""The leaky tanh RNN of the paper, as a plain ``torch.nn.Module`` (no I/O).

    r[t+1] = (1 - a) r[t] + a tanh(W_rec r[t] + b_rec + W_in u[t] + b_in + eps[t]),   a = dt / tau
    o[t]   = sigmoid(W_out r[t] + b_out)        (read from the state before the update of step t)

``state_dict()`` uses the reference names (``W_in.weight``, ``W_rec.weight``, ``W_out.bias``, ...), so the
authors' ``model_final.pt`` loads directly with ``load_state_dict``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from . import rng
from .errors import check_choice
from .task import DT_MS

READOUTS = ("sigmoid", "linear")
PARAM_NAMES = ("W_in.weight", "W_in.bias", "W_rec.weight", "W_rec.bias", "W_out.weight", "W_out.bias")


@dataclass(frozen=True)
class ModelConfig:
    n_units: int = 100
    n_in: int = 2
    n_out: int = 2
    dt_ms: float = DT_MS
    tau_ms: float = 10.0
    noise_std: float = 1e-3
    init_state_std: float = 0.1
    readout: str = "sigmoid"  # "linear" for the no-memory control family

    def __post_init__(self):
        check_choice("readout", self.readout, READOUTS)

    @property
    def alpha(self) -> float:
        return self.dt_ms / self.tau_ms

    def to_dict(self) -> dict:
        return asdict(self)


def param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    n, n_in, n_out = cfg.n_units, cfg.n_in, cfg.n_out
    return {"W_in.weight": (n, n_in), "W_in.bias": (n,), "W_rec.weight": (n, n), "W_rec.bias": (n,),
            "W_out.weight": (n_out, n), "W_out.bias": (n_out,)}


def init_state_dict(seed: int, cfg: ModelConfig = ModelConfig()) -> dict[str, torch.Tensor]:
    """Initial weights of network ``seed`` (float32, CPU), the same for every learning rate and delay.

    Xavier-uniform weights, zero W_rec diagonal, biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)); drawn in the
    order of ``PARAM_NAMES`` from ``torch.Generator().manual_seed(seed)``.
    """
    g = torch.Generator().manual_seed(int(seed))
    out = {}
    for name, shape in param_shapes(cfg).items():
        if name.endswith("weight"):
            fan_out, fan_in = shape
            bound = math.sqrt(6.0 / (fan_in + fan_out))
        else:
            fan_in = param_shapes(cfg)[name.replace("bias", "weight")][1]
            bound = 1.0 / math.sqrt(fan_in)
        out[name] = torch.empty(shape).uniform_(-bound, bound, generator=g)
    out["W_rec.weight"].fill_diagonal_(0.0)
    return out


class RNN(nn.Module):
    """Leaky firing-rate RNN with a sigmoid (or linear) readout."""

    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        self.config = config
        N = config.n_units
        self.W_in = nn.Linear(config.n_in, N)
        self.W_rec = nn.Linear(N, N)
        self.W_out = nn.Linear(N, config.n_out)

    @classmethod
    def from_seed(cls, seed: int, config: ModelConfig = ModelConfig()) -> RNN:
        net = cls(config)
        net.load_state_dict(init_state_dict(seed, config))
        return net

    def readout(self, r: torch.Tensor) -> torch.Tensor:
        o = self.W_out(r)
        return torch.sigmoid(o) if self.config.readout == "sigmoid" else o

    def initial_state(self, batch: int, *, random: bool = True, generator: torch.Generator | None = None,
                      seed: int | None = None, epoch: int = rng.ANALYSIS_EPOCH) -> torch.Tensor:
        """(B, N) initial state: tanh(N(0, init_state_std^2)) per trial, or zeros if ``random=False``.

        With ``seed`` the draw comes from the network's counter-based stream (as in training)."""
        p = self.W_rec.weight
        N = self.config.n_units
        if not random:
            return torch.zeros(batch, N, device=p.device, dtype=p.dtype)
        if seed is not None:
            z = rng.normal(rng.keys_tensor([seed], p.device), epoch, 0, (batch, N))[0].to(p.dtype)
        else:
            z = torch.randn(batch, N, generator=generator, dtype=p.dtype, device="cpu" if generator else p.device)
        return torch.tanh(self.config.init_state_std * z.to(p.device))

    def forward(self, inputs: torch.Tensor, r0: torch.Tensor | None = None, *, noise: bool | torch.Tensor = True,
                random_init: bool = True, generator: torch.Generator | None = None, seed: int | None = None,
                epoch: int = rng.ANALYSIS_EPOCH) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the network on ``inputs`` (T, B, n_in).

        Returns ``outputs`` (T, B, n_out), with o[t] read before the update of step t, and ``rates``
        (T + 1, B, N), the states r[0..T]. ``r0`` (B, N) overrides the initial state; ``noise`` may be
        False (deterministic), True (fresh Gaussian draws, from ``seed``'s stream if given) or an explicit
        (T, B, N) tensor of standard-normal draws that is scaled by ``noise_std``.
        """
        T, B, _ = inputs.shape
        cfg = self.config
        a = cfg.alpha
        r = self.initial_state(B, random=random_init, generator=generator, seed=seed, epoch=epoch) if r0 is None else r0
        drive = self.W_in(inputs)  # (T, B, N)
        keys = rng.keys_tensor([seed], inputs.device) if (noise is True and seed is not None) else None
        rates, outputs = [r], []
        for t in range(T):
            outputs.append(self.readout(r))
            pre = self.W_rec(r) + drive[t]
            if isinstance(noise, torch.Tensor):
                pre = pre + cfg.noise_std * noise[t]
            elif noise:
                if keys is not None:
                    eps = rng.normal(keys, epoch, t + 1, (B, cfg.n_units))[0].to(pre.dtype)
                else:
                    eps = torch.randn(pre.shape, generator=generator, dtype=pre.dtype,
                                      device="cpu" if generator else pre.device).to(pre.device)
                pre = pre + cfg.noise_std * eps
            r = (1 - a) * r + a * torch.tanh(pre)
            rates.append(r)
        return torch.stack(outputs), torch.stack(rates)
