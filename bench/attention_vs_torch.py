#!/usr/bin/env python3
"""Fused attention: ManagedTensor (`mt attention-bench`) against PyTorch's scaled_dot_product_attention
with the flash backend, on one GPU, in one run.

Shapes (the defaults): batch 4, 16 heads, T in {512, 1k, 2k, 4k, 8k}, head dim 64 and 128, causal, bf16.
Both sides time the same way: 3 warm-up calls, then the best of 5 runs of at least --seconds / 5 each,
synchronizing the device at both ends (and every 8 calls, so the clock measures the device, not the
queue). Forward = the attention call; forward + backward = the call, then the gradients of q, k, v
for a given dout (torch.autograd.grad, nothing accumulated). FLOPs as flash-attention counts them:
4 B H T^2 D, halved when causal, and 2.5 times that for the backward.

Usage (GPU host, the self-contained bundle unpacked; no .NET SDK needed):
    python3 bench/attention_vs_torch.py --mt ./mt            # speed table with ratios
    python3 bench/attention_vs_torch.py --mt ./mt --memory   # peak memory of fwd+bwd for T = 1k..16k
--mt defaults to $MT, then `mt` on PATH. `mt attention-bench` first checks its kernels against the CPU
op on the device (check PASS/FAIL lines); the script stops if any fails.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

DTYPES = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}


def flash_context():
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        return sdpa_kernel(SDPBackend.FLASH_ATTENTION)
    except ImportError:  # torch < 2.3
        return torch.backends.cuda.sdp_kernel(enable_flash=True, enable_math=False, enable_mem_efficient=False)


def best_time(body, seconds):
    for _ in range(3):
        body()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(5):
        n, start = 0, time.perf_counter()
        while True:
            body()
            n += 1
            if n % 8 == 0:
                torch.cuda.synchronize()
            if n >= 3 and time.perf_counter() - start >= seconds / 5:
                break
        torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start) / n)
    return best


def inputs(a, t, d, dtype):
    g = torch.Generator(device="cuda").manual_seed(1)
    mk = lambda h: torch.randn(a.batch, h, t, d, device="cuda", dtype=dtype, generator=g)
    q, k, v, dout = mk(a.heads), mk(a.kv_heads), mk(a.kv_heads), mk(a.heads)
    for x in (q, k, v):
        x.requires_grad_(True)
    return q, k, v, dout


def sdpa(q, k, v, causal):
    if k.shape[1] != q.shape[1]:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


def torch_speed(a, t, d, dtype):
    q, k, v, dout = inputs(a, t, d, dtype)
    causal = not a.full
    with flash_context():
        def fwd():
            with torch.no_grad():
                sdpa(q, k, v, causal)

        def fwd_bwd():
            out = sdpa(q, k, v, causal)
            torch.autograd.grad(out, (q, k, v), dout)

        tf, tb = best_time(fwd, a.seconds), best_time(fwd_bwd, a.seconds)
    flops = 4.0 * a.batch * a.heads * t * t * d / (2 if causal else 1)
    return flops / tf / 1e12, 3.5 * flops / tb / 1e12, tf * 1e3, tb * 1e3


def torch_memory(a, t, d, dtype):
    q, k, v, dout = inputs(a, t, d, dtype)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    with flash_context():
        out = sdpa(q, k, v, not a.full)
        grads = torch.autograd.grad(out, (q, k, v), dout)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    produced = out.numel() * out.element_size() + sum(g.numel() * g.element_size() for g in grads)
    return peak / 2**20, (peak - before - produced) / 2**20


def run_mt(a, extra):
    mt = a.mt or os.environ.get("MT") or shutil.which("mt")
    if not mt:
        sys.exit("no mt executable: pass --mt PATH (the bundle's mt) or set MT")
    cmd = [mt, "attention-bench", "--device", a.device, "--dtype", a.dtype, "--batch", str(a.batch),
           "--heads", str(a.heads), "--kv-heads", str(a.kv_heads), "--head-dim", ",".join(map(str, a.head_dim)),
           "--seconds", str(a.seconds)] + (["--full"] if a.full else []) + extra
    print("$ " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    rows = []
    for line in proc.stdout.splitlines():
        if line.startswith("check"):
            print(line)
        fields = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
        if line.startswith(("attention ", "memory ")):
            rows.append(fields)
    if proc.returncode != 0 or any(l.startswith("check FAIL") for l in proc.stdout.splitlines()):
        sys.stderr.write(proc.stdout + proc.stderr)
        sys.exit(f"mt attention-bench failed (exit {proc.returncode})")
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mt", help="path to the mt executable (default: $MT, then PATH)")
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--dtype", default="bf16", choices=DTYPES)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--kv-heads", type=int, default=0, help="kv heads (GQA); default: --heads")
    p.add_argument("--seq", type=int, nargs="+")
    p.add_argument("--head-dim", type=int, nargs="+", default=[64, 128])
    p.add_argument("--full", action="store_true", help="no causal mask")
    p.add_argument("--seconds", type=float, default=0.5)
    p.add_argument("--memory", action="store_true", help="peak memory of forward + backward instead of speed")
    a = p.parse_args()
    a.kv_heads = a.kv_heads or a.heads
    dtype = DTYPES[a.dtype]
    torch.backends.cuda.matmul.allow_tf32 = False
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}; B={a.batch} H={a.heads} Hkv={a.kv_heads} "
          f"{a.dtype} {'full' if a.full else 'causal'}", flush=True)

    if a.memory:
        seqs = a.seq or [1024, 2048, 4096, 8192, 16384]
        rows = run_mt(a, ["--memory", "--seq", ",".join(map(str, seqs))])
        print(f"{'D':>4} {'T':>6} {'ours peak MiB':>14} {'ours extra MiB':>15} {'extra B/token':>14} "
              f"{'torch peak MiB':>15} {'torch extra MiB':>16} {'T x T fp32 MiB':>15}")
        for r in rows:
            t, d = int(r["T"]), int(r["D"])
            tp, te = torch_memory(a, t, d, dtype)
            print(f"{d:>4} {t:>6} {float(r['peak_mib']):>14.1f} {float(r['extra_mib']):>15.2f} "
                  f"{float(r['extra_bytes_per_token']):>14.0f} {tp:>15.1f} {te:>16.2f} {float(r['score_matrix_would_be_mib']):>15.0f}")
        print("extra = peak - (inputs live before) - (out and gradients): attention's own memory; linear in T "
              "means extra B/token stays flat as T doubles")
        return

    seqs = a.seq or [512, 1024, 2048, 4096, 8192]
    rows = run_mt(a, ["--seq", ",".join(map(str, seqs))])
    print(f"{'D':>4} {'T':>6} {'path':>9} | {'fwd ours':>9} {'torch':>8} {'ratio':>6} | {'fwd+bwd ours':>12} {'torch':>8} {'ratio':>6}   (TFLOP/s)")
    for r in rows:
        t, d = int(r["T"]), int(r["D"])
        tf, tb, _, _ = torch_speed(a, t, d, dtype)
        of, ob = float(r["fwd_tflops"]), float(r["fwdbwd_tflops"])
        print(f"{d:>4} {t:>6} {r['path'] + '/' + r['bwd_path']:>9} | {of:>9.2f} {tf:>8.2f} {of / tf:>6.2f} | {ob:>12.2f} {tb:>8.2f} {ob / tb:>6.2f}")


if __name__ == "__main__":
    main()
