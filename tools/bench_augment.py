"""How much of a training step the live-footage augmentation costs, measured side by side.

    python tools/bench_augment.py --batch 128 --repeat 7

Prints the median milliseconds of ``live_augment`` on one batch and of one forward+backward step
of one member of the CNN (bf16 autocast, channels-last, as the trainer runs it), and their ratio.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from uar_stream.model.fused_cnn import CnnArch, FusedCnn
from uar_stream.model.preprocess import PIXEL_MEAN, PIXEL_STD
from uar_stream.training.augment import LiveConfig, live_augment


def _median_ms(f, repeat: int) -> float:
    f()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    """Time both on the same batch, alternating, and print the medians and the ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(a.batch, 1, 6, 6, generator=g), size=(48, 48),
                                        mode="bicubic")
    x = ((x.clamp(0, 1) - PIXEL_MEAN) / PIXEL_STD).float()
    net = FusedCnn(1, 8, CnnArch()).to(memory_format=torch.channels_last)  # one member at a time

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            net(x.contiguous(memory_format=torch.channels_last)).float().sum().backward()

    aug = _median_ms(lambda: live_augment(x, LiveConfig(), g, PIXEL_MEAN, PIXEL_STD), a.repeat)
    train = _median_ms(step, a.repeat)
    print(f"batch {a.batch}: augment {aug:.1f} ms, step {train:.1f} ms, augment/step {aug / train:.2f}")


if __name__ == "__main__":
    main()
