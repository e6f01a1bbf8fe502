"""The reference outcome labels: no_learning, unstable, limit_cycle, slow_point (label version "2").

From the per-epoch accuracy (acc) and reliability (rel) curves (epochs counted from 0):

1. e0 = the first epoch with acc > 0.8 and rel > 0.8 (``first_learned_epoch``, -1 if none).
   stable = True if there is no e0; otherwise, over epochs >= e0,
   ``(#{acc < 0.6} + #{rel < 0.6}) / (#{acc > 0.6} + #{rel > 0.6}) < 0.1`` (values equal to 0.6 count in
   neither; a ratio of exactly 0.1 is unstable).
2. learned = mean acc > 0.8 and mean rel > 0.8 over the last ``tail_length(n) = ceil(n / 10)`` epochs, and
   stable. ``ceil`` is what the reference's ``acc[int(0.9 * n):]`` selects for every n (``int(0.9 * n)`` is
   exactly ``floor(9n / 10)`` in float64), and it keeps at least one epoch for short curves (n < 10).
3. Not learned: "no_learning" if stable, else "unstable".
   The nomemory control family is labelled as its own script labels it: learned = rule 2's final performance
   alone (no stability clause), and a network that did not learn is "no_learning" (the script has classes 0
   and 1 only); ``stable`` is still recorded. Label version "1" (before 0.2) applied rules 1-3 to it too.
4. Learned: the mechanism from :func:`psd_ratio` of trial 0's rates on a 9x extended trial (noise on, random
   initial state, drawn from the network's stream at ``rng.ANALYSIS_EPOCH``, so labels are deterministic):
   ratio < 0.5 -> "limit_cycle", otherwise "slow_point".

Deviations from the reference scripts, all made to remove arbitrariness, none to change the rule:
- PCA is an exact float64 SVD (``np.linalg.svd``) instead of ``torch.pca_lowrank`` (randomised), and each
  component's sign is fixed (its loading of largest absolute value is made positive). The index depends on
  the relative sign of the two components (flipping one changes the correlation matrix), so the reference's
  arbitrary signs made it partly random; this convention makes it a deterministic function of the rates.
- A time point whose 2 projections are equal has no defined correlation: its row and column of C are 0
  (the reference got NaN there, which turned the whole ratio into NaN and the label into slow_point).
- A ratio that is NaN (non-finite rates, or C identically 0) is classified as slow_point, as ``nan < 0.5``
  was in the reference.

The earlier criterion of the scripts (RMS of the output on a 5x extended trial) is :func:`rms_output_criterion`;
it is not stored by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from . import rng
from .model import PARAM_NAMES, ModelConfig
from .simulate import extended_inputs, nominal_steps, simulate_stacked
from .task import TaskSpec

LABEL_VERSION = "2"
OUTCOMES = ("no_learning", "unstable", "limit_cycle", "slow_point")
MECHANISMS = ("limit_cycle", "slow_point")
OUTCOME_DISPLAY_ORDER = ("slow_point", "limit_cycle", "no_learning", "unstable")  # solutions first, as the figures
#: the mechanisms in the figures' order
MECHANISM_DISPLAY_ORDER = tuple(o for o in OUTCOME_DISPLAY_ORDER if o in MECHANISMS)

LEARNED_THRESHOLD = 0.8  # acc and rel must exceed this (first learned epoch, final performance)
COLLAPSE_THRESHOLD = 0.6  # epochs below / above this are counted for stability
UNSTABLE_RATIO = 0.1  # stable iff (#below / #above) < this
TAIL_FRACTION = 0.1  # final performance: mean over the last 10% of epochs
PSD_RATIO_THRESHOLD = 0.5  # psd_ratio < this -> limit_cycle
PSD_RADIUS = 3  # radius (inclusive) of the central disc of the 2-D spectrum
EXTENSION_FACTOR = 9  # labels simulate a trial 9x the nominal length
RMS_FACTOR, RMS_THRESHOLD = 5, 0.1  # the earlier criterion


def _curves(acc, rel) -> tuple[np.ndarray, np.ndarray]:
    acc = np.asarray(acc, dtype=np.float64)
    rel = np.asarray(rel, dtype=np.float64)
    if acc.ndim != 1 or rel.ndim != 1:
        raise ValueError(f"curves must be 1-D, got shapes {acc.shape} and {rel.shape}")
    if acc.shape != rel.shape:
        raise ValueError(f"accuracy and reliability curves differ in length: {acc.shape[0]} != {rel.shape[0]}")
    return acc, rel


def tail_length(n_epochs: int) -> int:
    """Number of final epochs averaged for the final performance: ceil(n / 10) (0 for an empty curve)."""
    return n_epochs - (9 * n_epochs) // 10


def first_learned_epoch(acc, rel) -> int:
    """First epoch (0-based) with acc > 0.8 and rel > 0.8; -1 if there is none."""
    acc, rel = _curves(acc, rel)
    idx = np.flatnonzero((acc > LEARNED_THRESHOLD) & (rel > LEARNED_THRESHOLD))
    return int(idx[0]) if idx.size else -1


def is_stable(acc, rel) -> bool:
    """True if never learned, else (#{<0.6} / #{>0.6}) over acc and rel from the first learned epoch < 0.1."""
    acc, rel = _curves(acc, rel)
    e0 = first_learned_epoch(acc, rel)
    if e0 < 0:
        return True
    a, r = acc[e0:], rel[e0:]
    below = int(np.sum(a < COLLAPSE_THRESHOLD)) + int(np.sum(r < COLLAPSE_THRESHOLD))
    above = int(np.sum(a > COLLAPSE_THRESHOLD)) + int(np.sum(r > COLLAPSE_THRESHOLD))  # >= 2 (epoch e0)
    return below / above < UNSTABLE_RATIO


def final_performance_ok(acc, rel) -> bool:
    """Mean acc > 0.8 and mean rel > 0.8 over the last ``tail_length(n)`` epochs (False for empty curves)."""
    acc, rel = _curves(acc, rel)
    k = tail_length(acc.shape[0])
    if k == 0:
        return False
    return bool(acc[-k:].mean() > LEARNED_THRESHOLD and rel[-k:].mean() > LEARNED_THRESHOLD)


def is_learned(acc, rel) -> bool:
    """The ``learned`` rule: final performance above 0.8 (mean over the last ceil(n/10) epochs) and stable."""
    return final_performance_ok(acc, rel) and is_stable(acc, rel)


def _pca2(X: np.ndarray) -> np.ndarray:
    """(N, 2) top-2 principal axes of X (L, N): centred, exact float64 SVD, each axis signed so that its
    loading of largest absolute value is positive (the reference's randomised PCA had arbitrary signs).

    The SVD is taken of the triangular factor R of ``Xc = Q R`` (same right singular vectors, faster)."""
    Xc = X - X.mean(axis=0, keepdims=True)
    R = np.linalg.qr(Xc, mode="r") if Xc.shape[0] > Xc.shape[1] else Xc
    _, _, Vt = np.linalg.svd(R, full_matrices=False)
    V = Vt[:2].T.copy()  # (N, 2)
    for c in range(V.shape[1]):
        if V[np.argmax(np.abs(V[:, c])), c] < 0:
            V[:, c] = -V[:, c]
    return V


def row_correlation(Y: np.ndarray) -> np.ndarray:
    """(L, L) correlation between the rows of Y (L, M), as ``np.corrcoef(Y)`` (clipped to [-1, 1]), except
    that a row of zero variance has correlation 0 with every row, itself included (np.corrcoef gives NaN)."""
    Yc = Y - Y.mean(axis=1, keepdims=True)
    norm = np.sqrt(np.einsum("ij,ij->i", Yc, Yc))  # (L,)
    Z = np.zeros_like(Yc)
    ok = norm > 0
    Z[ok] = Yc[ok] / norm[ok, None]
    return np.clip(Z @ Z.T, -1.0, 1.0)


def disc_power_fraction(C: np.ndarray, radius: int = PSD_RADIUS) -> float:
    """sum of F over the disc ``(i - L//2)^2 + (j - L//2)^2 <= radius^2`` / sum of F, with
    F = |fftshift(fft2(C))|^2 for a real square C (L, L); NaN if F is all 0.

    Computed from ``rfft2`` (F is Hermitian-symmetric for real C: F(-kx, -ky) = F(kx, ky)), which gives the
    same numbers as the literal formula about 3x faster; the tests check it against the literal formula."""
    L = C.shape[0]
    P = np.abs(np.fft.rfft2(C)) ** 2  # (L, L//2 + 1): F at frequencies (kx mod L, ky), ky = 0..L//2
    w = np.full(P.shape[1], 2.0)
    w[0] = 1.0
    if L % 2 == 0:
        w[-1] = 1.0  # the Nyquist column has no mirror image
    total = float(P.sum(axis=0) @ w)
    if not total > 0:
        return float("nan")
    lo, hi = -(L // 2), L - L // 2 - 1  # frequencies held by fftshift's index range
    inside = 0.0
    for kx in range(max(lo, -radius), min(hi, radius) + 1):
        for ky in range(max(lo, -radius), min(hi, radius) + 1):
            if kx * kx + ky * ky <= radius * radius:
                inside += P[kx % L, ky] if ky >= 0 else P[(-kx) % L, -ky]
    return float(inside / total)


def psd_ratio(rates: np.ndarray) -> float:
    """The reference spectral index of a trajectory ``rates`` (L, N): the fraction of the power of the 2-D
    spectrum of the time-by-time correlation matrix that lies within radius 3 of zero frequency.

    Y = X V (uncentred projection on the top-2 centred principal axes, :func:`_pca2`; L x 2);
    C = :func:`row_correlation` (Y) (L x L; rows of zero variance give 0); F = |fftshift(fft2(C))|^2;
    ratio = sum of F over the disc (i - L//2)^2 + (j - L//2)^2 <= 9, divided by sum of F
    (:func:`disc_power_fraction`). NaN if the rates are not finite or F is all 0.
    Low values mean a fast recurring structure (limit cycle), high values a slowly varying state (slow point).
    """
    X = np.asarray(rates, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 2 or X.shape[1] < 2:
        raise ValueError(f"rates must be (L, N) with L, N >= 2, got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        return float("nan")
    Y = X @ _pca2(X)  # (L, 2)
    return disc_power_fraction(row_correlation(Y))


def classify_psd_ratio(ratio: float) -> str:
    """``"limit_cycle"`` if ratio < 0.5, else ``"slow_point"`` (NaN -> slow_point, as in the reference)."""
    return "limit_cycle" if ratio < PSD_RATIO_THRESHOLD else "slow_point"


@dataclass(frozen=True)
class Label:
    """One network's outcome. ``outcome`` is None only for a learned network whose mechanism is not yet known
    (the curve-only result of :func:`label_curves` without a ratio)."""

    outcome: str | None
    mechanism: str | None  # limit_cycle / slow_point if learned, else None
    learned: bool
    stable: bool
    psd_ratio: float  # NaN if not learned
    first_learned_epoch: int  # -1 if never
    label_version: str = LABEL_VERSION

    def to_dict(self) -> dict:
        return asdict(self)

    def with_psd_ratio(self, ratio: float) -> Label:
        """The label completed with the mechanism of a learned network."""
        if not self.learned:
            raise ValueError("only learned networks have a mechanism")
        mech = classify_psd_ratio(ratio)
        return replace(self, outcome=mech, mechanism=mech, psd_ratio=float(ratio))


def label_curves(acc, rel, psd_ratio: float | None = None, *, nomemory: bool = False) -> Label:
    """Label from the curves alone (rules 1-3; ``nomemory``: the control family's rule, final performance
    alone). A learned network gets its mechanism from ``psd_ratio`` if given, otherwise outcome = mechanism =
    None (to fill with :meth:`Label.with_psd_ratio`)."""
    acc, rel = _curves(acc, rel)
    stable = is_stable(acc, rel)
    learned = (nomemory or stable) and final_performance_ok(acc, rel)
    label = Label(outcome=None if learned else ("no_learning" if stable or nomemory else "unstable"), mechanism=None,
                  learned=learned, stable=stable, psd_ratio=float("nan"),
                  first_learned_epoch=first_learned_epoch(acc, rel))
    if learned and psd_ratio is not None:
        label = label.with_psd_ratio(psd_ratio)
    return label


def _as_state(state: dict, device=None) -> dict[str, torch.Tensor]:
    """The 6 stacked parameters as tensors (numpy arrays accepted), on ``device`` if given."""
    return {k: torch.as_tensor(state[k], device=device) for k in PARAM_NAMES}


def _select(state: dict[str, torch.Tensor], idx: Sequence[int]) -> dict[str, torch.Tensor]:
    index = torch.as_tensor(list(idx), dtype=torch.long, device=state["W_rec.weight"].device)
    return {k: v.index_select(0, index) for k, v in state.items()}


def trajectory_rates(state: dict, cfg: ModelConfig, task: TaskSpec, seeds: Sequence[int], *,
                     factor: int = EXTENSION_FACTOR, epoch: int = rng.ANALYSIS_EPOCH, device=None) -> torch.Tensor:
    """(K, factor * T_nom, N) trial 0's rates after each update, on the extended trial (noise on, random
    initial state from each network's stream). Only trial 0 is simulated: its draws are the same as in the
    full 128-trial batch, so this is exactly the reference's ``fr[0]``. Runs on ``device`` (default: the
    device of ``state``)."""
    state = _as_state(state, device)
    inputs = extended_inputs(task, factor, device=state["W_rec.weight"].device)[:, :1]  # (L, 1, 2)
    _, rates = simulate_stacked(state, cfg, inputs, seeds=seeds, noise=True, random_init=True, epoch=epoch)
    return rates[:, 1:, 0, :]  # (K, L, N)


def label_networks(state: dict, cfg: ModelConfig, task: TaskSpec, seeds: Sequence[int],
                   curves_acc: Sequence[np.ndarray], curves_rel: Sequence[np.ndarray], *,
                   chunk_size: int = 256, epoch: int = rng.ANALYSIS_EPOCH, device=None) -> list[Label]:
    """Labels of K stacked networks (``state`` as in :func:`zoo.simulate.simulate_stacked`, all sharing
    ``cfg`` and ``task``): curve rules first, then one batched simulation (in chunks of ``chunk_size``
    networks) of the learned ones on the 9x extended trial, and :func:`psd_ratio` of trial 0's rates.
    The simulation runs on ``device`` (default: the device of ``state``); the index is computed on the CPU."""
    state = _as_state(state, device)
    K = state["W_rec.weight"].shape[0]
    seeds = [int(s) for s in seeds]
    if not (len(seeds) == len(curves_acc) == len(curves_rel) == K):
        raise ValueError(f"{K} networks but {len(seeds)} seeds, {len(curves_acc)} acc and "
                         f"{len(curves_rel)} rel curves")
    labels = [label_curves(a, r, nomemory=task.nomemory) for a, r in zip(curves_acc, curves_rel, strict=True)]
    learned = [k for k, lab in enumerate(labels) if lab.learned]
    step = max(1, int(chunk_size))
    for lo in range(0, len(learned), step):
        idx = learned[lo:lo + step]
        rates = trajectory_rates(_select(state, idx), cfg, task, [seeds[k] for k in idx], epoch=epoch)
        X = rates.detach().to("cpu", torch.float64).numpy()  # (k, L, N)
        for j, k in enumerate(idx):
            labels[k] = labels[k].with_psd_ratio(psd_ratio(X[j]))
    return labels


def output_rms(outputs: torch.Tensor, window: int) -> torch.Tensor:
    """RMS over the last ``window`` steps of the outputs' deviation from their mean over that window.
    ``outputs`` (..., T, B, n_out) -> (...): mean over time, trials and channels, as in the scripts."""
    o = outputs[..., -window:, :, :]
    dev = o - o.mean(dim=-3, keepdim=True)
    return torch.sqrt((dev**2).mean(dim=(-3, -2, -1)))


def rms_output_criterion(state: dict, cfg: ModelConfig, task: TaskSpec, seeds: Sequence[int], *,
                         factor: int = RMS_FACTOR, threshold: float = RMS_THRESHOLD, chunk_size: int = 16,
                         epoch: int = rng.ANALYSIS_EPOCH, device=None) -> tuple[np.ndarray, np.ndarray]:
    """The scripts' earlier mechanism criterion (not used for the stored labels): run the full batch on a
    trial ``factor`` (5) times the nominal length (noise on, random initial state) and take the RMS of the
    output's fluctuation over the last T_nom steps (:func:`output_rms`). Returns ``rms`` (K,) and
    ``is_limit_cycle = rms > threshold`` (K,)."""
    state = _as_state(state, device)
    K = state["W_rec.weight"].shape[0]
    seeds = [int(s) for s in seeds]
    if len(seeds) != K:
        raise ValueError(f"got {len(seeds)} seeds for {K} networks")
    inputs = extended_inputs(task, factor, device=state["W_rec.weight"].device)  # (L, B, 2)
    window = nominal_steps(task)
    rms = np.empty(K, dtype=np.float64)
    step = max(1, int(chunk_size))
    for lo in range(0, K, step):
        idx = list(range(lo, min(K, lo + step)))
        out, _ = simulate_stacked(_select(state, idx), cfg, inputs, seeds=[seeds[k] for k in idx], noise=True,
                                  random_init=True, epoch=epoch, record_rates=False)
        rms[lo:lo + len(idx)] = output_rms(out, window).to("cpu", torch.float64).numpy()
    return rms, rms > threshold

