"""Subcommands of this stage (registered in uar_stream/cli.py)."""
from __future__ import annotations


def register(sub) -> dict:
    """Add this module's subcommands to ``sub``; return {name: handler(args) -> exit code}."""
    return {}
