"""Command line: ``uar-stream run | train | ...``. Errors a user can cause print as one line."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from uar_stream.errors import UarError

log = logging.getLogger("uar_stream")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(prog="uar-stream", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="cmd", required=True)
    handlers = {}
    for module in _COMMAND_MODULES:
        handlers.update(importlib.import_module(module, __package__).register(sub))
    a = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return handlers[a.cmd](a)
    except UarError as e:
        print(f"uar-stream {a.cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"uar-stream {a.cmd}: interrupted", file=sys.stderr)
        return 130


#: Modules that add subcommands: each has ``register(subparsers) -> {name: handler}``;
#: a handler takes the parsed args and returns the exit code.
_COMMAND_MODULES = (".run", ".train", ".evaluate", ".engines")

if __name__ == "__main__":
    sys.exit(main())
