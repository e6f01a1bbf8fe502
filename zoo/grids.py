"""Experiment grids: the paper's five families, named presets, their expansion into :class:`NetConfig` lists,
and the deterministic cut of a build into shards.

Presets are TOML files shipped as the package data ``zoo.presets`` (the folder ``build/presets`` of the
repository). A preset has a ``description``, a ``shard_size`` (networks per build shard) and one or more
``[[family]]`` blocks::

    [[family]]
    family = "nopost"                                # one of FAMILIES
    lrs = { logspace = [-1, -3, 15] }                # or { logspace = [a, b, n], take = k }, or [0.1, 0.03]
    delays_ms = { first = 0, last = 400, step = 20 } # inclusive range, or a list, or one number
    seeds = 100                                      # seeds 0..99 (or an explicit list)
    epochs = { min = 1000, scale = 30 }              # max(min, int(scale / lr)); or a fixed number

The file named after a family (``nopost.toml``, ...) is that family's definition, exactly as in the paper's
reference scripts; it also sets the fixed fields ``post_ms``, ``tau_ms``, ``response_ms``, ``nomemory`` and
``diverge_loss``. Every other block names a family and overrides only ``lrs``, ``delays_ms``,
``response_ms`` (nomemory only), ``seeds`` and ``epochs``; the rest comes from the definition.

Learning rates from a logspace rule are computed like ``numpy.logspace`` (exponents ``start + k * step``, the
last one exactly ``stop``), with ``10 ** e`` correctly rounded, so the values (and the network ids that hash
them) do not depend on the numpy version or the platform's ``pow``.
"""

from __future__ import annotations

import dataclasses
import decimal
import math
import numbers
import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path

from .config import NetConfig
from .errors import InvalidChoiceError, check_choice
from .task import DT_MS

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10 needs the tomli backport
    import tomli as tomllib

FAMILIES: tuple[str, ...] = ("nopost", "nopost-narrow", "post", "longtau", "nomemory")
"""The paper's five experiment families, in the order of the paper's table."""

_DT = int(DT_MS)  # 5 ms: every duration must be a multiple of it
_OVERRIDE_KEYS = ("lrs", "delays_ms", "response_ms", "seeds", "epochs")
_DEFINITION_KEYS = ("lrs", "delays_ms", "seeds", "epochs", "post_ms", "tau_ms", "response_ms", "nomemory",
                    "diverge_loss")
_PRESET_KEYS = ("description", "shard_size", "family")
# NetConfig is a plain frozen dataclass without validation: configs may be built by copying field values.
_FAST_CONFIGS = (dataclasses.is_dataclass(NetConfig) and not hasattr(NetConfig, "__post_init__")
                 and not hasattr(NetConfig, "__slots__"))


# ---------------------------------------------------------------------------------------------------------
# value checks (shared by preset files and CLI-style overrides)


def _is_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _check_lr(x, where: str = "") -> float:
    if not _is_number(x) or not math.isfinite(float(x)) or float(x) <= 0:
        raise InvalidChoiceError("learning rate", x, hint=f"must be a finite number > 0{where}")
    return float(x)


def _check_count(x, name: str, where: str = "") -> int:
    if not isinstance(x, numbers.Integral) or isinstance(x, bool) or int(x) < 1:
        raise InvalidChoiceError(name, x, hint=f"must be an integer >= 1{where}")
    return int(x)


def _check_ms(x, name: str, *, positive: bool = False, rule: str = "", where: str = "") -> int:
    """A duration in ms that is a non-negative (or positive) multiple of dt = 5 ms, returned as an int."""
    ok = _is_number(x) and math.isfinite(float(x)) and float(x) == int(x) and int(x) % _DT == 0
    ok = ok and (int(x) > 0 if positive else int(x) >= 0)
    if not ok:
        kind = "positive" if positive else "non-negative"
        hint = f"must be a {kind} multiple of dt = {_DT} ms (whole ms)"
        raise InvalidChoiceError(name, x, hint=hint + (f"; {rule}" if rule else "") + where)
    return int(x)


