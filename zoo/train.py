"""Batched trainer: many networks at once, each with its own learning rate, seed and noise stream.

Weights of K networks are stacked on a leading axis and trained with batched matmuls and a hand-written
backward pass through time (no autograd). The maths is exactly that of training one ``zoo.model.RNN`` with
autograd and ``torch.optim.SGD(momentum=0.9, weight_decay=1e-7)``, full batch, full BPTT; the fidelity tests
check this against an independent autograd implementation.

Batch invariance: a network's initial weights come from its seed, and every noise draw from its own
counter-based stream (:mod:`zoo.rng`), so its result does not depend on which other networks share the batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from . import kernels, rng
from .config import NetConfig
from .devices import resolve_device
from .errors import InvalidChoiceError
from .loss import element_weights, weighted_mse, weighted_mse_grad
from .model import PARAM_NAMES, ModelConfig, init_state_dict
from .task import CURVES, SCORINGS, TaskSpec, accuracy_reliability

_B, _N, _OUT = TaskSpec().batch_size, ModelConfig().n_units, ModelConfig().n_out  # 128 trials, 100 units, 2
#: bytes kept per network per time step of a trial, float32: the states R and tanh values Z (B x N each)
#: and ~8 (B x 2) readout-sized tensors (logits, outputs, errors, gradients, metric temporaries)
BYTES_PER_NET_STEP = 2 * _B * _N * 4 + 8 * _B * _OUT * 4
#: bytes per network independent of the trial length: per-step buffers (pre, g, h, ping-pong states, ...)
BYTES_PER_NET = 8 * _B * _N * 4


def training_bytes_per_net(n_steps: int) -> int:
    """The memory one network takes while training on trials of ``n_steps`` steps (float32, no slack)."""
    return BYTES_PER_NET_STEP * (n_steps + 1) + BYTES_PER_NET


@dataclass
class TrainResult:
    """Final weights (stacked, CPU) and per-epoch curves of the trained networks, in input order."""

    configs: list[NetConfig]
    weights: dict[str, torch.Tensor]  # name -> (K, ...) on CPU, in the training dtype
    curves: dict[str, list[np.ndarray]]  # name -> K arrays of length epochs_run[k]
    epochs_run: np.ndarray  # (K,)
    diverged: np.ndarray  # (K,) bool
    seconds: float = 0.0
    device: str = "cpu"
    extra: dict = field(default_factory=dict)
    #: with ``snapshot_epochs``: per network, ``{epoch: {name: tensor}}`` (weights after that many epochs)
    snapshots: list[dict[int, dict[str, torch.Tensor]]] | None = None

    def state_dict(self, i: int) -> dict[str, torch.Tensor]:
        return {name: w[i] for name, w in self.weights.items()}


def default_batch_size(device: torch.device, n_steps: int, fraction: float = 0.85) -> int:
    """Networks per batch: 32 on CPU; on CUDA as many as ``fraction`` of the free memory holds.

    The CUDA estimate counts the activations kept for the backward pass (:func:`training_bytes_per_net`), with
    10% slack for the allocator's fragmentation and cuBLAS workspaces
    (``benchmarks/bench_gpu.py`` measures the largest batch that really fits).
    """
    if device.type != "cuda":
        return 32
    free, _ = torch.cuda.mem_get_info(device)
    per_net = training_bytes_per_net(n_steps) * 1.1
    return max(1, int(fraction * free / per_net))


def train_networks(configs: Sequence[NetConfig], *, device: str | torch.device | None = "cpu",
                   batch_size: int | None = None, dtype: torch.dtype = torch.float32, tf32: bool = False,
                   init_weights: dict[str, torch.Tensor] | None = None,
                   progress: Callable[[int], None] | None = None,
                   snapshot_epochs: Sequence[int] | Sequence[Sequence[int]] | None = None,
                   scoring: str = SCORINGS[0]) -> TrainResult:
    """Train ``configs`` (any mix of families) and return their weights and curves.

    Networks are grouped by trial shape (``NetConfig.batch_key``) and trained ``batch_size`` at a time.
    ``init_weights`` (stacked, in the order of ``configs``) replaces the seed's initial weights, for
    fine-tuning. ``progress`` is called with the number of network-epochs done after every epoch.
    ``tf32`` allows TF32 matmuls on CUDA (off by default: it changes results slightly).
    ``snapshot_epochs`` (one list for all networks, or one per network) copies the weights after those many
    epochs (0: the initial weights) into ``TrainResult.snapshots``; it only reads the weights (same bits).
    Epochs a network does not reach (diverged, or beyond its ``epochs``) are not in its snapshots.
    ``scoring`` (:data:`zoo.task.SCORINGS`) is how the accuracy and reliability curves score the metric window;
    it changes those two curves only, never the weights.
    """
    if scoring not in SCORINGS:
        raise InvalidChoiceError("scoring", scoring, SCORINGS)
    configs = list(configs)
    dev = resolve_device(device)
    t0 = time.perf_counter()
    K = len(configs)
    out_w: dict[str, torch.Tensor | None] = dict.fromkeys(PARAM_NAMES)
    curves = {c: [None] * K for c in CURVES}
    epochs_run = np.zeros(K, dtype=np.int64)
    diverged = np.zeros(K, dtype=bool)
    snaps = _snapshot_sets(snapshot_epochs, K)
    snapshots = None if snaps is None else [{} for _ in range(K)]
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(configs):
        groups.setdefault(c.batch_key(), []).append(i)
    prev_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
    try:
        for idx in groups.values():
            bs = batch_size or default_batch_size(dev, configs[idx[0]].task().n_steps)
            for s in range(0, len(idx), bs):
                chunk = idx[s:s + bs]
                init = None if init_weights is None else {n: w[chunk] for n, w in init_weights.items()}
                want = None if snaps is None else [snaps[i] for i in chunk]
                w, cv, er, dv, sn = _train_batch([configs[i] for i in chunk], dev, dtype, init, progress, want,
                                                   scoring)
                if snapshots is not None:
                    for j, i in enumerate(chunk):
                        snapshots[i] = sn[j]
                for n in PARAM_NAMES:
                    if out_w[n] is None:
                        out_w[n] = torch.empty((K, *w[n].shape[1:]), dtype=w[n].dtype)
                    out_w[n][chunk] = w[n]
                for j, i in enumerate(chunk):
                    for c in CURVES:
                        curves[c][i] = cv[c][j]
                epochs_run[chunk], diverged[chunk] = er, dv
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev_tf32
    backend = kernels.backend_for(torch.empty(0, dtype=dtype, device=dev))
    return TrainResult(configs, out_w, curves, epochs_run, diverged, time.perf_counter() - t0, str(dev),
                       extra={"kernels": backend, "scoring": scoring}, snapshots=snapshots)


def _snapshot_sets(epochs, K: int) -> list[frozenset[int]] | None:
    """``snapshot_epochs`` as one set of epochs per network (None: no snapshots)."""
    if epochs is None:
        return None
    epochs = list(epochs)
    if all(isinstance(e, (int, np.integer)) for e in epochs):
        sets = [frozenset(int(e) for e in epochs)] * K
    else:
        if len(epochs) != K:
            raise InvalidChoiceError("snapshot_epochs", f"{len(epochs)} lists",
                                     hint=f"give one list of epochs for all networks, or one per network ({K})")
        sets = [frozenset(int(e) for e in s) for s in epochs]
    bad = sorted({e for s in sets for e in s if e < 0})
    if bad:
        raise InvalidChoiceError("snapshot epoch", bad[0], hint="epochs count SGD steps: 0 (initial weights) or more")
    return sets


class _Snapshots:
    """Copies of the weights of K networks at requested epochs (read-only: training is unchanged)."""

    def __init__(self, want: list[frozenset[int]]):
        self.at: dict[int, list[int]] = {}  # epoch -> chunk positions that want it
        for k, s in enumerate(want):
            for e in s:
                self.at.setdefault(e, []).append(k)
        self.taken: list[dict[int, dict[str, torch.Tensor]]] = [{} for _ in want]

    def take(self, epoch: int, b: NetworkBatch) -> None:
        ks = self.at.get(epoch)
        if not ks:
            return
        active = {int(p): j for j, p in enumerate(b.pos_cpu.tolist())}  # chunk position -> row of b.P
        rows = [(k, active[k]) for k in ks if k in active]
        if not rows:
            return
        idx = torch.tensor([j for _, j in rows], device=b.pos.device)
        copies = {n: p.index_select(0, idx).cpu() for n, p in b.P.items()}  # (k, ...) each
        for i, (k, _) in enumerate(rows):
            self.taken[k][epoch] = {n: c[i] for n, c in copies.items()}


class NetworkBatch:
    """State of K networks of one trial shape during training."""

    def __init__(self, configs: list[NetConfig], dev: torch.device, dtype: torch.dtype,
                 init: dict[str, torch.Tensor] | None):
        self.task, self.mc = configs[0].task(), configs[0].model_config()
        f = lambda vals: torch.tensor(vals, dtype=dtype, device=dev)  # noqa: E731
        states = [init_state_dict(c.seed, self.mc) for c in configs] if init is None else None
        self.P = {n: (torch.stack([s[n] for s in states]) if init is None else init[n].clone()).to(dev, dtype)
                  for n in PARAM_NAMES}
        self.buf = {n: torch.zeros_like(p) for n, p in self.P.items()}
        self.lr, self.wd, self.mom = f([c.lr for c in configs]), f([c.weight_decay for c in configs]), f(
            [c.momentum for c in configs])
        self.keys = rng.keys_tensor([c.seed for c in configs], dev)
        self.epochs = torch.tensor([c.epochs for c in configs], device=dev)
        self.diverge = f([c.diverge_loss if c.diverge_loss is not None else math.inf for c in configs])
        self.pos = torch.arange(len(configs), device=dev)  # position of each active net in the chunk
        self.pos_cpu = self.pos.cpu()
        self._tmp: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.pos.numel()

    def keep(self, mask: torch.Tensor) -> None:
        for d in (self.P, self.buf):
            for n in d:
                d[n] = d[n][mask]
        for a in ("lr", "wd", "mom", "keys", "epochs", "diverge", "pos"):
            setattr(self, a, getattr(self, a)[mask])
        self.pos_cpu = self.pos.cpu()
        self._tmp = {}

    def sgd_step(self, grads: dict[str, torch.Tensor], ok: torch.Tensor) -> None:
        """SGD with momentum and weight decay (torch.optim.SGD semantics), per-network lr; networks where
        ``ok`` is False are not updated. In place, with reused buffers (the same operations as
        ``buf = mom buf + (g + wd p); p -= lr buf``)."""
        if not self._tmp:
            self._tmp = {n: torch.empty_like(p) for n, p in self.P.items()}
        step = ok[:, None].to(self.lr.dtype) * self.lr[:, None]
        for n, p in self.P.items():
            shape = (-1,) + (1,) * (p.dim() - 1)
            d = torch.mul(p, self.wd.view(shape), out=self._tmp[n]).add_(grads[n])  # g + wd p
            self.buf[n].mul_(self.mom.view(shape)).add_(d)
            p.sub_(torch.mul(self.buf[n], step.view(shape), out=self._tmp[n]))


class Readout:
    """Loss, metrics and the gradient wrt the readout logits, for K networks of one trial shape."""

    def __init__(self, task, sigmoid: bool, dev: torch.device, dtype: torch.dtype):
        T, B = task.n_steps, task.batch_size
        self.task, self.sigmoid, self.shape = task, sigmoid, (T, B)
        self.Y = task.targets(dev, dtype).reshape(T * B, 2)  # (TB, 2)
        self.wloss, self.wgrad = element_weights(task, dev, dtype)  # (TB, 2) each
        self.buf: dict[str, torch.Tensor] = {}

    def __call__(self, L: torch.Tensor):
        """L: (K, T, B, 2) logits -> loss, accuracy, reliability (K,) and dL/dlogits (K, T, B, 2)."""
        K, (T, B) = L.shape[0], self.shape
        if not self.buf or self.buf["y"].shape[0] != K:
            # reused every epoch: fresh large tensors cost page faults, more than the arithmetic here
            self.buf = {n: torch.empty((K, T * B, 2), dtype=L.dtype, device=L.device) for n in ("y", "d", "g", "t")}
        Y_hat = L.view(K, T * B, 2)
        if self.sigmoid:
            Y_hat = torch.sigmoid(Y_hat, out=self.buf["y"])
        # THE LOSS (zoo/loss.py): mean over (step, trial, channel) of w_t (y_hat - y)^2
        value, diff = weighted_mse(Y_hat, self.Y, self.wloss, out=(self.buf["d"], self.buf["t"]))
        acc, rel = accuracy_reliability(Y_hat.view(K, T, B, 2), self.task)
        dlogit = weighted_mse_grad(diff, Y_hat, self.wgrad, self.sigmoid, out=(self.buf["g"], self.buf["t"]))
        return value, acc, rel, dlogit.view(K, T, B, 2)


def _train_batch(configs, dev, dtype, init, progress, want=None, scoring=SCORINGS[0]):
    b = NetworkBatch(configs, dev, dtype, init)
    snaps = _Snapshots(want) if want is not None else None
    if snaps is not None:
        snaps.take(0, b)
    task, mc = b.task, b.mc
    T, B, N, C = task.n_steps, task.batch_size, mc.n_units, task.cue_steps
    a = mc.alpha
    readout = Readout(replace(task, scoring=scoring), mc.readout == "sigmoid", dev, dtype)
    ch = task.correct_channel(dev)  # (B,) input channel active during the cue = correct output channel
    onehot = torch.nn.functional.one_hot(ch, 2).to(dtype)  # (B, 2)
    Kc, E = len(configs), int(b.epochs.max())
    hist = torch.full((Kc, E, len(CURVES)), float("nan"), dtype=torch.float32)  # on the CPU: E may be 30,000
    final = {n: torch.empty((Kc, *p.shape[1:]), dtype=dtype) for n, p in b.P.items()}
    epochs_run = np.zeros(Kc, dtype=np.int64)
    diverged = np.zeros(Kc, dtype=bool)
    u_cue = onehot  # (B, 2) input of each trial during the cue steps
    R = Z = None
    for e in range(E):
        K = len(b)
        if R is None or R.shape[0] != K:
            R = torch.empty((K, T + 1, B, N), dtype=dtype, device=dev)  # states r[0..T]
            Z = torch.empty((K, T, B, N), dtype=dtype, device=dev)  # tanh values (scratch of the backward pass)
            L = torch.empty((K, T, B, 2), dtype=dtype, device=dev)  # readout logits of r[0..T-1]
        P = b.P
        W_rec, W_out = P["W_rec.weight"], P["W_out.weight"]
        bias = P["W_in.bias"] + P["W_rec.bias"]  # (K, N)
        # (K, B, N): the drive of each trial's cue, from the two trial types' drives (K, 2, N) (a gather of whole
        # rows: ~20x cheaper than indexing W_in per trial, same values)
        drive_cue = (P["W_in.weight"].transpose(1, 2) + bias[:, None, :]).index_select(1, ch)
        # ---- forward
        kernels.forward_pass(W_rec, drive_cue, bias, C, W_out, P["W_out.bias"], b.keys, e, mc.noise_std, a,
                             mc.init_state_std, R, Z, L)
        loss, acc, rel, dlogit = readout(L)  # (K,) x 3, (K, T, B, 2)
        # ---- backward
        gr = kernels.backward_pass(W_rec, W_out, u_cue, C, a, R, Z, dlogit)
        g_Wrec = gr["W_rec"].to(dev)
        grads = {"W_in.weight": gr["W_in"].to(dev), "W_in.bias": gr["b"].to(dev), "W_rec.weight": g_Wrec,
                 "W_rec.bias": gr["b"].to(dev), "W_out.weight": gr["W_out"].to(dev),
                 "W_out.bias": dlogit.view(K, T * B, 2).sum(1)}
        gnorm = torch.linalg.vector_norm(g_Wrec, dim=(1, 2))
        hist[b.pos_cpu, e] = torch.stack((loss, acc, rel, gnorm), 1).float().cpu()
        # ---- SGD
        # a diverging network stops after this epoch's update, as the scripts save it (NaN is not divergence)
        ok = (loss <= b.diverge) | torch.isnan(loss)
        b.sgd_step(grads, torch.ones_like(ok))
        if snaps is not None:
            snaps.take(e + 1, b)  # the weights after e + 1 epochs
        if progress is not None:
            progress(K)
        done = (~ok) | (b.epochs <= e + 1)
        if bool(done.any()):
            pos = b.pos_cpu[done.cpu()].numpy()
            for n, p in P.items():
                final[n][pos] = p[done].cpu()
            epochs_run[pos] = e + 1
            diverged[pos] = (~ok[done]).cpu().numpy()
            b.keep(~done)
            if len(b) == 0:
                break
    hist_np = hist.cpu().numpy()
    curves = {c: [hist_np[k, : epochs_run[k], j].copy() for k in range(Kc)] for j, c in enumerate(CURVES)}
    return final, curves, epochs_run, diverged, (snaps.taken if snaps is not None else None)
