"""The package's one logger for diagnostics (``logging.getLogger("zoo")``): notes and warnings about what a
build or a packaging did (a stale claim taken over, a damaged chunk retrained, a card without a picture).

Its records go to the standard error of the moment, as their bare message, through its own handler (added on
first use: importing the package configures nothing); it does not propagate, so an application's logging
setup shows each record once. ``logging.getLogger("zoo").setLevel(logging.ERROR)`` silences it. Things the
user must change are errors (:mod:`zoo.errors`), not log records.
"""

from __future__ import annotations

import logging
import sys

NAME = "zoo"


class _CurrentStderr(logging.StreamHandler):
    """A handler writing to ``sys.stderr`` as it is at each record (redirections and test captures included)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler sets it once; the current sys.stderr is always used
        pass


def logger() -> logging.Logger:
    """The ``zoo`` logger, with its standard-error handler."""
    log = logging.getLogger(NAME)
    if not any(isinstance(h, _CurrentStderr) for h in log.handlers):
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        if log.level == logging.NOTSET:
            log.setLevel(logging.INFO)
        log.propagate = False
    return log
