"""The paper's five experiment families and one family's sweep: :data:`FAMILIES`, the value checks of grid
fields, :func:`logspace`, :class:`EpochRule`, :class:`FamilyGrid` and its expansion into :class:`NetConfig`
lists (:func:`grid_configs` for several grids at once).

Where the grids come from (the preset files) is :mod:`zoo.preset_files`; a whole build's expansion with
overrides is :mod:`zoo.grids`, its cut into shards :mod:`zoo.sharding`.

Learning rates from a logspace rule are computed like ``numpy.logspace`` (exponents ``start + k * step``, the
last one exactly ``stop``), with ``10 ** e`` correctly rounded, so the values (and the network ids that hash
them) do not depend on the numpy version or the platform's ``pow``.
"""

from __future__ import annotations

import dataclasses
import decimal
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .config import NetConfig
from .errors import InvalidChoiceError, check_choice
from .task import DT_MS

FAMILIES: tuple[str, ...] = ("nopost", "nopost-narrow", "post", "longtau", "nomemory")
"""The paper's five experiment families, in the order of the paper's table."""

_DT = int(DT_MS)  # 5 ms: every duration must be a multiple of it
# NetConfig is a plain frozen dataclass without validation: configs may be built by copying field values.
_FAST_CONFIGS = (dataclasses.is_dataclass(NetConfig) and not hasattr(NetConfig, "__post_init__")
                 and not hasattr(NetConfig, "__slots__"))


# ---------------------------------------------------------------------------------------------------------
# value checks (shared by preset files and CLI-style overrides)


def is_number(x) -> bool:
    """True for a real number that is not a bool."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _check_lr(x, where: str = "") -> float:
    if not is_number(x) or not math.isfinite(float(x)) or float(x) <= 0:
        raise InvalidChoiceError("learning rate", x, hint=f"must be a finite number > 0{where}")
    return float(x)


def check_count(x, name: str, where: str = "") -> int:
    if not isinstance(x, numbers.Integral) or isinstance(x, bool) or int(x) < 1:
        raise InvalidChoiceError(name, x, hint=f"must be an integer >= 1{where}")
    return int(x)


def check_ms(x, name: str, *, positive: bool = False, rule: str = "", where: str = "") -> int:
    """A duration in ms that is a non-negative (or positive) multiple of dt = 5 ms, returned as an int."""
    ok = is_number(x) and math.isfinite(float(x)) and float(x) == int(x) and int(x) % _DT == 0
    ok = ok and (int(x) > 0 if positive else int(x) >= 0)
    if not ok:
        kind = "positive" if positive else "non-negative"
        hint = f"must be a {kind} multiple of dt = {_DT} ms (whole ms)"
        raise InvalidChoiceError(name, x, hint=hint + (f"; {rule}" if rule else "") + where)
    return int(x)


def as_list(x) -> list:
    """``x`` as a list: an iterable's items, or ``[x]`` for a scalar, a string or a mapping."""
    if isinstance(x, (str, bytes, Mapping)):
        return [x]
    if isinstance(x, Iterable):
        return list(x)
    return [x]


def _unique(values: tuple, name: str, where: str = "") -> tuple:
    if not values:
        raise InvalidChoiceError(name, list(values), hint=f"needs at least one value{where}")
    seen = set()
    for v in values:
        if v in seen:
            raise InvalidChoiceError(name, v, hint=f"listed twice{where}")
        seen.add(v)
    return values


def logspace(start: float, stop: float, num: int) -> tuple[float, ...]:
    """``numpy.logspace(start, stop, num)`` as Python floats: the exponents of ``numpy.linspace``
    (``start + k * (stop - start) / (num - 1)``, the last one exactly ``stop``) and ``10 ** e`` correctly
    rounded. numpy's and libm's ``pow`` are not correctly rounded and differ between builds and platforms by
    1 ulp for some exponents (numpy 2.4 does for 8 of the paper's 60 rates); the learning rate is part of a
    network's id, so it must not depend on them."""
    num = check_count(num, "logspace count")
    start, stop = float(start), float(stop)
    if num == 1:
        exps = [start]
    else:
        step = (stop - start) / (num - 1)
        exps = [k * step + start for k in range(num)]
        exps[-1] = stop
    return tuple(_pow10(e) for e in exps)


def _pow10(e: float) -> float:
    """10 ** e correctly rounded to float64 (decimal arithmetic with 60 digits, then one rounding)."""
    with decimal.localcontext() as ctx:
        ctx.prec = 60
        return float(decimal.Decimal(10) ** decimal.Decimal(e))


# ---------------------------------------------------------------------------------------------------------
# grids


