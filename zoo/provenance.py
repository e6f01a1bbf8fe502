"""Build provenance: how and where a zoo was trained, recorded in ``zoo.json`` and per network.

What ``zoo verify`` can promise (bitwise or only close) depends on it: a CPU build with the C kernels and
their own matrix products (GCC) retrains bitwise on an x86-64 CPU with AVX2 + FMA; GPU builds, the Triton or
torch kernels, MKL's products or TF32 only closely (README, "Reproducibility").

- :func:`environment`: the process's software and hardware (package version and git commit, Python, torch,
  NumPy, platform, device and its model, kernels backend, matrix products, compiler, Triton launch options,
  TF32, date, command line). A build records it per shard (in its done marker) and at packaging.
- :func:`network_columns`: the per-network metadata columns (``train_device``, ``train_device_name``,
  ``train_backend``, ``c_gemm``, ``tf32``); shards may be trained on different machines.
- :func:`summarize`: the ``provenance`` entry of ``zoo.json``.
- :func:`expectation`: what retraining here can reproduce, and why.
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
import platform
import shlex
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from . import kernels
from .errors import ZooError
from .task import SCORINGS
from .version import __version__

_DEVICE_KEYS = ("build_device", "train_device", "device")
_BACKEND_KEYS = ("build_kernels", "kernels", "train_backend", "backend")
_GEMM_KEYS = ("c_gemm", "gemm")
_TF32_KEYS = ("tf32",)
NETWORK_COLUMNS = ("train_device", "train_device_name", "train_backend", "c_gemm", "tf32", "scoring")
#: the scoring of releases without a ``scoring`` column (written before 0.2; :data:`zoo.task.SCORINGS`)
SCORING_BEFORE_COLUMN = "label"


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "Hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=1)
def git_commit() -> dict:
    """``{"commit": sha, "dirty": bool}`` when the package runs from a git checkout, else ``{}``."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return {}
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": sha, "dirty": dirty}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        try:
            return torch.cuda.get_device_name(device)
        except Exception:  # noqa: BLE001 - no driver at packaging time
            return "cuda"
    return cpu_model()


def _kernels(device: torch.device) -> dict:
    from . import kernels

    backend = kernels.backend_for(torch.empty(0, device=device))
    out = {"kernels": backend, "c_gemm": None, "c_compiler": None, "openmp": None, "triton": None}
    if backend == "c":
        info = kernels.c_backend_info()
        out.update(c_gemm=info["gemm"], c_compiler=info["compiler"], openmp=info["openmp"])
    if backend == "triton":
        try:
            from .kernels import triton_kernels

            out["triton"] = {"version": getattr(sys.modules.get("triton"), "__version__", None),
                             "launch": triton_kernels.config_str()}
        except Exception:  # noqa: BLE001 - diagnostics only
            out["triton"] = {}
    return out


def _tf32(device: torch.device) -> bool:
    return device.type == "cuda" and bool(torch.backends.cuda.matmul.allow_tf32)


def environment(device: str | torch.device = "cpu") -> dict:
    """The process's build environment (see the module doc)."""
    from .devices import resolve_device

    dev = resolve_device(device)
    return {
        "package": "rnn-stm-zoo", "version": __version__, **{f"git_{k}": v for k, v in git_commit().items()},
        "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
        "platform": platform.platform(), "device": dev.type, "device_name": device_name(dev),
        **_kernels(dev), "tf32": _tf32(dev),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "",
    }


def network_columns(device: str | torch.device = "cpu") -> dict:
    """The per-network provenance columns for networks trained here on ``device``."""
    from .devices import resolve_device

    dev = resolve_device(device)
    k = _kernels(dev)
    return {"train_device": dev.type, "train_device_name": device_name(dev), "train_backend": k["kernels"],
            "c_gemm": k["c_gemm"], "tf32": _tf32(dev), "scoring": SCORINGS[0]}


def scoring_of(metadata) -> str:
    """How the accuracy and reliability curves of ``metadata``'s networks were scored (its ``scoring`` column;
    :data:`SCORING_BEFORE_COLUMN` for releases written before it), to retrain them to the same curves."""
    if "scoring" not in metadata:
        return SCORING_BEFORE_COLUMN
    found = set(metadata["scoring"].fillna(SCORING_BEFORE_COLUMN))
    if len(found) > 1:
        raise ZooError(f"these networks' curves were scored in different ways ({sorted(found)}): select networks "
                       f"of one scoring (filter scoring=...)")
    return found.pop() if found else SCORINGS[0]


def _key(env: Mapping) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in env.items() if k not in ("date", "command")))


def summarize(packaged: Mapping, shard_envs: Iterable[Mapping | None], metadata=None) -> dict:
    """The ``provenance`` entry of ``zoo.json``: the packaging environment (top level), the distinct training
    environments of the shards (``training``, each with its shard count, first date and command) and the
    per-network counts of device / backend / products (``networks``)."""
    groups: dict[tuple, dict] = {}
    unknown = 0
    for env in shard_envs:
        if not env:
            unknown += 1
            continue
        g = groups.setdefault(_key(env), {**env, "shards": 0})
        g["shards"] += 1
        g["date"] = min(g["date"], env.get("date", g["date"]))
    out = {**packaged, "training": list(groups.values())}
    if unknown:
        out["training_unrecorded_shards"] = unknown
    if metadata is not None and "train_device" in getattr(metadata, "columns", ()):
        cols = metadata[["train_device", "train_backend", "c_gemm"]].astype(object)
        combo = cols.where(cols.notna(), "unrecorded").astype(str).agg(" / ".join, axis=1)
        out["networks"] = dict(sorted(Counter(combo).items()))
    return out


