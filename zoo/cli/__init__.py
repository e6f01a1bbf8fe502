"""The ``zoo`` command line: thin commands over the library functions users call from Python.

This module creates the typer ``app`` and registers the commands, in the order ``zoo --help`` lists them;
the commands live by group in :mod:`zoo.cli.build_commands` (plan, build, train, label, package, presets,
import-reference, kernels), :mod:`zoo.cli.read_commands` (info, ls, figures, diagnose, verify) and
:mod:`zoo.cli.hub_commands` (push, pull), :mod:`zoo.cli.explore_commands` (explore), their shared options in :mod:`zoo.cli.options` and the way they
report (consoles, the one error handler, tables) in :mod:`zoo.cli.report`, whose ``console`` every command prints
with.
"""

from __future__ import annotations

import os

# Before anything imports torch, whose OpenMP runtime reads this once: threads that wait for work sleep instead of
# spinning. On a machine shared with other processes a spinning thread burns the core its partner needs: `zoo
# build` took 1.7x the wall time and 1.8x the CPU time there (docs/benchmarks.md); on an idle machine the
# difference is within noise. Set here, at the top of the command line's package (the entry point of `zoo`,
# `python -m zoo` and `python -m zoo.cli`), not in the library: a user's own value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from typing import Annotated

import typer

from ..version import __version__
from . import build_commands, explore_commands, hub_commands, read_commands, report
from .report import outcome_table, print_outcomes

__all__ = ["app", "main", "outcome_table", "print_outcomes", "run"]

app = typer.Typer(help="Build, package, publish and load the RNN short-term-memory model zoo.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  cls=report.FriendlyErrors)


def _version(value: bool):
    if value:
        report.console.print(f"zoo {__version__}")
        raise typer.Exit()


@app.callback()
def main(ctx: typer.Context,
         version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False,
         debug: Annotated[bool, typer.Option("--debug", help="show the traceback of an error")] = False):
    """rnn-stm-zoo command line."""
    ctx.meta[report.DEBUG_KEY] = debug


app.command()(build_commands.build)
app.command()(build_commands.train)
app.command()(build_commands.label)
app.command()(build_commands.package)
app.command(name="plan")(build_commands.plan_)
app.command()(read_commands.verify)
app.command()(read_commands.info)
app.command(name="ls")(read_commands.ls_)
app.command()(build_commands.presets)
app.command(name="import-reference")(build_commands.import_reference_)
app.command()(hub_commands.push)
app.command()(hub_commands.pull)
app.command()(read_commands.figures)
app.command()(build_commands.kernels)
app.command()(build_commands.settings)
app.command()(read_commands.diagnose)
app.command()(explore_commands.explore)


def run():
    """The ``zoo`` command (the console script, ``python -m zoo`` and ``python -m zoo.cli``): run it, then exit
    without tearing the interpreter down."""
    try:
        app(prog_name="zoo")
        code = 0
    except SystemExit as done:  # how typer always ends: the command's exit status
        code = done.code
    exit_now(code)


def exit_now(code) -> None:
    """Exit with ``code`` (a ``SystemExit`` code) after the ``atexit`` handlers and flushing the standard
    streams, but without the interpreter's teardown of every module and object: with torch imported that
    teardown took 0.4-0.6 s of every command, and frees nothing the operating system would not. Where another
    non-daemon thread still runs, the ordinary exit (which waits for it) is used instead."""
    import atexit
    import sys
    import threading

    if isinstance(code, str):  # sys.exit("message"): printed, status 1
        print(code, file=sys.stderr)
        code = 1
    code = 0 if code is None else int(code)
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()  # logging's flush, temporary folders' cleanup, ... (what an ordinary exit runs)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more to write
            pass
    os._exit(code)