def _as_list(x) -> list:
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
    num = _check_count(num, "logspace count")
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
class EpochRule:
    """The reference scripts' epoch count: ``int(max(min, scale / lr))`` = ``max(min, int(scale / lr))``
    (float64 division, truncated; e.g. ``int(numpy.maximum(1e3, 3e4 * 1e-3 / lr))``)."""

    min: int
    scale: float

    def __post_init__(self):
        object.__setattr__(self, "min", _check_count(self.min, "epoch rule min"))
        if not _is_number(self.scale) or not float(self.scale) > 0 or not math.isfinite(float(self.scale)):
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
        s(self, "lrs", _unique(tuple(_check_lr(x, where) for x in _as_list(self.lrs)), "learning rate", where))
        rule = self._grid_rule()
        d_rule, r_rule = ("", rule) if self.nomemory else (rule, "")
        s(self, "delays_ms", _unique(tuple(_check_ms(x, "delay_ms", rule=d_rule, where=where)
                                           for x in _as_list(self.delays_ms)), "delay_ms", where))
        s(self, "response_ms", _unique(tuple(_check_ms(x, "response_ms", positive=True, rule=r_rule, where=where)
                                             for x in _as_list(self.response_ms)), "response_ms", where))
        seeds = tuple(self.seeds)
        for x in seeds:
            if not isinstance(x, numbers.Integral) or isinstance(x, bool) or x < 0:
                raise InvalidChoiceError("seed", x, hint=f"seeds must be integers >= 0{where}")
        s(self, "seeds", _unique(tuple(int(x) for x in seeds), "seed", where))
        if self.epochs is not None:
            s(self, "epochs", _check_count(self.epochs, "epochs", where))
        elif self.epoch_rule is None:
            raise InvalidChoiceError("epochs", None, hint=f"give a number of epochs or an epoch rule{where}")
        s(self, "post_ms", _check_ms(self.post_ms, "post_ms", where=where))
        if not _is_number(self.tau_ms) or not float(self.tau_ms) > 0:
            raise InvalidChoiceError("tau_ms", self.tau_ms, hint=f"must be a number > 0{where}")
        s(self, "tau_ms", float(self.tau_ms))
        if not isinstance(self.nomemory, bool):
            raise InvalidChoiceError("nomemory", self.nomemory, [True, False])
        if self.diverge_loss is not None:
            if not _is_number(self.diverge_loss) or not float(self.diverge_loss) > 0:
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

    def override(self, *, lrs=None, delays=None, seeds=None, epochs=None) -> FamilyGrid:
        """A copy with CLI-style overrides: ``lrs`` (numbers) replace the learning rates, ``delays`` (ms)
        replace the delays (the response lengths for nomemory), ``seeds`` N gives seeds 0..N-1 (a sequence
        gives those seeds), ``epochs`` N replaces the epoch rule. ``None`` keeps the family's value."""
        changes = {}
        if lrs is not None:
            changes["lrs"] = tuple(_as_list(lrs))
        if delays is not None:
            changes["response_ms" if self.nomemory else "delays_ms"] = tuple(_as_list(delays))
        if seeds is not None:
            if isinstance(seeds, numbers.Integral) or not isinstance(seeds, Iterable):
                seeds = range(_check_count(seeds, "seeds", " (number of seeds)"))
            changes["seeds"] = tuple(seeds)
        if epochs is not None:
            changes["epochs"] = _check_count(epochs, "epochs")
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


@dataclass(frozen=True)
class Preset:
    """A named grid: one or more family grids (networks) and the shard size of its build."""

    name: str
    description: str
    shard_size: int
    families: tuple[FamilyGrid, ...]

    @property
    def n_networks(self) -> int:
        return sum(g.n_networks for g in self.families)

    def configs(self) -> list[NetConfig]:
        return make_grid(self)


# ---------------------------------------------------------------------------------------------------------
# preset files


