"""Every ``ZOO_*`` environment variable, read once into one :class:`Settings` object.

The process's settings are read the first time :func:`current` is called (never at import) and then kept:
a variable changed later has no effect until :func:`reload`. Code that needs a setting takes a ``Settings``
argument (defaulting to :func:`current`), so a caller can pass its own without touching the environment;
:func:`override` replaces the process's settings for a ``with`` block (tests, scripts). ``zoo settings``
prints them (:func:`describe`). A bad value raises :class:`zoo.errors.InvalidChoiceError` naming the variable,
the value and the valid choices.

The Hugging Face variables (``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HUB_OFFLINE``, ...) are huggingface_hub's own
and are read by :mod:`zoo.hub` with that library's meaning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InvalidChoiceError

#: the kernel backends (:mod:`zoo.kernels`)
BACKENDS = ("auto", "torch", "c", "compile", "triton")
#: matrix products of the C passes: our own fixed-order ones (the widest register tiles the CPU has, or 8-float
#: tiles: the same bits), or MKL's sgemm
C_GEMM_MODES = ("own", "own8", "blas")
#: ``tl.dot`` input precisions of the Triton kernels (``tf32`` is chosen per call by ``train_networks(tf32=True)``)
TRITON_PRECISIONS = ("ieee", "tf32x3")
#: where the Triton backward pass computes the weight gradients
TRITON_GRADS = ("gemm", "kernel")


def _setting(env: str, default, help: str, choices: tuple | None = None):
    return field(default=default, metadata={"env": env, "help": help, "choices": choices})


@dataclass(frozen=True)
class Settings:
    """The package's settings; each field names its environment variable in ``fields(Settings)[i].metadata``."""

    kernels: str = _setting("ZOO_KERNELS", "auto", "kernel backend of the trainer", BACKENDS)
    no_cc: bool = _setting("ZOO_NO_CC", False, "never compile the C kernels (train with torch)")
    c_gemm: str = _setting("ZOO_C_GEMM", "own", "matrix products of the C passes", C_GEMM_MODES)
    c_blas: bool = _setting("ZOO_C_BLAS", True, "let the C passes use torch's MKL sgemm where needed")
    compile: bool = _setting("ZOO_COMPILE", True, "allow the torch.compile backend")
    triton: bool = _setting("ZOO_TRITON", True, "allow the Triton backend on CUDA")
    triton_precision: str = _setting("ZOO_TRITON_PRECISION", "ieee", "Triton tl.dot precision", TRITON_PRECISIONS)
    triton_bb: int = _setting("ZOO_TRITON_BB", 32, "Triton trials per program (a power of two >= 16)")
    triton_warps: int = _setting("ZOO_TRITON_WARPS", 8, "Triton warps per program")
    triton_maxnreg: int = _setting("ZOO_TRITON_MAXNREG", 255, "Triton registers per thread (24-255; 0: compiler's choice)")
    triton_grads: str = _setting("ZOO_TRITON_GRADS", "gemm", "Triton weight gradients", TRITON_GRADS)
    cache_dir: Path | None = _setting("ZOO_CACHE_DIR", None, "per-user cache (C kernels, readers' caches)")
    claim_ttl_s: float = _setting("ZOO_CLAIM_TTL_S", 600.0, "seconds after which a shard claim's heartbeat is stale")
    fault_point: str | None = _setting("ZOO_FAULT_POINT", None, "crash tests: kill at <point>:<n> (zoo.faults)")
    fault_once: str | None = _setting("ZOO_FAULT_ONCE", None, "crash tests: only the process creating this file dies")

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if meta["choices"] and value not in meta["choices"]:
                raise InvalidChoiceError(meta["env"], value, list(meta["choices"]))
        bb = self.triton_bb
        if bb < 16 or bb & (bb - 1):
            raise InvalidChoiceError("ZOO_TRITON_BB", bb, hint="it must be a power of two >= 16 (tl.dot needs blocks of 16)")
        if self.triton_maxnreg and not 24 <= self.triton_maxnreg <= 255:
            raise InvalidChoiceError("ZOO_TRITON_MAXNREG", self.triton_maxnreg, hint="it must be 0 or 24 to 255")
        if self.triton_warps not in (1, 2, 4, 8, 16, 32):
            raise InvalidChoiceError("ZOO_TRITON_WARPS", self.triton_warps, [1, 2, 4, 8, 16, 32])
        if not self.claim_ttl_s > 0:
            raise InvalidChoiceError("ZOO_CLAIM_TTL_S", self.claim_ttl_s, hint="it must be a positive number of seconds")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings the environment gives (``os.environ`` by default); unset or empty variables keep defaults."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f.metadata["env"], "").strip()
            if raw:
                values[f.name] = _parse(f, raw)
        return cls(**values)

    def env(self) -> dict[str, str]:
        """The environment variables that give these settings (only those that differ from the defaults),
        e.g. for a subprocess or a Ray ``runtime_env``."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                out[f.metadata["env"]] = _format(value)
        return out


def _parse(f: dataclasses.Field, raw: str):
    env, default = f.metadata["env"], f.default
    if isinstance(default, bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise InvalidChoiceError(env, raw, ["1", "0", "true", "false", "yes", "no", "on", "off"])
    try:
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        raise InvalidChoiceError(env, raw, hint=f"it must be a number ({type(default).__name__})") from None
    if f.name == "cache_dir":
        return Path(raw).expanduser()
    return raw.lower() if f.metadata["choices"] else raw


def _format(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


_lock = threading.Lock()
_current: Settings | None = None


def current() -> Settings:
    """The process's settings, read from the environment on first use."""
    global _current
    if _current is None:
        with _lock:
            if _current is None:
                _current = Settings.from_env()
    return _current


def reload() -> Settings:
    """Read the environment again (after changing a ``ZOO_*`` variable in this process)."""
    global _current
    with _lock:
        _current = Settings.from_env()
    return _current


@contextlib.contextmanager
def override(**changes) -> Iterator[Settings]:
    """Run a ``with`` block under the current settings with ``changes`` (field names of :class:`Settings`)."""
    global _current
    prev = current()
    new = dataclasses.replace(prev, **changes)
    _current = new
    try:
        yield new
    finally:
        _current = prev


def describe(settings: Settings | None = None, environ: Mapping[str, str] | None = None) -> list[dict]:
    """One row per setting: ``name``, ``env``, ``value``, ``default``, ``source`` (``env`` or ``default``),
    ``help`` (what ``zoo settings`` prints)."""
    settings = settings or current()
    environ = os.environ if environ is None else environ
    rows = []
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        rows.append({"name": f.name, "env": f.metadata["env"], "value": value, "default": f.default,
                     "source": "env" if environ.get(f.metadata["env"], "").strip() else "default",
                     "help": f.metadata["help"]})
    return rows
