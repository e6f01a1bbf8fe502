"""Closed-form theory of the paper (critical learning rate vs delay) and ms <-> step conversions.

Both the delay T and the response length T_r are in time steps (dt = 5 ms):

- slow-point (ghost) mechanism: ``eta_c = (pi^4 / 4) T_r T^-5``
- limit-cycle mechanism:        ``eta_c = T_r T^-3 / 4``

so with T_r fixed the critical delay scales as ``T_c ~ eta^(-1/beta)`` with beta = 5 (slow point) and
beta = 3 (limit cycle); with T_r = T the exponents are 4 and 2 (the paper's range beta_SP in [4, 5],
beta_LC in [2, 3]). For T_r = T the paper states its own closed forms, ``(3 pi^4 / 32) T^-4`` and
``T^-2 / 24`` (:func:`critical_lr_tr_equals_t`), 3/8 and 1/6 of what ``response_steps=T`` substitutes into the
formulas above. Below both curves both mechanisms can appear, between them only limit cycles, above the
limit-cycle curve no learning. The constants come from a reduced model: compare exponents with a zoo, not
absolute positions.
"""

from __future__ import annotations

import math

import numpy as np

from ..labels import MECHANISMS
from ..task import REACTION_STEPS

RESPONSE_STEPS = REACTION_STEPS  #: T_r, the reaction window (10 steps = 50 ms)
#: exponent beta of eta_c ~ T^-beta for a fixed response length
THEORY_BETA = {"slow_point": 5.0, "limit_cycle": 3.0}
#: the paper's range of beta: T_r = T gives the lower end, T_r fixed the upper
THEORY_BETA_RANGE = {"slow_point": (4.0, 5.0), "limit_cycle": (2.0, 3.0)}
_PREFACTOR = {"slow_point": math.pi**4 / 4.0, "limit_cycle": 0.25}
#: the paper's closed forms for T_r = T: eta_c = prefactor * T^-(beta - 1)
_PREFACTOR_TR_EQUALS_T = {"slow_point": 3 * math.pi**4 / 32.0, "limit_cycle": 1.0 / 24.0}


def _check(mechanism: str) -> None:
    if mechanism not in _PREFACTOR:
        raise ValueError(f"mechanism must be one of {MECHANISMS}, got {mechanism!r}")


def critical_lr(delay_steps, mechanism: str, response_steps: float = RESPONSE_STEPS):
    """eta_c(T): the largest learning rate at which ``mechanism`` can hold a memory over T steps.
    ``delay_steps`` may be an array; T <= 0 gives +inf."""
    _check(mechanism)
    T = np.asarray(delay_steps, dtype=float)
    with np.errstate(divide="ignore"):
        out = np.where(T > 0, _PREFACTOR[mechanism] * response_steps * np.abs(T) ** -THEORY_BETA[mechanism],
                       np.inf)
    return out if out.ndim else float(out)


def critical_lr_tr_equals_t(delay_steps, mechanism: str):
    """The paper's closed forms for a response as long as the delay (T_r = T): ``(3 pi^4 / 32) T^-4`` (slow
    point) and ``T^-2 / 24`` (limit cycle). T <= 0 gives +inf."""
    _check(mechanism)
    T = np.asarray(delay_steps, dtype=float)
    with np.errstate(divide="ignore"):
        out = np.where(T > 0, _PREFACTOR_TR_EQUALS_T[mechanism] * np.abs(T) ** -(THEORY_BETA[mechanism] - 1.0),
                       np.inf)
    return out if out.ndim else float(out)


def critical_delay_steps(lr, mechanism: str, response_steps: float = RESPONSE_STEPS):
    """T_c(eta), the inverse of :func:`critical_lr`: the longest delay (steps) learnable at rate ``lr``."""
    _check(mechanism)
    eta = np.asarray(lr, dtype=float)
    out = (_PREFACTOR[mechanism] * response_steps / eta) ** (1.0 / THEORY_BETA[mechanism])
    return out if out.ndim else float(out)


def eta_c_slow_point(T, T_r: float = RESPONSE_STEPS):
    """``(pi^4 / 4) T_r T^-5`` (T, T_r in steps)."""
    return critical_lr(T, "slow_point", T_r)


def eta_c_limit_cycle(T, T_r: float = RESPONSE_STEPS):
    """``T_r T^-3 / 4`` (T, T_r in steps)."""
    return critical_lr(T, "limit_cycle", T_r)
