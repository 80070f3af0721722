#!/usr/bin/env python3
"""PyTorch CPU attention timings in the format of `ManagedTensor.Bench attention-cpu`:
"B H T D fwd-ms fwdbwd-ms fwd-GFLOP/s fwdbwd-GFLOP/s", causal, float32, best of 5 reps of ~0.2 s after a
1 s warm-up. Uses F.scaled_dot_product_attention where torch has it (2.0+), else nanoGPT's math path
(q k^T, masked_fill, softmax, @ v), which is what nanoGPT runs on such a torch.

Usage: bench/attention_cpu_vs_torch.py [--threads N] [B H T D]...
"""
import math
import sys
import time

import torch
import torch.nn.functional as F


def attention(q, k, v):
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    t = q.shape[-2]
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.shape[-1]))
    mask = torch.ones(t, t, dtype=torch.bool).tril()
    att = att.masked_fill(~mask, float("-inf")).softmax(-1)
    return att @ v


def best_time(body):
    end = time.perf_counter() + 1.0
    while time.perf_counter() < end:
        body()
    best = float("inf")
    for _ in range(5):
        n, start = 0, time.perf_counter()
        while True:
            body()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= 0.2:
                break
        best = min(best, elapsed / n)
    return best


def main(argv):
    if len(argv) >= 2 and argv[0] == "--threads":
        torch.set_num_threads(int(argv[1]))
        argv = argv[2:]
    nums = [int(a) for a in argv]
    shapes = [nums[i:i + 4] for i in range(0, len(nums) - 3, 4)] or [[12, 4, 64, 32], [64, 6, 256, 64]]
    for b, h, t, d in shapes:
        g = torch.Generator().manual_seed(1)
        q, k, v = (torch.randn(b, h, t, d, generator=g, requires_grad=True) for _ in range(3))
        dout = torch.randn(b, h, t, d, generator=g)

        def fwd():
            with torch.no_grad():
                attention(q, k, v)

        def fwd_bwd():
            out = attention(q, k, v)
            torch.autograd.grad(out, (q, k, v), dout)

        tf, tb = best_time(fwd), best_time(fwd_bwd)
        flops = 4.0 * b * h * t * t * d / 2
        print(f"{b} {h} {t} {d} {tf * 1e3:.3f} {tb * 1e3:.3f} {flops / tf / 1e9:.1f} {3.5 * flops / tb / 1e9:.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
