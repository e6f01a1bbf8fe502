"""Fault injection for the crash tests, behind one small interface: production code only marks its named
points (:func:`fault_point`), which do nothing unless a test installed an injector.

- In the test's own process: ``with faults.installed(injector): ...``, where an injector is any callable
  ``injector(point, before_kill)`` (e.g. one that raises at a point, or :class:`KillAt`).
- In a child process (``zoo build`` run by a test, Ray workers): ``ZOO_FAULT_POINT=<point>:<n>`` installs
  :class:`KillAt`, which SIGKILLs the process the ``n``-th time it reaches ``<point>``; with
  ``ZOO_FAULT_ONCE=<file>`` only the first process that gets there dies (it creates the file), so a retried or
  resumed run goes through. Both are read once, with the other settings (:mod:`zoo.settings`).

Points: the build's named steps (:data:`BUILD_POINTS`) and, inside every atomic write
(:func:`zoo.manifest.atomic_path`), :data:`WRITE_POINTS`: ``write-partial`` (the temp file cut to half its
length, as if the process died while writing it), ``write-rename`` (temp file complete and synced, not yet
renamed into place); and in a release rewrite (:data:`PUBLISH_POINTS`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator

from . import settings as _settings

#: named steps of a build (:mod:`zoo.shard_build`, :mod:`zoo.chunks`, :mod:`zoo.build_folder`, packaging in
#: :mod:`zoo.release`) where a fault can be injected
BUILD_POINTS = ("epoch", "chunk-trained", "chunk-weights", "chunk-written", "shard-weights", "shard-part",
                "shard-done", "package")
#: points inside every atomic write
WRITE_POINTS = ("write-partial", "write-rename")
#: points of a release rewrite (:func:`zoo.publish.publish`): journal written, and after the first rename
PUBLISH_POINTS = ("publish-switch", "publish-rename")
POINTS = BUILD_POINTS + WRITE_POINTS + PUBLISH_POINTS

Injector = Callable[[str, "Callable[[], None] | None"], None]


class KillAt:
    """SIGKILL this process the ``n``-th time it reaches ``point``; with ``once_file``, only if it is the first
    process to create that file. ``before_kill()`` (given by the point) runs just before the kill."""

    def __init__(self, point: str, n: int = 1, once_file: str | None = None):
        if point not in POINTS:
            from .errors import InvalidChoiceError

            raise InvalidChoiceError("fault point", point, POINTS)
        self.point, self.n, self.once_file, self.count = point, n, once_file, 0

    @classmethod
    def from_spec(cls, spec: str, once_file: str | None = None) -> KillAt:
        """From ``ZOO_FAULT_POINT``'s ``<point>[:<n>]``."""
        point, _, n = spec.partition(":")
        return cls(point.strip(), int(n or 1), once_file)

    def __call__(self, point: str, before_kill: Callable[[], None] | None = None) -> None:
        if point != self.point:
            return
        self.count += 1
        if self.count != self.n:
            return
        if self.once_file:
            try:
                os.close(os.open(self.once_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            except FileExistsError:
                return
        if before_kill is not None:
            before_kill()
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


_injector: Injector | None = None
_settings_read = False


def _active() -> Injector | None:
    global _injector, _settings_read
    if not _settings_read:
        _settings_read = True
        s = _settings.current()
        if s.fault_point and _injector is None:
            _injector = KillAt.from_spec(s.fault_point, s.fault_once)
    return _injector


def fault_point(point: str, before_kill: Callable[[], None] | None = None) -> None:
    """Mark a named point: a no-op unless an injector is installed (see the module doc)."""
    injector = _active()
    if injector is not None:
        injector(point, before_kill)


@contextlib.contextmanager
def installed(injector: Injector) -> Iterator[Injector]:
    """Run a ``with`` block with ``injector`` called at every fault point (tests)."""
    global _injector
    _active()
    prev, _injector = _injector, injector
    try:
        yield injector
    finally:
        _injector = prev
