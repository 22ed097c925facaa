"""Benchmark the engines: faces/s and latency per backend and batch, fused vs looped members.

Thin wrapper over ``uar_stream.backends.bench`` (same as ``uar-stream bench-engines``):

    python tools/bench_engines.py --model /tmp/quickmodel --random-members 5 --json out/bench.json
"""
import sys

from uar_stream.backends.bench import main

if __name__ == "__main__":
    sys.exit(main())
