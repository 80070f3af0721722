#!/usr/bin/env python3
"""Quantized matmul: ManagedTensor's QMatMul kernels (Q4_0/Q8_0/Q4_K weights, fp16 activations) against PyTorch fp16
(torch.nn.functional.linear, cuBLAS) on the same GPU and the same Llama shapes, in one run.

Runs `mt bench qmatmul --device cuda --json ours.json` (the self-contained bundle; or --ours-json to reuse a result),
then times F.linear(x, W) in fp16 for every (M, N, K) it reports: M = 1 is a decoded token (the GEMV: the weights'
bytes are the time), M = 512 a prefill chunk (the GEMM). Timing: CUDA events around N calls after warm-up.
Prints per shape ms, GB/s of weights and ours/torch speed, then the matmul-only time of one decoded token (each
matrix times its count per token) for both: Q4_0 reads 4.5 bits per weight against fp16's 16, so at the memory
bound ours should be up to 3.6x faster. Writes the table to --out (markdown).

    python3 bench/qmatmul_vs_torch.py --mt ./mt-linux-x64/mt --quick --out QMATMUL_GPU.md
"""
import argparse, json, subprocess

import torch
import torch.nn.functional as F


def torch_ms(m, n, k, min_ms=200.0):
    g = torch.Generator(device="cuda").manual_seed(0)
    x = (torch.rand((m, k), device="cuda", generator=g) * 2 - 1).half()
    w = ((torch.rand((n, k), device="cuda", generator=g) * 2 - 1) * 0.02).half()
    for _ in range(3):
        F.linear(x, w)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record(); F.linear(x, w); end.record(); torch.cuda.synchronize()
    iters = max(5, int(min_ms / max(start.elapsed_time(end), 1e-3)))
    start.record()
    for _ in range(iters):
        F.linear(x, w)
    end.record(); torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mt", default="./mt", help="the mt executable (self-contained bundle)")
    ap.add_argument("--ours-json", help="reuse an earlier `mt bench qmatmul --json` result instead of running mt")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="TinyLlama-1.1B in Q4_0 only")
    ap.add_argument("--out", default="QMATMUL_GPU.md")
    args = ap.parse_args()

    path = args.ours_json
    if path is None:
        path = "qmatmul_ours.json"
        cmd = [args.mt, "bench", "qmatmul", "--device", args.device, "--json", path] + (["--quick"] if args.quick else [])
        print("#", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    ours = json.load(open(path))

    lines = [f"# QMatMul on {ours['gpu']} (peak {ours['peak_gbps']:.0f} GB/s; torch {torch.__version__} fp16, {torch.cuda.get_device_name()})", "",
             "| model | format | matrix | M | N | K | ours ms | ours GB/s | of peak | torch fp16 ms | torch GB/s | ours/torch speed | max rel err |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    cache, token = {}, {}
    for r in ours["results"]:
        key = (r["M"], r["N"], r["K"])
        if key not in cache:
            cache[key] = torch_ms(*key)
        t_ms = cache[key]
        t_gbps = 2.0 * r["N"] * r["K"] / (t_ms * 1e6)
        lines.append(f"| {r['Model']} | {r['Format']} | {r['Matrix']} | {r['M']} | {r['N']} | {r['K']} | {r['Ms']:.4f} | {r['GBps']:.0f} | "
                     f"{r['PeakFraction']:.0%} | {t_ms:.4f} | {t_gbps:.0f} | {t_ms / r['Ms']:.2f}x | {r['MaxRelError']:.1e} |")
        if r["M"] == 1:
            o, t = token.get((r["Model"], r["Format"]), (0.0, 0.0))
            token[(r["Model"], r["Format"])] = (o + r["Ms"] * r["Count"], t + t_ms * r["Count"])
    lines.append("")
    for (model, fmt), (o, t) in token.items():
        lines.append(f"- {model} decode, matmuls of one token: ours {fmt} {o:.3f} ms ({1000 / o:.0f} tok/s), "
                     f"torch fp16 {t:.3f} ms ({1000 / t:.0f} tok/s): {t / o:.2f}x")
    text = "\n".join(lines) + "\n"
    print(text)
    open(args.out, "w").write(text)


if __name__ == "__main__":
    main()
