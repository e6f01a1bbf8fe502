"""Everything the kernel backends remember between calls, in one object: :data:`STATE`.

- ``override``: the backend chosen by :func:`zoo.kernels.set_backend` / :func:`~zoo.kernels.use_backend`
  (None: the ``kernels`` setting, ``$ZOO_KERNELS``);
- ``c``: the C library, loaded on first use (or why it could not be), and the failures already reported,
  :mod:`zoo.kernels.c`;
- ``compiled``: the ``torch.compile``'d formulas (or why compiling failed) and their cached scalar tensors,
  :mod:`zoo.kernels.compiled`;
- ``triton``: the Triton kernels' module (or why it does not import), the result of each device's check and
  the warnings already given, :mod:`zoo.kernels.triton`.

The settings (``ZOO_*`` variables) are not kept here: every function takes a :class:`zoo.settings.Settings`
(default :func:`zoo.settings.current`). Tests reset a part with e.g. ``monkeypatch.setattr(STATE, "triton",
TritonState())``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CState:
    """The C library: loaded once per process (``tried``), with its path, or the error that stopped it."""

    lib: Any = None  # ctypes.CDLL
    tried: bool = False
    error: str | None = None
    path: str | None = None
    warned: bool = False
    failures: set[str] = field(default_factory=set)  # the failed passes already reported


@dataclass
class CompileState:
    """The torch.compile'd formulas (built on first use) or the failure that disabled them."""

    fns: dict | None = None
    failed: bool = False
    error: str | None = None
    scalars: dict = field(default_factory=dict)  # (value, device, dtype) -> 0-dim tensor


@dataclass
class TritonState:
    """The Triton kernels' module (imported on first use) or its import error; each check's result by key
    (device and launch options; None: passed) and the keys already warned about."""

    module: Any = None
    error: str | None = None
    checked: dict[str, str | None] = field(default_factory=dict)
    warned: set[str] = field(default_factory=set)


@dataclass
class BackendState:
    """All mutable state of :mod:`zoo.kernels` (one instance per process: :data:`STATE`)."""

    override: str | None = None
    c: CState = field(default_factory=CState)
    compiled: CompileState = field(default_factory=CompileState)
    triton: TritonState = field(default_factory=TritonState)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


#: the process's backend state
STATE = BackendState()
