"""CUDA graphs for the torch backend: one captured graph per batch bucket.

A CUDA graph replays a fixed sequence of kernels on fixed buffers, which removes the
per-layer launch overhead that dominates a small CNN at small batches. Shapes must be
fixed, so batches are padded up to the next bucket (1, 8, 16, 32, 64 by default, plus
``max_batch`` if it is not one of them); padded rows are zeros and are dropped from the
result. Rows never interact (BatchNorm is in eval mode), so padding does not change them.
"""
from __future__ import annotations

import bisect
from typing import Callable

import torch

#: Batch sizes that get a captured graph (each capped by the engine's max_batch).
BUCKETS = (1, 8, 16, 32, 64)


def buckets_for(max_batch: int, buckets: tuple[int, ...] = BUCKETS) -> tuple[int, ...]:
    """The buckets an engine with this max_batch captures, ascending; the last is max_batch."""
    return tuple(sorted({b for b in buckets if b < max_batch} | {max_batch}))


class CudaGraphRunner:
    """Calls ``fn(x (b,1,S,S) cuda float32) -> tuple of cuda tensors`` through CUDA graphs.

    Every bucket is captured at construction (a new bucket in mid-stream would stall one
    frame for the capture). ``__call__`` takes n <= max bucket rows and returns the outputs
    sliced to n rows; they are views of static buffers, valid until the next call.
    """

    def __init__(self, fn: Callable[[torch.Tensor], tuple[torch.Tensor, ...]], input_size: int,
                 buckets: tuple[int, ...], device: torch.device):
        self.buckets = tuple(sorted(buckets))
        self.device = device
        self._inputs: dict[int, torch.Tensor] = {}
        self._outputs: dict[int, tuple[torch.Tensor, ...]] = {}
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}
        for b in self.buckets:
            self._capture(fn, b, input_size)

    def _capture(self, fn, b: int, size: int) -> None:
        x = torch.zeros((b, 1, size, size), device=self.device)
        # Warm up on a side stream (cuDNN picks its kernels, lazy init runs) before capture,
        # as torch's CUDA graph docs require.
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                fn(x)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = fn(x)
        self._inputs[b], self._outputs[b], self._graphs[b] = x, tuple(out), graph

    def bucket(self, n: int) -> int:
        """The smallest bucket holding n rows."""
        i = bisect.bisect_left(self.buckets, n)
        if i == len(self.buckets):
            raise ValueError(f"batch of {n} exceeds the largest CUDA graph bucket {self.buckets[-1]}")
        return self.buckets[i]

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Outputs for the n rows of ``x``: views of static buffers, valid until the next call."""
        n = x.shape[0]
        b = self.bucket(n)
        static = self._inputs[b]
        static[:n].copy_(x, non_blocking=True)
        if n < b:
            static[n:].zero_()
        self._graphs[b].replay()
        return tuple(o[:n] for o in self._outputs[b])
