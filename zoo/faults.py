"""Fault injection for the crash tests: ``ZOO_FAULT_POINT=<point>:<n>`` SIGKILLs the process the ``n``-th time
it reaches ``<point>``; with ``ZOO_FAULT_ONCE=<file>`` only the first process that gets there dies (it creates
the file), so a retried or resumed run goes through.

Points: the build's named steps (:data:`zoo.build.FAULT_POINTS`) and, inside every atomic write
(:func:`zoo.manifest.atomic_path`), :data:`WRITE_POINTS`: ``write-partial`` (the temp file cut to half its
length, as if the process died while writing it), ``write-rename`` (temp file complete and synced, not yet
renamed into place).
"""

from __future__ import annotations

import os
import signal
import sys

WRITE_POINTS = ("write-partial", "write-rename")
_counts: dict[str, int] = {}


def armed(name: str) -> bool:
    """True if ``ZOO_FAULT_POINT`` names ``name`` (cheap check before preparing a fault)."""
    spec = os.environ.get("ZOO_FAULT_POINT")
    return bool(spec) and spec.partition(":")[0].strip() == name


def fault_point(name: str, before_kill=None) -> None:
    """SIGKILL this process if ``ZOO_FAULT_POINT=<name>:<n>`` and this is the n-th time here.
    ``before_kill()`` runs just before the kill (e.g. to leave a half-written file)."""
    if not armed(name):
        return
    n = os.environ["ZOO_FAULT_POINT"].partition(":")[2]
    _counts[name] = count = _counts.get(name, 0) + 1
    if count != int(n or 1):
        return
    once = os.environ.get("ZOO_FAULT_ONCE")
    if once:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            return
    if before_kill is not None:
        before_kill()
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
