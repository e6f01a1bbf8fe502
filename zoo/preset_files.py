"""The preset files: named grids read from TOML into :class:`Preset` objects (:func:`load_preset`,
:func:`list_presets`), and the paper's definition of each family (:func:`family_grid`, :func:`family_config`).

Presets are the TOML files of the repository's ``build/presets/`` (installed as the package data
``zoo.presets``; found by :func:`zoo.package_data.data_folder`). A preset has a ``description``, a ``shard_size`` (networks per build shard) and one or more
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

The files are read on first use, never at import.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, lru_cache

from .config import NetConfig
from .errors import InvalidChoiceError, check_choice
from .families import (
    FAMILIES,
    EpochRule,
    FamilyGrid,
    Overrides,
    as_list,
    check_count,
    check_ms,
    grid_configs,
    is_number,
    logspace,
)
from .package_data import data_folder

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10 needs the tomli backport
    import tomli as tomllib

_OVERRIDE_KEYS = ("lrs", "delays_ms", "response_ms", "seeds", "epochs")
_DEFINITION_KEYS = ("lrs", "delays_ms", "seeds", "epochs", "post_ms", "tau_ms", "response_ms", "nomemory",
                    "diverge_loss")
_PRESET_KEYS = ("description", "shard_size", "family")


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
        """The preset's networks: :func:`zoo.grids.make_grid` without overrides."""
        return grid_configs(self.families)


# ---------------------------------------------------------------------------------------------------------
# preset files


@lru_cache(maxsize=1)
def _raw_presets() -> dict[str, dict]:
    out = {}
    for entry in sorted(data_folder("presets").iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".toml") or not entry.is_file():
            continue
        name = entry.name[: -len(".toml")]
        try:
            out[name] = tomllib.loads(entry.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise InvalidChoiceError("preset file", entry.name, hint=f"not valid TOML: {e}") from e
    return out


def preset_names() -> tuple[str, ...]:
    """The family presets in FAMILIES order, then the others sorted by name (read on first use, not at import)."""
    return tuple(sorted(_raw_presets(), key=lambda n: (n not in FAMILIES, FAMILIES.index(n) if n in FAMILIES else 0,
                                                      n)))


def list_presets() -> list[str]:
    """Names of the available presets (the family presets, ``paper``, ``sample``, ``smoke``, ...)."""
    return list(preset_names())


def _parse_lrs(v, where: str) -> tuple:
    if isinstance(v, Mapping):
        _check_keys(v, ("logspace", "take"), "learning-rate rule", where)
        spec = v.get("logspace")
        if not isinstance(spec, list) or len(spec) != 3 or not all(is_number(x) for x in spec):
            raise InvalidChoiceError("learning-rate rule", dict(v),
                                     hint=f"expected {{logspace = [start, stop, num]}} (exponents of 10){where}")
        values = logspace(spec[0], spec[1], spec[2])
        if "take" in v:
            take = check_count(v["take"], "learning-rate rule take", where)
            if take > len(values):
                raise InvalidChoiceError("learning-rate rule take", take, hint=f"at most {len(values)}{where}")
            values = values[:take]
        return values
    return tuple(as_list(v))


def _parse_ms(v, name: str, where: str) -> tuple[tuple, int | None]:
    """A list of durations, one duration, or an inclusive range ``{first, last, step}``; returns the
    values and the range step (None for explicit values)."""
    if isinstance(v, Mapping):
        _check_keys(v, ("first", "last", "step"), f"{name} range", where)
        try:
            first, last, step = (check_ms(v[k], f"{name} range {k}", where=where) for k in ("first", "last", "step"))
        except KeyError as e:
            raise InvalidChoiceError(f"{name} range", dict(v), hint=f"expected {{first, last, step}}{where}") from e
        if step == 0 or last < first:
            raise InvalidChoiceError(f"{name} range", dict(v), hint=f"needs step > 0 and last >= first{where}")
        return tuple(range(first, last + 1, step)), step
    return tuple(as_list(v)), None


def _parse_epochs(v, where: str) -> dict:
    if isinstance(v, Mapping):
        _check_keys(v, ("min", "scale"), "epoch rule", where)
        if "min" not in v or "scale" not in v:
            raise InvalidChoiceError("epoch rule", dict(v), hint=f"expected {{min, scale}}{where}")
        return {"epochs": None, "epoch_rule": EpochRule(v["min"], v["scale"])}
    return {"epochs": check_count(v, "epochs", where)}


def _parse_seeds(v, where: str) -> tuple:
    if isinstance(v, list):
        return tuple(v)
    return tuple(range(check_count(v, "seeds", where)))


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
    check_choice("preset", name, preset_names())
    return _load_preset(name)


@cache
def _load_preset(name: str) -> Preset:
    raw = _raw_presets()[name]
    where = f" (preset {name!r})"
    _check_keys(raw, _PRESET_KEYS, "a preset", where)
    description = raw.get("description")
    if not isinstance(description, str) or not description.strip():
        raise InvalidChoiceError("description", description, hint=f"every preset needs a description{where}")
    shard_size = check_count(raw.get("shard_size"), "shard_size", where)
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
    check_choice("preset", family, preset_names(), hint=f"the definition file {family}.toml of family {family!r} is missing")
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
    delay = response_ms if g.nomemory and response_ms is not None else delay_ms
    return g.apply(Overrides(lrs=[lr], delays=[delay], seeds=[seed], epochs=epochs)).configs()[0]

