"""PyTorch's CPU SGEMM, timed the same way as `ManagedTensor.Bench sgemm`: square C = A @ B in float32,
warm-up, then 5 timed reps of ~0.3 s; prints "size best-gflops median-gflops" per size.
Usage: python3 bench/torch_matmul.py [--threads T] [sizes...]"""
import sys
import time

import torch

args = sys.argv[1:]
threads = 2
if args[:1] == ["--threads"]:
    threads = int(args[1])
    args = args[2:]
torch.set_num_threads(threads)
sizes = [int(s) for s in args] or [256, 512, 1024, 2048]
for n in sizes:
    g = torch.Generator().manual_seed(1)
    a = torch.rand(n, n, generator=g) - 0.5
    b = torch.rand(n, n, generator=g) - 0.5
    c = torch.empty(n, n)
    flops = 2.0 * n ** 3
    inner = max(1, int(3e10 / flops))
    for _ in range(2):
        torch.matmul(a, b, out=c)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(inner):
            torch.matmul(a, b, out=c)
        times.append((time.perf_counter() - t0) / inner)
    times.sort()
    print(f"{n} {flops / times[0] / 1e9:.1f} {flops / times[len(times) // 2] / 1e9:.1f}", flush=True)
