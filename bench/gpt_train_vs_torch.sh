#!/usr/bin/env bash
# GPT training speed, ManagedTensor vs PyTorch CPU (Debian's python3-torch over OpenBLAS), side by side on
# this machine: nanoGPT's CPU recipe for character-level tiny Shakespeare (4 layers, 4 heads, 128 embd,
# block 64, batch 12, AdamW, grad clip 1.0). Both time full training steps (batch, forward, backward,
# clip, AdamW) and report the median after 10 warm-up steps; PyTorch on 2 threads, our engine on this
# machine's cores (2). The runners alternate for ROUNDS rounds (default 2); the better round counts.
# Usage: [ROUNDS=n] bench/gpt_train_vs_torch.sh [iters]
set -euo pipefail
cd "$(dirname "$0")/.."
iters=${1:-200}

if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    echo "installing python3-torch and libopenblas0-pthread..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch libopenblas0-pthread >/dev/null
fi
dotnet build -c Release bench -v q -nologo >/dev/null

field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }
best_ours="" best_torch=""
for ((round = 1; round <= ${ROUNDS:-2}; round++)); do
    ours=$(dotnet bench/bin/Release/net10.0/ManagedTensor.Bench.dll gpt-train --iters "$iters")
    torch=$(/usr/bin/python3 bench/torch_gpt_train.py --threads 2 --iters "$iters")
    echo "$ours"
    echo "$torch"
    o=$(echo "$ours" | field ms_per_iter); t=$(echo "$torch" | field ms_per_iter)
    if [ -z "$best_ours" ] || awk "BEGIN{exit !($o < $best_ours)}"; then best_ours=$o; fi
    if [ -z "$best_torch" ] || awk "BEGIN{exit !($t < $best_torch)}"; then best_torch=$t; fi
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
awk -v o="$best_ours" -v t="$best_torch" 'BEGIN {
    printf "%-8s %10s %10s\n", "", "ms/iter", "tokens/s"
    printf "%-8s %10.2f %10.0f\n", "ours", o, 768000 / o
    printf "%-8s %10.2f %10.0f\n", "torch", t, 768000 / t
    printf "speed-up (torch ms / ours ms): %.2fx\n", t / o }'
