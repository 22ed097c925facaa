"""``python -m uar_stream.cli``: the same as ``uar-stream``."""
import sys

from uar_stream.cli.main import entry

sys.exit(entry())
