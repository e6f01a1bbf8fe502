"""Devices: ``--device`` values (cpu, cuda, cuda:N, auto) as ``torch.device``, checked against this process."""

from __future__ import annotations

import torch

from .errors import InvalidChoiceError


def parse_device(device: str | torch.device | None) -> torch.device:
    """``auto``/None -> cuda if available, else cpu; anything else as ``torch.device`` (not checked to exist)."""
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise InvalidChoiceError("device", device, hint="use cpu, cuda, cuda:N or auto") from None


def resolve_device(device: str | torch.device | None) -> torch.device:
    """:func:`parse_device`, and the device must exist in this process (else a clear error listing those that do)."""
    dev = parse_device(device)
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0 or (dev.index is not None and dev.index >= n):
            valid = ["cpu", "auto", *(["cuda", *(f"cuda:{i}" for i in range(n))] if n else [])]
            raise InvalidChoiceError("device", str(device), valid,
                                     hint=f"torch {torch.__version__} sees {n} CUDA device(s) here")
    return dev
