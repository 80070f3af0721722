#!/usr/bin/env python3
"""The performance model's predictions (bench/kernel_model.json, written by bench/kernel_report.sh from the SASS
report, no GPU needed) next to what scripts/gpu_checks.sh measured on a GPU, and the model's error.

Measured: GEMM bf16 4096^3 from `mt bench gemm --json` (gemm_vs_torch.py's gemm_ours.json: the selected kernel,
layout NT when present) and causal attention forward at T = 2048, D = 64 and 128 from attention_vs_torch.py's log
(its table: D T path | fwd ours torch ratio | ...). The device's row of the model is chosen by the GPU's name.
Error = measured / predicted - 1 (negative: slower than the model). Exit 1 when nothing could be compared.

    python3 bench/model_vs_measured.py --model bench/kernel_model.json --gemm-json gemm_ours.json \
        --attention-log gpu-results/attention.log --gpu "NVIDIA H200"
"""
import argparse
import json
import re
import sys


def model_device(gpu_name):
    name = gpu_name.upper()
    for key, device in (("H200", "H200 SXM"), ("H100", "H100 SXM"), ("4070", "RTX 4070")):
        if key in name:
            return device
    return None


def measured_gemm(path):
    try:
        ours = json.load(open(path))
    except (OSError, ValueError):
        return None
    rows = [r for r in ours.get("results", []) if r["Dtype"] == "bf16" and r["Name"] == "square4096" and r["Kernel"].startswith("select:")]
    rows.sort(key=lambda r: r["Layout"] != "NT")
    return rows[0]["Tflops"] if rows else None


def measured_attention(path):
    """{D: (ours fwd TFLOP/s, torch fwd TFLOP/s)} at T = 2048."""
    found = {}
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return found
    for line in lines:
        m = re.match(r"\s*(\d+)\s+2048\s+\S+\s+\|\s+([\d.]+)\s+([\d.]+)", line)
        if m:
            found[int(m.group(1))] = (float(m.group(2)), float(m.group(3)))
    return found


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="bench/kernel_model.json")
    p.add_argument("--gemm-json", default="gemm_ours.json")
    p.add_argument("--attention-log")
    p.add_argument("--gpu", required=True, help="the GPU's name (nvidia-smi)")
    a = p.parse_args()

    device = model_device(a.gpu)
    if device is None:
        print(f"the model has no figures for {a.gpu} (it knows RTX 4070, H100 SXM, H200 SXM)")
        return 1
    predictions = [r for r in json.load(open(a.model)) if r["device"] == device]
    gemm = measured_gemm(a.gemm_json)
    attention = measured_attention(a.attention_log) if a.attention_log else {}

    print(f"model ({device}) vs measured on {a.gpu}, TFLOP/s")
    print(f"{'workload':<42} {'kernel':<28} {'predicted':>9} {'measured':>9} {'error':>7}  bound")
    compared = 0
    for r in predictions:
        w = r["workload"]
        measured = None
        if w.startswith("GEMM bf16 4096"):
            measured = gemm
        else:
            m = re.search(r"D(\d+)", w)
            if m and int(m.group(1)) in attention:
                measured = attention[int(m.group(1))][0]
        shown = f"{measured:9.1f} {measured / r['tflops'] - 1:+7.0%}" if measured else f"{'-':>9} {'-':>7}"
        print(f"{w:<42} {r['kernel']:<28} {r['tflops']:9.1f} {shown}  {r['bound']}")
        compared += measured is not None
    return 0 if compared else 1


if __name__ == "__main__":
    sys.exit(main())
