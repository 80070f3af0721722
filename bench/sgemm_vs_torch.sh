#!/usr/bin/env bash
# SGEMM GFLOP/s, ManagedTensor vs PyTorch (Debian's python3-torch over OpenBLAS), square float32
# C = A @ B at 256, 512, 1024, 2048, both on 2 threads, same timing scheme (2 warm-up calls, then 5
# reps of ~0.3 s each; best and median reported). Usage: bench/sgemm_vs_torch.sh [sizes...]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then set -- 256 512 1024 2048; fi
sizes=("$@")

if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    echo "installing python3-torch and libopenblas0-pthread..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch libopenblas0-pthread >/dev/null
fi

dotnet build -c Release bench -v q -nologo >/dev/null
ours=$(dotnet bench/bin/Release/net10.0/ManagedTensor.Bench.dll sgemm --threads 2 "${sizes[@]}")
torch=$(/usr/bin/python3 bench/torch_matmul.py --threads 2 "${sizes[@]}")

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
echo "GFLOP/s (best / median of 5 reps); ratio = ours best / torch best"
paste -d' ' <(echo "$ours") <(echo "$torch") | awk '
    BEGIN { printf "%6s %12s %12s %12s %12s %7s\n", "size", "ours-best", "ours-median", "torch-best", "torch-median", "ratio" }
    { printf "%6s %12s %12s %12s %12s %7.2f\n", $1, $2, $3, $5, $6, $2 / $5 }'
