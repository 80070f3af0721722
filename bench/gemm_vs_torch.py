#!/usr/bin/env python3
"""GEMM: ManagedTensor's ILGPU kernels against torch.matmul (cuBLAS) on the same GPU, in one run.

Runs `mt bench gemm --device cuda --json ours.json` (the self-contained bundle; or --ours-json to reuse a
result), then times torch.matmul on every problem it reports with the same shapes, layouts and dtypes:
fp32 with TF32 off (torch.backends.cuda.matmul.allow_tf32 = False) and bf16 (fp32 accumulation).
Timing: CUDA events around N launches after warm-up. Prints TFLOP/s and ours/cuBLAS ratios and checks
the goals (fp32 >= 0.9x and bf16 >= 0.7x at 4096^3). Writes the combined table to --out (markdown).

    python3 bench/gemm_vs_torch.py --mt ./mt-linux-x64/mt --out bench/GEMM_GPU.md
"""
import argparse, json, subprocess, sys

import torch


def torch_ms(dtype, layout, m, n, k, min_ms=300.0):
    dt = torch.float32 if dtype == "fp32" else torch.bfloat16
    g = torch.Generator(device="cuda").manual_seed(0)
    a = torch.rand((k, m) if layout[0] == "T" else (m, k), device="cuda", dtype=dt, generator=g) * 2 - 1
    b = torch.rand((n, k) if layout[1] == "T" else (k, n), device="cuda", dtype=dt, generator=g) * 2 - 1
    opa = a.t() if layout[0] == "T" else a
    opb = b.t() if layout[1] == "T" else b
    out = torch.empty((m, n), device="cuda", dtype=dt)
    for _ in range(3):
        torch.matmul(opa, opb, out=out)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record(); torch.matmul(opa, opb, out=out); end.record(); torch.cuda.synchronize()
    iters = max(3, int(min_ms / max(start.elapsed_time(end), 1e-3)))
    start.record()
    for _ in range(iters):
        torch.matmul(opa, opb, out=out)
    end.record(); torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mt", default="./mt", help="the mt executable (self-contained bundle)")
    ap.add_argument("--ours-json", help="reuse an earlier `mt bench gemm --json` result instead of running mt")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="GEMM_GPU.md")
    args = ap.parse_args()

    torch.backends.cuda.matmul.allow_tf32 = False      # fp32 means fp32 FMA on both sides
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False

    path = args.ours_json
    if path is None:
        path = "gemm_ours.json"
        cmd = [args.mt, "bench", "gemm", "--device", args.device, "--json", path] + (["--quick"] if args.quick else [])
        print("#", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    ours = json.load(open(path))

    lines = [f"# GEMM on {ours['gpu']} (torch {torch.__version__}, {torch.cuda.get_device_name()})", "",
             "| dtype | problem | layout | M | N | K | kernel | ours TFLOP/s | cuBLAS TFLOP/s | ratio | max rel err |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    cache, goals = {}, []
    for r in ours["results"]:
        key = (r["Dtype"], r["Layout"], r["M"], r["N"], r["K"])
        if key not in cache:
            cache[key] = torch_ms(*key)
        t_ms = cache[key]
        t_tf = 2e-9 * r["M"] * r["N"] * r["K"] / t_ms
        ratio = r["Tflops"] / t_tf
        lines.append(f"| {r['Dtype']} | {r['Name']} | {r['Layout']} | {r['M']} | {r['N']} | {r['K']} | {r['Kernel']} | "
                     f"{r['Tflops']:.1f} | {t_tf:.1f} | {ratio:.2f} | {r['MaxRelError']:.1e} |")
        if r["Name"] == "square4096" and r["Kernel"].startswith("select:"):
            want = 0.9 if r["Dtype"] == "fp32" else 0.7
            goals.append(f"{r['Dtype']} 4096: {ratio:.2f}x cuBLAS (goal {want}x): {'met' if ratio >= want else 'NOT met'}")
    lines += [""] + [f"- {g}" for g in goals]
    text = "\n".join(lines) + "\n"
    print(text)
    open(args.out, "w").write(text)


if __name__ == "__main__":
    sys.exit(main())
