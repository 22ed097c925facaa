"""Benchmark the engines: faces/s and latency per backend and batch, fused vs looped members.

The same as ``uar-stream bench-engines`` (options and code shared with it):

    python tools/bench_engines.py --model /tmp/quickmodel --random-members 5 --json out/bench.json
"""
import argparse
import logging
import sys

from uar_stream.backends.bench import run_from_args
from uar_stream.cli.engines import add_bench_arguments


def main(argv: list[str] | None = None) -> int:
    """Parse the bench-engines options and run the benchmark."""
    p = argparse.ArgumentParser(prog="bench_engines", description=__doc__.splitlines()[0])
    add_bench_arguments(p)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_from_args(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
