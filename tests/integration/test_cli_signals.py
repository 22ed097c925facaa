"""A signal that arrives after the command has finished (while Python runs its exit hooks)
ends the program with 128 + signal and no traceback: the outputs are already final."""
from __future__ import annotations

import subprocess
import sys

import pytest

# An exit hook registered after the program started runs before uar-stream's own: it plays a
# late Ctrl-C landing while a library's hook (a thread join, a temp-dir cleanup) is running.
_LATE = """
import atexit, os, signal, sys, time
from uar_stream.cli.main import entry
def late():
    os.kill(os.getpid(), signal.{sig})
    time.sleep(2)
    print("hook finished", flush=True)
code = entry()
atexit.register(late)
sys.exit(code)
"""


@pytest.mark.parametrize("sig,code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_late_signal_ends_the_program_quietly(sig, code):
    p = subprocess.run([sys.executable, "-c", _LATE.format(sig=sig), "--help"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == code, p.stderr
    assert "Traceback" not in p.stderr and "KeyboardInterrupt" not in p.stderr
    assert "usage: uar-stream" in p.stdout and "hook finished" not in p.stdout


def test_without_the_late_signal_the_commands_code_stands():
    p = subprocess.run([sys.executable, "-m", "uar_stream.cli", "--help"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0 and "usage: uar-stream" in p.stdout
