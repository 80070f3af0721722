"""PyTorch's side of `ManagedTensor.Bench conv`: the same shapes (bench/ConvRunner.cs) through
torch.nn.functional.conv2d and its two backward ops (torch.nn.grad.conv2d_input / conv2d_weight, which call the
same convolution backward as autograd), as GFLOP/s (wall) and process CPU ms per call, best of --reps after one
warm-up.

    OMP_WAIT_POLICY=PASSIVE taskset -c 0 /usr/bin/python3 bench/conv_torch.py --threads 1
"""
import argparse
import time

import torch
import torch.nn.functional as F

# (net, N, C, H, W, O, K, stride, pad): keep in step with ConvRunner.Shapes
SHAPES = [
    ("yolo", 2, 3, 640, 640, 16, 3, 2, 1),
    ("yolo", 2, 16, 320, 320, 32, 3, 2, 1),
    ("yolo", 2, 16, 160, 160, 16, 3, 1, 1),
    ("yolo", 2, 32, 80, 80, 32, 3, 1, 1),
    ("yolo", 2, 64, 80, 80, 64, 3, 1, 1),
    ("yolo", 2, 64, 80, 80, 80, 3, 1, 1),
    ("yolo", 2, 80, 80, 80, 80, 3, 1, 1),
    ("yolo", 2, 64, 40, 40, 64, 3, 1, 1),
    ("yolo", 2, 128, 20, 20, 128, 3, 1, 1),
    ("yolo", 2, 256, 20, 20, 64, 3, 1, 1),
    ("yolo", 2, 64, 80, 80, 64, 3, 2, 1),
    ("yolo", 2, 32, 160, 160, 64, 3, 2, 1),
    ("yolo", 2, 64, 80, 80, 128, 3, 2, 1),
    ("yolo", 2, 128, 40, 40, 256, 3, 2, 1),
    ("yolo", 2, 128, 40, 40, 128, 3, 2, 1),
    ("yolo", 2, 32, 160, 160, 32, 1, 1, 0),
    ("yolo", 2, 48, 160, 160, 32, 1, 1, 0),
    ("yolo", 2, 128, 80, 80, 64, 1, 1, 0),
    ("unet", 64, 32, 32, 32, 32, 3, 1, 1),
    ("unet", 64, 64, 16, 16, 64, 3, 1, 1),
    ("unet", 64, 128, 16, 16, 64, 3, 1, 1),
    ("unet", 64, 64, 8, 8, 64, 3, 1, 1),
    ("unet", 64, 32, 32, 32, 1, 3, 1, 1),
]


def timed(op, reps):
    op()
    best, best_cpu = float("inf"), float("inf")
    for _ in range(reps):
        c0, t0 = time.process_time(), time.perf_counter()
        op()
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best, best_cpu * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__} threads={args.threads}; per op: GFLOP/s (process CPU ms per call)")
    for net, n, c, h, w, o, k, s, p in SHAPES:
        name = f"[{n},{c},{h},{w}]x[{o},{c},{k},{k}] s{s}"
        if args.only and net != args.only and not name.startswith(args.only):
            continue
        x = torch.rand(n, c, h, w)
        wt = torch.rand(o, c, k, k)
        b = torch.rand(o)
        y = F.conv2d(x, wt, b, stride=s, padding=p)
        dy = torch.rand_like(y)
        flops = 2.0 * n * o * c * k * k * y.shape[2] * y.shape[3]
        cells = []
        with torch.no_grad():
            for op in (lambda: F.conv2d(x, wt, b, stride=s, padding=p),
                       lambda: torch.nn.grad.conv2d_input(x.shape, wt, dy, stride=s, padding=p),
                       lambda: torch.nn.grad.conv2d_weight(x, wt.shape, dy, stride=s, padding=p)):
                t, cpu = timed(op, args.reps)
                cells.append(f"{flops / t / 1e9:6.1f} ({cpu:6.1f})")
        print(f"{name:<34} {'torch':<7} {cells[0]:>16} {cells[1]:>16} {cells[2]:>16}", flush=True)


if __name__ == "__main__":
    main()