@dataclass(frozen=True)
class Overrides:
    """What a build changes in its preset (``zoo build --family --lr --delay --seeds --epochs``), as one checked
    value: ``family`` keeps that family's blocks; ``lrs`` replace the learning rates; ``delays`` (ms) replace
    the delays, and for the nomemory family the response lengths; ``seeds`` N gives seeds 0..N-1 (a sequence
    gives those seeds); ``epochs`` N replaces the epoch rule. ``None`` keeps the preset's value; the values
    themselves are checked against each family's grid when applied (:meth:`FamilyGrid.apply`)."""

    family: str | None = None
    lrs: tuple[float, ...] | None = None
    delays: tuple[int, ...] | None = None
    seeds: int | tuple[int, ...] | None = None
    epochs: int | None = None

    def __post_init__(self):
        if self.family is not None:
            check_choice("family", self.family, FAMILIES)
        for name in ("lrs", "delays"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(as_list(getattr(self, name))))
        if self.seeds is not None:
            if isinstance(self.seeds, numbers.Integral) or not isinstance(self.seeds, Iterable):
                object.__setattr__(self, "seeds", check_count(self.seeds, "seeds", " (number of seeds)"))
            else:
                object.__setattr__(self, "seeds", tuple(self.seeds))
        if self.epochs is not None:
            object.__setattr__(self, "epochs", check_count(self.epochs, "epochs"))

    @property
    def changes_grid(self) -> bool:
        """True if the networks of a family change (anything but ``family``)."""
        return any(v is not None for v in (self.lrs, self.delays, self.seeds, self.epochs))

    def to_dict(self) -> dict:
        """The stored form (``plan.json``, ``zoo plan --json``): only what is set, sequences as lists."""
        d = {"family": self.family, "lrs": self.lrs or None, "delays": self.delays or None, "seeds": self.seeds,
             "epochs": self.epochs}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items() if v is not None}

    @classmethod
    def from_dict(cls, d: Mapping) -> Overrides:
        """The value of a stored form (:meth:`to_dict`)."""
        return cls(**{k: d.get(k) for k in ("family", "lrs", "delays", "seeds", "epochs")})


@dataclass(frozen=True)
class EpochRule:
    """The reference scripts' epoch count: ``int(max(min, scale / lr))`` = ``max(min, int(scale / lr))``
    (float64 division, truncated; e.g. ``int(numpy.maximum(1e3, 3e4 * 1e-3 / lr))``)."""

    min: int
    scale: float

    def __post_init__(self):
        object.__setattr__(self, "min", check_count(self.min, "epoch rule min"))
        if not is_number(self.scale) or not float(self.scale) > 0 or not math.isfinite(float(self.scale)):
            raise InvalidChoiceError("epoch rule scale", self.scale, hint="must be a finite number > 0")
        object.__setattr__(self, "scale", float(self.scale))

    def __call__(self, lr: float) -> int:
        return int(max(float(self.min), self.scale / float(lr)))

    def describe(self) -> str:
        return f"max({self.min}, int({self.scale:g}/lr))"


