"""Command line: ``uar-stream run | train | ...``. Errors a user can cause print as one line.

stderr carries warnings, errors and (on a terminal) the progress bar; results go to stdout.
``--verbose`` (before or after the command) adds debug logs and third-party start-up lines.
"""
from __future__ import annotations

import argparse
import atexit
import importlib
import logging
import os
import signal
import sys
import threading

from uar_stream import quiet
from uar_stream.cli.options import OneLineParser
from uar_stream.errors import UarError

log = logging.getLogger("uar_stream")


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command, return its exit code."""
    parser = OneLineParser(prog="uar-stream", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help=_VERBOSE_HELP)
    sub = parser.add_subparsers(dest="cmd", required=True)
    handlers = {}
    for module in _COMMAND_MODULES:
        handlers.update(importlib.import_module(module, __package__).register(sub))
    for p in sub.choices.values():  # SUPPRESS: absent after the command keeps the value given before it
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=_VERBOSE_HELP)
    try:
        a = parser.parse_args(argv)
    except SystemExit as e:  # a bad option (one line already printed) or --help: an exit code
        return e.code if isinstance(e.code, int) else 2
    _setup_logging(a.cmd, a.verbose)
    try:
        return handlers[a.cmd](a)
    except UarError as e:
        print(f"uar-stream {a.cmd}: error: {_redact(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"uar-stream {a.cmd}: interrupted", file=sys.stderr)
        return 130
    except (OSError, MemoryError) as e:  # the machine's limits, not a bug: one line too
        why = getattr(e, "strerror", None) or type(e).__name__
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"uar-stream {a.cmd}: error: {_redact(where)}{why}", file=sys.stderr)
        return 2


def entry() -> int:
    """The ``uar-stream`` program: :func:`main`, then a quiet end. Outputs are final once the
    command returns, so a late Ctrl-C or SIGTERM (e.g. a second one while the interpreter shuts
    down its threads) ends the process at once with 128 + signal, not a KeyboardInterrupt
    traceback from an atexit hook. Not installed by :func:`main` itself: embedders keep theirs."""
    atexit.register(_ignore_signals_from_here)  # before main() imports the libraries: runs last
    try:
        code = main()
    except KeyboardInterrupt:  # a second signal in the instant the run's own handler is restored
        code = 130
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _exit_now)
    return code


def _ignore_signals_from_here() -> None:
    # Registered before any library's hook, so it runs after them all: past this point Python
    # resets the handlers it set to the default (a late signal would kill with -2) but keeps SIG_IGN.
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)


def _exit_now(signum, _frame) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, RuntimeError, ValueError):  # a closed pipe or a reentrant flush
            pass
    os._exit(128 + signum)


def _setup_logging(cmd: str, verbose: bool) -> None:
    quiet.set_verbose(verbose)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for h in logging.getLogger().handlers:  # every log line, ours or a library's, redacted
        h.addFilter(redact_log_record)
    logging.getLogger().setLevel(logging.INFO if verbose else logging.WARNING)
    if verbose:
        level = logging.DEBUG
    else:
        level = logging.WARNING if cmd in _QUIET_COMMANDS else logging.INFO
    log.setLevel(level)


def _redact(text: str) -> str:
    if "://" not in text and "%3a%2f%2f" not in text.lower():
        return text  # no URL: skip importing the pipeline (and OpenCV) for a message
    from uar_stream.pipeline.sources import redact

    return redact(text)


def redact_log_record(record: logging.LogRecord) -> bool:
    """A logging filter: the record's message with every URL's credentials hidden."""
    msg = record.getMessage()
    clean = _redact(msg)
    if clean != msg:
        record.msg, record.args = clean, ()
    return True


_VERBOSE_HELP = "debug logs, and third-party start-up messages that are hidden by default"

#: Commands whose progress is the bar and whose result is the stdout summary. The others are
#: long batch jobs (train, evaluate, ...) whose INFO lines are their progress report.
_QUIET_COMMANDS = ("run",)

#: Modules that add subcommands: each has ``register(subparsers) -> {name: handler}``;
#: a handler takes the parsed args and returns the exit code.
_COMMAND_MODULES = (".run", ".train", ".evaluate", ".engines", ".serve")

if __name__ == "__main__":
    sys.exit(entry())