def expectation(metadata, info: Mapping, device: str | torch.device = "cpu") -> tuple[str, str]:
    """``("bitwise" | "close" | "mixed", why)``: what retraining the networks of ``metadata`` on ``device``
    here can reproduce, from their recorded provenance (rules: :func:`zoo.trajectories.expected_reproducibility`)."""
    from .devices import resolve_device
    dev = resolve_device(device)
    rows = metadata.to_dict("records") if len(metadata) else [{}]
    verdicts = Counter(expected_reproducibility(r, info, dev) for r in rows)
    kinds = {k for k, _ in verdicts}
    if len(kinds) == 1:
        return kinds.pop(), "; ".join(why for _, why in verdicts)
    return "mixed", "; ".join(f"{n} network(s) {k}: {why}" for (k, why), n in verdicts.items())


def describe(prov: Mapping) -> list[tuple[str, str]]:
    """(label, value) lines for ``zoo info``."""
    if not prov:
        return [("provenance", "not recorded (built before rnn-stm-zoo recorded it)")]
    lines = [("packaged with", f"rnn-stm-zoo {prov.get('version', '?')}"
              + (f" (git {str(prov['git_commit'])[:12]}{', dirty' if prov.get('git_dirty') else ''})"
                 if prov.get("git_commit") else "")),
             ("software", f"Python {prov.get('python')}, torch {prov.get('torch')}, NumPy {prov.get('numpy')}"),
             ("packaged on", f"{prov.get('device')} ({prov.get('device_name')}), {prov.get('platform')}, "
                             f"{prov.get('date')}"),
             ("command", str(prov.get("command", "")))]
    for env in prov.get("training", []):
        kern = env.get("kernels")
        if kern == "c":
            kern = f"C kernels, {env.get('c_gemm')} matrix products, {env.get('c_compiler')}"
        elif kern == "triton" and env.get("triton"):
            kern = f"Triton {env['triton'].get('version')} ({env['triton'].get('launch')})"
        lines.append(("trained", f"{env.get('shards')} shard(s) on {env.get('device')} ({env.get('device_name')}) "
                                 f"with {kern}, TF32 {'on' if env.get('tf32') else 'off'}, torch {env.get('torch')}, "
                                 f"since {env.get('date')}: {env.get('command')}"))
    for combo, n in prov.get("networks", {}).items():
        lines.append(("networks", f"{n} trained on {combo} (device / kernels / products)"))
    return lines


# ---------------------------------------------------------------- bitwise or close
def _provenance(row: Mapping, info: Mapping, keys: Sequence[str]):
    """The first of ``keys`` recorded for a network: in its metadata row (``train_device``, ...), else in the
    release's training environments (``zoo.json`` ``provenance.training``, when they all agree), else at the top
    of the release info. None if absent. (``provenance``'s own top level describes packaging, not training.)"""
    def first(where):
        for k in keys:
            v = where.get(k) if hasattr(where, "get") else None
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                return v
        return None

    v = first(row)
    if v is not None:
        return v
    prov = info.get("provenance")
    envs = prov.get("training", []) if isinstance(prov, Mapping) else []
    found = {str(x) for x in (first(env) for env in envs if isinstance(env, Mapping)) if x is not None}
    if len(found) == 1:
        return found.pop()
    if len(found) > 1:
        return "mixed (" + ", ".join(sorted(found)) + ")"
    return first(info)


def local_bitwise_capable(device: torch.device) -> tuple[bool, str]:
    """Whether this process trains with the reproducible CPU path: C kernels, own products, GCC build."""
    if device.type != "cpu":
        return False, f"retrained on {device} (CPU builds retrain bitwise only on the CPU)"
    backend = kernels.backend_for(torch.empty(0))
    if backend != "c":
        return False, f"retrained with the {backend} kernels here (bitwise needs the C kernels)"
    info = kernels.c_backend_info()
    if info["gemm"] != "own":
        return False, f"the C kernels use {info['gemm']} matrix products here (bitwise needs their own)"
    if "clang" in (info["compiler"] or "clang").lower():
        return False, f"the C kernels were not built by GCC here ({info['compiler']})"
    return True, "CPU, C kernels with their own products (GCC)"


def expected_reproducibility(row: Mapping, info: Mapping, device: torch.device) -> tuple[str, str]:
    """``("bitwise" | "close", why)``: what the release's provenance and this machine allow for one network.

    Bitwise needs a CPU build with the C kernels (and their own matrix products, no TF32), retrained the same
    way here. Where the release records no provenance, a CPU build with the C kernels is assumed (the
    measured difference of a full retrain tells)."""
    ok, why = local_bitwise_capable(device)
    if not ok:
        return "close", why
    dev = _provenance(row, info, _DEVICE_KEYS)
    if dev is not None and not str(dev).lower().startswith("cpu"):
        return "close", f"built on {dev}, retrained on the CPU"
    backend = _provenance(row, info, _BACKEND_KEYS)
    if backend is not None and str(backend).lower() != "c":
        return "close", f"built with the {backend} kernels, retrained with the C kernels"
    gemm = _provenance(row, info, _GEMM_KEYS)
    if gemm is not None and str(gemm).lower() != "own":
        return "close", f"built with {gemm} matrix products"
    tf32 = _provenance(row, info, _TF32_KEYS)
    if tf32 is not None and bool(tf32):
        return "close", "built with TF32"
    if dev is None and backend is None:
        return "bitwise", "no build provenance recorded: assumed a CPU build with the C kernels"
    return "bitwise", f"built on {dev or 'cpu'} with the {backend or 'C'} kernels, retrained the same way"