@dataclass(frozen=True)
class FamilyGrid:
    """One family's sweep: learning rates x delays (x response lengths) x seeds, plus its fixed fields.

    ``epochs`` None means "use ``epoch_rule``"; an int replaces the rule for every learning rate. For the
    nomemory family the swept axis is ``response_ms`` (``delays_ms`` is ``(0,)``).
    ``grid_step_ms`` is the spacing of the family's own delay (response) grid, for information: other
    multiples of 5 ms are accepted as explicit overrides.
    """

    family: str
    lrs: tuple[float, ...]
    delays_ms: tuple[int, ...]
    seeds: tuple[int, ...]
    epochs: int | None = None
    epoch_rule: EpochRule | None = None
    post_ms: int = 0
    tau_ms: float = 10.0
    response_ms: tuple[int, ...] = (50,)
    nomemory: bool = False
    diverge_loss: float | None = None
    grid_step_ms: int | None = field(default=None, compare=False)

    def __post_init__(self):
        check_choice("family", self.family, FAMILIES)
        where = f" (family {self.family})"
        s = object.__setattr__
        s(self, "lrs", _unique(tuple(_check_lr(x, where) for x in as_list(self.lrs)), "learning rate", where))
        rule = self._grid_rule()
        d_rule, r_rule = ("", rule) if self.nomemory else (rule, "")
        s(self, "delays_ms", _unique(tuple(check_ms(x, "delay_ms", rule=d_rule, where=where)
                                           for x in as_list(self.delays_ms)), "delay_ms", where))
        s(self, "response_ms", _unique(tuple(check_ms(x, "response_ms", positive=True, rule=r_rule, where=where)
                                             for x in as_list(self.response_ms)), "response_ms", where))
        seeds = tuple(self.seeds)
        for x in seeds:
            if not isinstance(x, numbers.Integral) or isinstance(x, bool) or x < 0:
                raise InvalidChoiceError("seed", x, hint=f"seeds must be integers >= 0{where}")
        s(self, "seeds", _unique(tuple(int(x) for x in seeds), "seed", where))
        if self.epochs is not None:
            s(self, "epochs", check_count(self.epochs, "epochs", where))
        elif self.epoch_rule is None:
            raise InvalidChoiceError("epochs", None, hint=f"give a number of epochs or an epoch rule{where}")
        s(self, "post_ms", check_ms(self.post_ms, "post_ms", where=where))
        if not is_number(self.tau_ms) or not float(self.tau_ms) > 0:
            raise InvalidChoiceError("tau_ms", self.tau_ms, hint=f"must be a number > 0{where}")
        s(self, "tau_ms", float(self.tau_ms))
        if not isinstance(self.nomemory, bool):
            raise InvalidChoiceError("nomemory", self.nomemory, [True, False])
        if self.diverge_loss is not None:
            if not is_number(self.diverge_loss) or not float(self.diverge_loss) > 0:
                raise InvalidChoiceError("diverge_loss", self.diverge_loss, hint=f"must be a number > 0{where}")
            s(self, "diverge_loss", float(self.diverge_loss))
        if self.nomemory and self.delays_ms != (0,):
            raise InvalidChoiceError("delay_ms", list(self.delays_ms), hint=(
                f"the nomemory family has no delay (delays_ms = [0]); its swept axis is response_ms{where}"))

    def _grid_rule(self) -> str:
        if self.grid_step_ms is None:
            return ""
        return (f"family {self.family}'s own grid has a {self.grid_step_ms} ms step; other multiples of "
                f"{_DT} ms are allowed as explicit overrides")

    @property
    def sweep(self) -> str:
        """The swept duration axis: ``"response_ms"`` for nomemory, else ``"delay_ms"``."""
        return "response_ms" if self.nomemory else "delay_ms"

    @property
    def n_networks(self) -> int:
        return len(self.lrs) * len(self.delays_ms) * len(self.response_ms) * len(self.seeds)

    def epochs_for(self, lr: float) -> int:
        """Number of epochs of a network trained with learning rate ``lr`` in this grid."""
        if self.epochs is not None:
            return self.epochs
        return self.epoch_rule(lr)

    def apply(self, o: Overrides) -> FamilyGrid:
        """A copy with the grid changes of ``o`` (:class:`Overrides`; its ``family`` is the caller's business)."""
        changes = {}
        if o.lrs is not None:
            changes["lrs"] = o.lrs
        if o.delays is not None:
            changes["response_ms" if self.nomemory else "delays_ms"] = o.delays
        if o.seeds is not None:
            changes["seeds"] = tuple(range(o.seeds)) if isinstance(o.seeds, int) else o.seeds
        if o.epochs is not None:
            changes["epochs"] = o.epochs
        return dataclasses.replace(self, **changes) if changes else self

    def configs(self) -> list[NetConfig]:
        """The grid's networks in order delay, response length, learning rate (as listed), seed."""
        lr_epochs = [(lr, self.epochs_for(lr)) for lr in self.lrs]
        template = NetConfig(family=self.family, seed=self.seeds[0], lr=self.lrs[0], delay_ms=self.delays_ms[0],
                             epochs=lr_epochs[0][1], post_ms=self.post_ms, tau_ms=self.tau_ms,
                             response_ms=self.response_ms[0], nomemory=self.nomemory, diverge_loss=self.diverge_loss)
        cells = [(d, r, lr, ep) for d in self.delays_ms for r in self.response_ms for lr, ep in lr_epochs]
        if not _FAST_CONFIGS:
            return [dataclasses.replace(template, delay_ms=d, response_ms=r, lr=lr, epochs=ep, seed=s)
                    for d, r, lr, ep in cells for s in self.seeds]
        # Fast path (the paper grid has 81,500 networks): copy the template's field values instead of
        # running the frozen dataclass __init__ per network; equal (==, hash, net_id) to NetConfig(...).
        base = dict(template.__dict__)
        new = object.__new__
        out = []
        for d, r, lr, ep in cells:
            base.update(delay_ms=d, response_ms=r, lr=lr, epochs=ep)
            for s in self.seeds:
                c = new(NetConfig)
                fields_ = c.__dict__
                fields_.update(base)
                fields_["seed"] = s
                out.append(c)
        return out


def grid_configs(grids: Sequence[FamilyGrid], *, dedupe: bool = False) -> list[NetConfig]:
    """The networks of several family grids, grid after grid (each in :meth:`FamilyGrid.configs` order).

    Grids of different families never share a network; blocks of one family may. ``dedupe`` keeps the first
    of the networks that several grids then share (the grid is the set of networks: overrides can make
    blocks overlap); otherwise such an overlap raises :class:`InvalidChoiceError`."""
    configs: list[NetConfig] = []
    for g in grids:
        configs.extend(g.configs())
    if len({g.family for g in grids}) < len(grids):  # each grid alone has no duplicates; blocks may overlap
        if dedupe:
            configs = list(dict.fromkeys(configs))
        else:
            check_no_duplicates(configs)
    return configs


def check_no_duplicates(configs: list[NetConfig]):
    if len(set(configs)) != len(configs):
        seen = set()
        for c in configs:
            if c in seen:
                raise InvalidChoiceError("network", c.net_id, hint="the grid lists the same network twice "
                                         "(two [[family]] blocks overlap?)")
            seen.add(c)

