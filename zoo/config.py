"""One network's full configuration: everything needed to (re)train it, nothing else."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, fields

from .model import ModelConfig
from .task import TaskSpec

_MODEL = ModelConfig()  # the model's defaults: one home (zoo.model)


@dataclass(frozen=True)
class NetConfig:
    """A network is a function of this configuration (and the code version)."""

    family: str
    seed: int
    lr: float
    delay_ms: int
    epochs: int
    post_ms: int = 0
    tau_ms: float = _MODEL.tau_ms
    response_ms: int = 50
    nomemory: bool = False
    n_units: int = _MODEL.n_units
    noise_std: float = _MODEL.noise_std
    init_state_std: float = _MODEL.init_state_std
    momentum: float = 0.9
    weight_decay: float = 1e-7
    diverge_loss: float | None = None  # stop (and mark diverged) once the loss exceeds this

    def task(self) -> TaskSpec:
        return TaskSpec.from_ms(self.delay_ms, self.post_ms, self.response_ms, nomemory=self.nomemory)

    def model_config(self) -> ModelConfig:
        return ModelConfig(n_units=self.n_units, tau_ms=self.tau_ms, noise_std=self.noise_std,
                           init_state_std=self.init_state_std,
                           readout="linear" if self.nomemory else "sigmoid")

    @property
    def net_id(self) -> str:
        """Stable id: family, delay, learning rate index-free digest and seed, e.g. ``nopost-d040-1a2b3c4d-s007``."""
        digest = hashlib.sha1(repr(sorted(self.to_dict().items())).encode()).hexdigest()[:8]
        return f"{self.family}-d{self.delay_ms:03d}-{digest}-s{self.seed:03d}"

    def batch_key(self) -> tuple:
        """Networks with the same key can share one batched training run (same trial and model shape)."""
        return (self.task(), self.model_config())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> NetConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
