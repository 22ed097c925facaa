"""Typed option values for the commands, checked like config keys: the message names the
option and what is allowed (argparse prints it as one line: ``uar-stream CMD: error: ...``)."""
from __future__ import annotations

import argparse
import math
from typing import Callable


def number(kind: type, lo: float | None = None, hi: float | None = None,
           allowed: str | None = None) -> Callable[[str], int | float]:
    """An argparse ``type=`` for an int or float in ``lo`` .. ``hi`` (either may be None);
    ``allowed`` words the range in the message (default: "lo to hi")."""
    word = "a whole number" if kind is int else "a number"
    if allowed is None:
        if lo is not None and hi is not None:
            allowed = f"{lo:g} to {hi:g}"
        elif lo is not None or hi is not None:
            allowed = f"{lo:g} or more" if lo is not None else f"at most {hi:g}"
        else:
            allowed = word  # the range is the config key's, checked when the config loads

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {word}; allowed: {allowed}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text} is not a finite number; allowed: {allowed}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{text} is out of range; allowed: {allowed}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``PROG: error: ...``, exit 2), like every
    other error of the CLI, instead of the usage block followed by the error."""

    def error(self, message: str):
        """Print ``PROG: error: message`` and exit 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