def _presets_root():
    """The folder of the preset files: the installed package ``zoo.presets``, else the source tree."""
    try:
        root = resources.files("zoo.presets")
        if root.joinpath("paper.toml").is_file():
            return root
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parent.parent / "build" / "presets"


@lru_cache(maxsize=1)
def _raw_presets() -> dict[str, dict]:
    out = {}
    for entry in sorted(_presets_root().iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".toml") or not entry.is_file():
            continue
        name = entry.name[: -len(".toml")]
        try:
            out[name] = tomllib.loads(entry.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise InvalidChoiceError("preset file", entry.name, hint=f"not valid TOML: {e}") from e
    return out


def _preset_names() -> tuple[str, ...]:
    """The family presets in FAMILIES order, then the others sorted by name (read on first use, not at import)."""
    return tuple(sorted(_raw_presets(), key=lambda n: (n not in FAMILIES, FAMILIES.index(n) if n in FAMILIES else 0,
                                                      n)))


def __getattr__(name: str):
    # PRESETS: the names of the shipped presets (one TOML file each), computed when first asked for, so that
    # importing this module reads no file
    if name == "PRESETS":
        return _preset_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def list_presets() -> list[str]:
    """Names of the available presets (the family presets, ``paper``, ``sample``, ``smoke``, ...)."""
    return list(_preset_names())


def _parse_lrs(v, where: str) -> tuple:
    if isinstance(v, Mapping):
        _check_keys(v, ("logspace", "take"), "learning-rate rule", where)
        spec = v.get("logspace")
        if not isinstance(spec, list) or len(spec) != 3 or not all(_is_number(x) for x in spec):
            raise InvalidChoiceError("learning-rate rule", dict(v),
                                     hint=f"expected {{logspace = [start, stop, num]}} (exponents of 10){where}")
        values = logspace(spec[0], spec[1], spec[2])
        if "take" in v:
            take = _check_count(v["take"], "learning-rate rule take", where)
            if take > len(values):
                raise InvalidChoiceError("learning-rate rule take", take, hint=f"at most {len(values)}{where}")
            values = values[:take]
        return values
    return tuple(_as_list(v))


def _parse_ms(v, name: str, where: str) -> tuple[tuple, int | None]:
    """A list of durations, one duration, or an inclusive range ``{first, last, step}``; returns the
    values and the range step (None for explicit values)."""
    if isinstance(v, Mapping):
        _check_keys(v, ("first", "last", "step"), f"{name} range", where)
        try:
            first, last, step = (_check_ms(v[k], f"{name} range {k}", where=where) for k in ("first", "last", "step"))
        except KeyError as e:
            raise InvalidChoiceError(f"{name} range", dict(v), hint=f"expected {{first, last, step}}{where}") from e
        if step == 0 or last < first:
            raise InvalidChoiceError(f"{name} range", dict(v), hint=f"needs step > 0 and last >= first{where}")
        return tuple(range(first, last + 1, step)), step
    return tuple(_as_list(v)), None


def _parse_epochs(v, where: str) -> dict:
    if isinstance(v, Mapping):
        _check_keys(v, ("min", "scale"), "epoch rule", where)
        if "min" not in v or "scale" not in v:
            raise InvalidChoiceError("epoch rule", dict(v), hint=f"expected {{min, scale}}{where}")
        return {"epochs": None, "epoch_rule": EpochRule(v["min"], v["scale"])}
    return {"epochs": _check_count(v, "epochs", where)}


def _parse_seeds(v, where: str) -> tuple:
    if isinstance(v, list):
        return tuple(v)
    return tuple(range(_check_count(v, "seeds", where)))


def _check_keys(d: Mapping, allowed: tuple, what: str, where: str):
    for k in d:
        if k not in allowed:
            raise InvalidChoiceError(f"key of {what}", k, allowed, hint=where.strip(" ()"))


def _parse_block(block: Mapping, base: FamilyGrid | None, where: str) -> FamilyGrid:
    """A ``[[family]]`` block: a full definition (``base`` None) or overrides of ``base``."""
    allowed = ("family",) + (_DEFINITION_KEYS if base is None else _OVERRIDE_KEYS)
    _check_keys(block, allowed, "a [[family]] block", where)
    kw: dict = {}
    if "lrs" in block:
        kw["lrs"] = _parse_lrs(block["lrs"], where)
    for key in ("delays_ms", "response_ms"):
        if key in block:
            kw[key], step = _parse_ms(block[key], key, where)
            nomemory = block.get("nomemory", False) if base is None else base.nomemory
            if base is None and key == ("response_ms" if nomemory else "delays_ms"):
                kw["grid_step_ms"] = step
    if "seeds" in block:
        kw["seeds"] = _parse_seeds(block["seeds"], where)
    if "epochs" in block:
        kw.update(_parse_epochs(block["epochs"], where))
    if base is not None:
        if "response_ms" in kw and not base.nomemory:
            raise InvalidChoiceError("key of a [[family]] block", "response_ms", hint=(
                f"only the nomemory family sweeps the response length{where}"))
        return dataclasses.replace(base, **kw)
    missing = [k for k in ("lrs", "delays_ms", "seeds", "epochs") if k not in block]
    if missing:
        raise InvalidChoiceError("family definition", block["family"], hint=f"missing {missing}{where}")
    for key in ("post_ms", "tau_ms", "nomemory", "diverge_loss"):
        if key in block:
            kw[key] = block[key]
    return FamilyGrid(family=block["family"], **kw)


def load_preset(name: str) -> Preset:
    """The preset ``name`` (see :func:`list_presets`), with every ``[[family]]`` block resolved to a grid."""
    check_choice("preset", name, _preset_names())
    return _load_preset(name)


@cache
def _load_preset(name: str) -> Preset:
    raw = _raw_presets()[name]
    where = f" (preset {name!r})"
    _check_keys(raw, _PRESET_KEYS, "a preset", where)
    description = raw.get("description")
    if not isinstance(description, str) or not description.strip():
        raise InvalidChoiceError("description", description, hint=f"every preset needs a description{where}")
    shard_size = _check_count(raw.get("shard_size"), "shard_size", where)
    blocks = raw.get("family")
    if not isinstance(blocks, list) or not blocks:
        raise InvalidChoiceError("preset", name, hint="a preset needs at least one [[family]] block")
    grids = []
    for i, block in enumerate(blocks):
        bwhere = f" (preset {name!r}, [[family]] block {i + 1})"
        if not isinstance(block, Mapping) or "family" not in block:
            raise InvalidChoiceError("[[family]] block", block, hint=f"needs a family = name key{bwhere}")
        fam = check_choice("family", block["family"], FAMILIES, hint=bwhere.strip(" ()"))
        is_definition = fam == name
        grids.append(_parse_block(block, None if is_definition else family_grid(fam), bwhere))
    return Preset(name=name, description=description.strip(), shard_size=shard_size, families=tuple(grids))


def family_grid(family: str) -> FamilyGrid:
    """The paper's definition of ``family`` (the single block of the preset file of the same name)."""
    check_choice("family", family, FAMILIES)
    check_choice("preset", family, _preset_names(), hint=f"the definition file {family}.toml of family {family!r} is missing")
    raw = _raw_presets()[family]
    blocks = raw.get("family")
    if not isinstance(blocks, list) or len(blocks) != 1 or blocks[0].get("family") != family:
        raise InvalidChoiceError("family definition", family,
                                 hint=f"{family}.toml must hold exactly one [[family]] block with family = {family!r}")
    return _load_preset(family).families[0]


def family_config(family: str, *, seed: int, lr: float, delay_ms: int = 0, response_ms: int | None = None,
                  epochs: int | None = None) -> NetConfig:
    """One network of ``family`` with every field from the family's paper definition (post period, tau,
    readout, divergence rule, epochs from its rule unless ``epochs`` is given). Prefer it to ``NetConfig(...)``,
    whose field defaults are those of nopost (no post period, tau = 10 ms, sigmoid readout)."""
    g = family_grid(family)
    return g.override(lrs=[lr], delays=[response_ms if g.nomemory and response_ms is not None else delay_ms],
                      seeds=[seed], epochs=epochs).configs()[0]


# ---------------------------------------------------------------------------------------------------------
# expansion, shards, summary


DEFAULT_PRESET = "sample"
"""What ``zoo build`` trains when neither a preset nor a family is named: the bundled sample zoo's grid."""


def resolve_preset(preset: str | Preset | None, family: str | None = None) -> str | Preset:
    """The preset a build starts from: ``preset`` if given; else the paper definition of ``family`` (its own
    preset file: epoch rule, post period, tau, readout and seeds as in the paper); else :data:`DEFAULT_PRESET`.

    So ``--family nopost --lr 0.001`` trains nopost's networks (``max(1000, int(30/lr))`` = 30,000 epochs),
    never the sample preset's fixed 1,000."""
    if preset is not None:
        return preset
    if family is not None:
        return check_choice("family", family, FAMILIES)
    return DEFAULT_PRESET


def epoch_rules(grids: Iterable[FamilyGrid]) -> list[str]:
    """One line per family grid saying which epoch rule it trains with, and whether that is the paper's,
    e.g. ``nopost: 1000 epochs (fixed by the preset; the paper's rule is max(1000, int(30/lr)))``."""
    out = []
    for g in grids:
        paper = family_grid(g.family)
        mine = f"{g.epochs} epochs" if g.epochs is not None else f"epochs = {g.epoch_rule.describe()}"
        theirs = f"{paper.epochs} epochs" if paper.epochs is not None else paper.epoch_rule.describe()
        if (g.epochs, g.epoch_rule) == (paper.epochs, paper.epoch_rule):
            out.append(f"{g.family}: {mine} (the paper's rule)")
        elif all(g.epochs_for(lr) == paper.epochs_for(lr) for lr in g.lrs):
            out.append(f"{g.family}: {mine} (fixed by the preset; the paper's rule, {theirs}, gives the same "
                       "at these learning rates)")
        else:
            out.append(f"{g.family}: {mine} (NOT the paper's rule, which is {theirs})")
    return list(dict.fromkeys(out))


def preset_grids(preset: str | Preset | None = None, *, family: str | None = None, lrs=None, delays=None,
                 seeds=None, epochs=None) -> list[FamilyGrid]:
    """The family grids of ``preset`` after the overrides of :func:`make_grid` (no expansion).
    ``preset`` None: see :func:`resolve_preset`."""
    preset = resolve_preset(preset, family)
    p = preset if isinstance(preset, Preset) else load_preset(preset)
    grids = list(p.families)
    if family is not None:
        check_choice("family", family, FAMILIES)
        grids = [g for g in grids if g.family == family] or [family_grid(family)]
    return [g.override(lrs=lrs, delays=delays, seeds=seeds, epochs=epochs) for g in grids]


def make_grid(preset: str | Preset | None = None, *, family: str | None = None, lrs=None, delays=None,
              seeds=None, epochs=None) -> list[NetConfig]:
    """Expand a preset into its networks, with CLI-style overrides.

    ``preset`` None starts from the paper definition of ``family`` if one is given, else from
    :data:`DEFAULT_PRESET` (:func:`resolve_preset`). ``family`` keeps only that family's blocks (the family's
    paper definition if the preset has none);
    ``lrs`` (floats) replace the learning rates; ``delays`` (ms, multiples of 5) replace the delays, or the
    response lengths for nomemory; ``seeds`` N gives seeds 0..N-1; ``epochs`` N replaces the epoch rule.
    Order: family block (preset order), delay (response length), learning rate (as given), seed.
    Overrides apply to every block; networks that several overridden blocks then share appear once.
    Raises :class:`InvalidChoiceError` for unknown names, off-grid durations, bad values and (without
    overrides) blocks of a preset that overlap.
    """
    grids = preset_grids(preset, family=family, lrs=lrs, delays=delays, seeds=seeds, epochs=epochs)
    configs: list[NetConfig] = []
    for g in grids:
        configs.extend(g.configs())
    if len({g.family for g in grids}) < len(grids):  # each grid alone has no duplicates; blocks may overlap
        if any(v is not None for v in (lrs, delays, seeds, epochs)):
            # overrides can make blocks of one family overlap: the grid is the set of networks, keep the first
            configs = list(dict.fromkeys(configs))
        else:
            _check_no_duplicates(configs)
    return configs


def _check_no_duplicates(configs: list[NetConfig]):
    if len(set(configs)) != len(configs):
        seen = set()
        for c in configs:
            if c in seen:
                raise InvalidChoiceError("network", c.net_id, hint="the grid lists the same network twice "
                                         "(two [[family]] blocks overlap?)")
            seen.add(c)


@dataclass(frozen=True)
class Shard:
    """A unit of build work: networks that share one trial shape and model (one batched training run)."""

    shard_id: str
    configs: tuple[NetConfig, ...]

    def __len__(self) -> int:
        return len(self.configs)

    @property
    def family(self) -> str:
        return self.configs[0].family

    @property
    def net_ids(self) -> list[str]:
        return [c.net_id for c in self.configs]

    def batch_key(self) -> tuple:
        return self.configs[0].batch_key()


_PER_NETWORK_FIELDS = ("seed", "lr", "epochs")


def shards(configs: Iterable[NetConfig], shard_size: int) -> list[Shard]:
    """Cut a build into shards, deterministically from the configs (and their order) and ``shard_size``.

    Networks are grouped by every field except seed, lr and epochs (family, delay, post, tau, response
    length, nomemory, ...: a refinement of :meth:`NetConfig.batch_key` equivalence), groups in order of
    first appearance; each group keeps the grid order and is cut into chunks of ``shard_size``.
    Shard ids: ``<family>-d<delay ms>-<chunk>`` (``<family>-r<response ms>-<chunk>`` for nomemory),
    e.g. ``nopost-d040-000``.
    """
    shard_size = _check_count(shard_size, "shard_size")
    configs = list(configs)
    names = tuple(f.name for f in dataclasses.fields(NetConfig) if f.name not in _PER_NETWORK_FIELDS)
    group_key = operator.attrgetter(*names)
    groups: dict[tuple, list[NetConfig]] = {}
    for c in configs:
        groups.setdefault(group_key(c), []).append(c)
    _check_no_duplicates(configs)
    out: list[Shard] = []
    prefixes: dict[str, tuple] = {}
    for key, members in groups.items():
        c0 = members[0]
        prefix = f"{c0.family}-r{c0.response_ms:03d}" if c0.nomemory else f"{c0.family}-d{c0.delay_ms:03d}"
        if prefixes.setdefault(prefix, key) != key:
            raise ValueError(f"two groups of networks would share the shard id prefix {prefix!r} "
                             f"(they differ in more than the delay/response length): {prefixes[prefix]} vs {key}")
        for i in range(0, len(members), shard_size):
            out.append(Shard(f"{prefix}-{i // shard_size:03d}", tuple(members[i:i + shard_size])))
    return out


def grid_summary(configs: Iterable[NetConfig]) -> dict:
    """Counts of a grid: ``networks``, ``by_family`` (networks per family, in order of appearance),
    ``network_epochs`` (sum of epochs) and ``network_epoch_steps`` (sum of epochs x trial length T)."""
    n = epochs = steps = 0
    by_family: dict[str, int] = {}
    t_cache: dict[tuple, int] = {}
    for c in configs:
        key = (c.delay_ms, c.post_ms, c.response_ms, c.nomemory)
        T = t_cache.get(key)
        if T is None:
            T = t_cache[key] = c.task().n_steps
        n += 1
        by_family[c.family] = by_family.get(c.family, 0) + 1
        epochs += c.epochs
        steps += c.epochs * T
    return {"networks": n, "by_family": by_family, "network_epochs": epochs, "network_epoch_steps": steps}
