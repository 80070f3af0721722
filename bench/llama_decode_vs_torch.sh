#!/usr/bin/env bash
# Llama inference speed on the CPU, ManagedTensor vs PyTorch (Debian's python3-torch over OpenBLAS, 2
# threads), side by side on this machine: stories260K (real weights, float32; 64 prompt tokens, 256
# decoded) and the TinyLlama-1.1B shape with random weights (32 prompt tokens, 16 decoded): float32 on
# both sides, plus our F16 and Q4_0 (PyTorch has no CPU Q4_0 matmul; its float32 is the reference).
# Usage: bench/llama_decode_vs_torch.sh   (about 3 minutes; needs ~10 GB of memory for the float32 models)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    echo "installing python3-torch and libopenblas0-pthread..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch libopenblas0-pthread >/dev/null
fi
dotnet build -c Release src/Apps -v q -nologo >/dev/null

dotnet src/Apps/bin/Release/net10.0/mt.dll bench --big --types F32 F16 Q4_0
/usr/bin/python3 bench/llama_decode_vs_torch.py --threads 2 --big
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
